"""How much the not-a-garment detector's figures depend on the draw of its reference photos, and on their style.

    python benchmarks/reference_draws.py RUN_DIR [--draws 0,1,2,3,4] [--styles 0.05/0.5,0.2/0] [--per-kind 40]
        [--photos 40] [--seed 100] [--json FILE]

RUN_DIR: a run trained with a validation split (`fmnist train`'s default). For each style of reference photos
(`--styles`: SMALLEST_MARGIN/TURNED, each side's margin drawn from SMALLEST_MARGIN to 1.5 times the object's size and
a share TURNED of them turned by up to trust.references.MAX_TURN degrees; 0.05/0.5 is trust.references' own,
REFERENCE_MARGINS and REFERENCE_TURNED, and 0.2/0 the upright references with the test material's margins that came
before) and each draw (`--draws`: the seed trust.fit renders its reference photos with; the run's own seed is the one
`fmnist calibrate` uses), the run's detector is fitted as `fmnist calibrate` fits it (trust.fit: the temperature,
the 400 reference photos rendered from the validation split in that style and framed, the run's own cues and gate).
Each is scored, as predict applies it, on the material of `benchmarks/ood.py --stored-only` (garment kinds from the
split's second half, non-garment kinds' holdout and tune parts, all seeded by `--seed`): the share of each kind kept
or rejected, the mean, smallest and largest over the draws. Nothing from the test set.
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from fmnist import data, trust
from fmnist.data import validation_split
from fmnist.inference import TorchPredictor
from fmnist.testing import outliers
from fmnist.trust import references

sys.path.insert(0, str(Path(__file__).parent))
from ood import garment_kinds, non_garment_kinds  # noqa: E402  (the same material as benchmarks/ood.py)


def fitted(predictor: TorchPredictor, dataset: data.FashionMNIST, draw: int, style: tuple[float, float]) -> trust.Trust:
    """The run's detector as `fmnist calibrate` fits it (trust.fit, its cues and gate), its references drawn with seed
    `draw` in `style`: (smallest margin, share turned), set on trust.references for the fit (the cache names the
    style, so each style's references are stored apart)."""
    _, val_idx = validation_split(dataset.train_labels, predictor.config)
    stored = predictor.trust
    deployed = references.REFERENCE_MARGINS, references.REFERENCE_TURNED
    references.REFERENCE_MARGINS, references.REFERENCE_TURNED = (style[0], deployed[0][1]), style[1]
    try:
        return trust.fit(
            trust.model_logits(predictor.model),
            dataset.train_images[val_idx],
            dataset.train_labels[val_idx],
            data.trained_on(dataset, predictor.config),
            draw,
            gate=stored.gate,
            cues=tuple(stored.references),
        )
    finally:
        references.REFERENCE_MARGINS, references.REFERENCE_TURNED = deployed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="a run directory trained with a validation split, or its best.pt")
    parser.add_argument("--draws", default="0,1,2,3,4", help="seeds of the reference photos (default: 0,1,2,3,4)")
    parser.add_argument(
        "--styles", default="0.05/0.5,0.2/0", help="SMALLEST_MARGIN/TURNED of the references (default: 0.05/0.5,0.2/0)"
    )
    parser.add_argument("--per-kind", type=int, default=40, help="non-garments per kind and part (default: 40)")
    parser.add_argument("--photos", type=int, default=40, help="garment pictures per kind (default: 40)")
    parser.add_argument("--seed", type=int, default=100, help="seed of the material (default: 100)")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    draws = [int(d) for d in args.draws.split(",")]
    styles = [tuple(float(v) for v in style.split("/")) for style in args.styles.split(",")]

    t0 = time.perf_counter()
    predictor = TorchPredictor(args.model)
    dataset = data.load()
    _, val_idx = validation_split(dataset.train_labels, predictor.config)
    val_x = dataset.train_images[val_idx]
    pictures = {
        name: (views, cues)
        for name, (_, views, cues) in garment_kinds(val_x[len(val_x) // 2 :], args.photos, args.seed).items()
    }
    pictures.update(non_garment_kinds(args.per_kind, args.seed))
    print(f"material rendered and framed in {time.perf_counter() - t0:.0f} s", flush=True)

    shares_of: dict[str, dict[str, list[float]]] = {}
    for style in styles:
        table: dict[str, list[float]] = {name: [] for name in pictures}
        for draw in draws:
            detector = fitted(predictor, dataset, draw, style)
            for name, (views, cues) in pictures.items():
                kept = float(trust.judge(detector, predictor.logits(views), views, cues).garment.mean())
                table[name].append(1 - kept if "(" in name else kept)
            print(f"margins from {style[0]:g}, turned {style[1]:g}, draw {draw}: fitted and scored", flush=True)
        shares_of[f"{style[0]:g}/{style[1]:g}"] = table

    groups = {
        "non-garments, holdout parts (mean over kinds)": [f"{k} (holdout)" for k in outliers.KINDS],
        "non-garments, tune parts (mean over kinds)": [f"{k} (tune)" for k in outliers.KINDS],
        "product photos (mean over kinds)": [n for n in pictures if n.startswith("photo ") and "(" not in n],
        "file forms (mean)": [n for n in pictures if n.startswith("file ")],
        "domains (mean)": [n for n in pictures if n.startswith("domain ")],
        "textured surfaces, turned (mean)": [
            n for n in pictures if n.startswith("surface ") and n not in ("surface flat", "surface lit")
        ],
    }
    names = list(shares_of)
    header = " | ".join(f"{name}: mean [min-max]" for name in names)
    print(f"\nshare kept (garment kinds) or rejected (non-garments), {len(draws)} draws, %\n")
    print(f"| set | {header} |\n|---|{'---|' * len(names)}")

    def cell(values: list[float]) -> str:
        return f"{100 * np.mean(values):.1f} [{100 * min(values):.1f}-{100 * max(values):.1f}]"

    for label, kinds in groups.items():
        means = {
            style: [float(np.mean([shares_of[style][k][d] for k in kinds])) for d in range(len(draws))]
            for style in names
        }
        print(f"| **{label}** | {' | '.join(cell(means[style]) for style in names)} |")
    for kind in pictures:
        print(f"| {kind} | {' | '.join(cell(shares_of[style][kind]) for style in names)} |")
    print(f"\n{time.perf_counter() - t0:.0f} s in all")
    if args.json:
        results = {"model": str(args.model), "draws": draws, "styles": shares_of}
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
