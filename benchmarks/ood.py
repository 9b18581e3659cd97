"""How well a model's "not a garment" detector separates garment photos from everything else, per kind.

    python benchmarks/ood.py RUN_DIR [--per-kind 60] [--photos 400] [--json FILE]

RUN_DIR: a run trained with a validation split (`fmnist train`'s default), whose best.pt holds the
fitted detector (trust.py), or such a checkpoint. Garment side: product photos (fmnist.testing.photos)
rendered from the run's validation images (a fresh render, not the one the detector was fitted on) and
from test images, plus the plain 28x28 test images. Non-garment side: fmnist.testing.outliers, both parts
of every kind ("tune": looked at while choosing the cues; "holdout": not). Nothing here changes the
detector: its threshold was fitted on validation photos alone.

Also compares candidate detectors, each fitted the same way (conformal p-values of its cues on one
set of validation photos, threshold keeping ood.KEEP of them) and measured on the sets above: max-softmax,
energy, Mahalanobis distance of penultimate features, the picture's framing cues alone, and each model
cue with the picture cues. Last, what the detector costs per batch of 64 beside the model and the framing.
Prints Markdown tables (docs/TRUST.md holds a run of it).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from fmnist import data
from fmnist import trust as trust_lib
from fmnist.data import validation_split
from fmnist.images import Cues, load_picture
from fmnist.inference import TorchPredictor
from fmnist.testing import outliers, photos
from fmnist.trust import ood

PICTURE = list(Cues.NAMES)
CANDIDATES = {
    "max-softmax": ["msp"],
    "energy": ["energy"],
    "mahalanobis": ["mahalanobis"],
    "picture cues": PICTURE,
    "max-softmax + picture": ["msp", *PICTURE],
    "energy + picture (deployed)": ["energy", *PICTURE],
    "mahalanobis + picture": ["mahalanobis", *PICTURE],
}
GAUSSIAN_IMAGES = 20_000  # training images the Mahalanobis class means and covariance are fitted on
COST_BATCH, COST_REPEATS = 64, 30


def cue_table(
    predictor: TorchPredictor, images: torch.Tensor, cues: list[Cues | None], gaussians: ood.Gaussians
) -> tuple[dict[str, np.ndarray], torch.Tensor]:
    """Every cue [N] of the images (uint8 [N, 28, 28]) and their logits."""
    with torch.inference_mode():
        body = ood.penultimate(predictor.model)
        features = torch.cat([body(data.as_input(c)) for c in images.split(1000)])
        logits = predictor.model[-1](features)
    values = {k: v.numpy().astype(np.float64) for k, v in ood.model_cues(logits, features, gaussians).items()}
    values.update(ood.picture_cues(cues))
    return values, logits


def framed(pictures: list) -> tuple[torch.Tensor, list[Cues | None]]:
    loaded = [load_picture(p.data, f"{p.kind}{p.suffix}") for p in pictures]
    return torch.stack([f.image for f in loaded]), [f.cues for f in loaded]


def accepted(scores: np.ndarray, threshold: float) -> float:
    return float((scores >= threshold).mean())


def auroc(inside: np.ndarray, outside: np.ndarray) -> float:
    labels = np.r_[np.ones(len(inside)), np.zeros(len(outside))]
    return float(roc_auc_score(labels, np.r_[inside, outside]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model", help="a run directory trained with a validation split (the default), or its best.pt")
    parser.add_argument("--per-kind", type=int, default=60, help="non-garments per kind and part (default: 60)")
    parser.add_argument("--photos", type=int, default=400, help="garment photos per set (default: 400)")
    parser.add_argument("--seed", type=int, default=100, help="seed of the renders (default: 100)")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()

    predictor = TorchPredictor(args.model)
    deployed = predictor.trust
    if not deployed.has_detector:
        raise SystemExit(f"{args.model}: no fitted detector (trained with --val-size 0, or before fmnist calibrate)")
    cfg = predictor.config
    dataset = data.load()
    train_idx, val_idx = validation_split(dataset.train_labels, cfg)
    val_x = dataset.train_images[val_idx]
    pick = torch.randperm(len(train_idx), generator=torch.Generator().manual_seed(args.seed))[:GAUSSIAN_IMAGES]
    with torch.inference_mode():
        feats = ood.penultimate(predictor.model)(data.as_input(dataset.train_images[train_idx[pick]]))
    gaussians = ood.Gaussians.fit(feats, dataset.train_labels[train_idx[pick]], len(data.CLASSES))

    t0 = time.perf_counter()
    sets: dict[str, tuple[torch.Tensor, list[Cues | None]]] = {
        "fit photos (val)": framed(photos.render_set(val_x, args.photos, args.seed)),
        "val photos": framed(photos.render_set(val_x, args.photos, args.seed + 1)),
        "test photos": framed(photos.render_set(dataset.test_images, args.photos, args.seed + 2)),
        "plain test": (dataset.test_images, [None] * len(dataset.test_images)),
    }
    kinds: dict[str, np.ndarray] = {}
    for part in outliers.PARTS:
        pictures = outliers.build(args.per_kind, part, args.seed)
        sets[f"non-garments ({part})"] = framed(pictures)
        kinds[part] = np.array([p.kind for p in pictures])
    print(f"material rendered and framed in {time.perf_counter() - t0:.0f} s")
    table = {name: cue_table(predictor, images, cues, gaussians) for name, (images, cues) in sets.items()}

    results: dict = {
        "model": str(args.model),
        "per_kind": args.per_kind,
        "photos": args.photos,
        "seed": args.seed,
        "candidates": {},
        "deployed": {},
    }
    fit_values = table["fit photos (val)"][0]
    print(
        "\n| detector | AUROC tune | AUROC holdout | keeps val photos | keeps test photos | keeps plain test "
        "| non-garments accepted, tune | holdout |\n|---|---|---|---|---|---|---|---|"
    )
    for name, cue_names in CANDIDATES.items():
        refs = {c: ood.reference_of(fit_values[c]) for c in cue_names}
        threshold = float(np.quantile(ood.combined(fit_values, refs), 1 - ood.KEEP))
        score = {s: ood.combined(v, refs) for s, (v, _) in table.items()}
        row = {
            "auroc_tune": auroc(score["val photos"], score["non-garments (tune)"]),
            "auroc_holdout": auroc(score["val photos"], score["non-garments (holdout)"]),
            **{f"accepted {s}": accepted(v, threshold) for s, v in score.items()},
        }
        results["candidates"][name] = row
        print(
            f"| {name} | {row['auroc_tune']:.3f} | {row['auroc_holdout']:.3f} | {row['accepted val photos']:.1%} "
            f"| {row['accepted test photos']:.1%} | {row['accepted plain test']:.1%} "
            f"| {row['accepted non-garments (tune)']:.1%} | {row['accepted non-garments (holdout)']:.1%} |"
        )

    # The detector stored with the model, as predict and serve apply it.
    score = {s: deployed.scores(logits, sets[s][1]) for s, (_, logits) in table.items()}
    assert all(v is not None for v in score.values())
    garment = {s: float((v >= deployed.threshold).mean()) for s, v in score.items() if v is not None}
    results["deployed"] = {"threshold": deployed.threshold, "accepted": garment, "kinds": {}}
    print(
        f"\ndeployed detector (threshold {deployed.threshold:.4f}, fitted when training ended): keeps "
        f"{garment['val photos']:.1%} of validation photos, {garment['test photos']:.1%} of test photos, "
        f"{garment['plain test']:.1%} of plain test images; accepts {garment['non-garments (tune)']:.1%} (tune) "
        f"and {garment['non-garments (holdout)']:.1%} (holdout) of non-garments"
    )
    print("\n| kind | AUROC tune | AUROC holdout | accepted tune | accepted holdout |\n|---|---|---|---|---|")
    inside = score["val photos"]
    for kind in outliers.KINDS:
        row = {}
        for part in outliers.PARTS:
            out = score[f"non-garments ({part})"]
            assert inside is not None and out is not None
            sel = out[kinds[part] == kind]
            row[part] = (auroc(inside, sel), accepted(sel, deployed.threshold))
        results["deployed"]["kinds"][kind] = row
        print(
            f"| {kind} | {row['tune'][0]:.3f} | {row['holdout'][0]:.3f} | {row['tune'][1]:.1%} "
            f"| {row['holdout'][1]:.1%} |"
        )

    results["cost"] = cost(predictor, deployed, sets["val photos"])
    c = results["cost"]
    print(
        f"\ncost per batch of {COST_BATCH} (median of {COST_REPEATS}): model {c['model_ms']:.2f} ms, detector "
        f"{c['detector_ms']:.2f} ms ({c['detector_ms'] / c['model_ms']:.0%} of the model); framing the "
        f"{COST_BATCH} photos {c['framing_ms']:.0f} ms, of which the picture cues {c['cues_ms']:.1f} ms; "
        f"detector and cues {(c['detector_ms'] + c['cues_ms']) / (c['model_ms'] + c['framing_ms']):.1%} of "
        "predict's time"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")


def cost(predictor: TorchPredictor, trust: trust_lib.Trust, photo_set: tuple[torch.Tensor, list]) -> dict:
    """Median milliseconds per batch: the model's logits, the detector on them, framing photos (decode and
    framing, cues included) and the cues' share of framing (images._object_cues on a photo-sized mask)."""
    from fmnist import images as images_lib

    batch, cues = photo_set[0][:COST_BATCH], photo_set[1][:COST_BATCH]
    logits = predictor.logits(batch)

    def median_ms(fn, repeats: int = COST_REPEATS) -> float:
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
        return 1000 * float(np.median(times))

    rendered = photos.render_set(data.load().test_images, COST_BATCH, 7)
    mask = np.zeros((400, 512), dtype=bool)
    mask[60:340, 100:420] = True
    return {
        "model_ms": median_ms(lambda: predictor.logits(batch)),
        "detector_ms": median_ms(lambda: trust.scores(logits, cues)),
        "framing_ms": median_ms(lambda: [load_picture(p.data) for p in rendered], 3),
        "cues_ms": COST_BATCH * median_ms(lambda: images_lib._object_cues(mask, (60, 340, 100, 420), 1.0, 0.0)),
    }


if __name__ == "__main__":
    main()
