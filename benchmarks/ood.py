"""How the "not a garment" detector's cues and threshold are chosen, leaving one kind out, and what it does per kind.

    python benchmarks/ood.py RUN_DIR [--per-kind 40] [--photos 40] [--seed 100] [--gaussian-images N] [--json FILE]
    python benchmarks/ood.py RUN_DIR --stored-only [--per-kind 40] [--photos 40] [--seed 100] [--json FILE]
    python benchmarks/ood.py RUN_DIR --cost-only [--baseline REVISION ...]

RUN_DIR: a run trained with a validation split (`fmnist train`'s default), or its best.pt.

Material, all of it from the run's validation split and from what Python packages ship, never the test set (but
for the last table): the split's first half fits each candidate detector as trust.fit fits one (reference photos
rendered from it, its plain images); its second half gives the garment kinds: `--photos` product photos of each
kind of trust.references.KINDS and close-ups (fmnist.testing.photos.CLOSE_UP), the plain 28x28 images, the same
images saved in a few file forms (fmnist.testing.forms: RGB, inverted, upscaled, JPEG), photographed in the shifted
domains of fmnist.testing.domains (on wood, on cloth, in dim light, covered, as opaque cloth) and lying on each
surface of fmnist.testing.surfaces turned by up to 30 degrees. Non-garments: every kind of fmnist.testing.outliers,
its "tune" and "holdout" parts.

Candidates: every set of cues from ood.UNUSUAL's pool that holds the energy, at each keep level of KEEPS, with
the smallest p-value alone, the second smallest counting under ood.GATE, or always (GATES), each with a picture
on a textured surface judged without the cues of its surface (ood.SURFACE_CUES, as deployed) and with them.
Leave one kind out: for each kind, the candidate chosen without that kind gives its figures. The choice: the
largest mean share rejected over the other non-garment kinds' "tune" parts, among the candidates that keep at
least 95 % of each other photo kind, 98 % of the plain and file-form kinds and 75 % of each domain and surface
kind (garment kinds are left out the same way; close-ups, the LATE_DOMAINS and fmnist.testing.surfaces.LATE are
measured, never a constraint). A non-garment kind's figure is its "holdout" part.
The deployed choice counts every kind.
Last: the detector stored in the run, as predict applies it, on the garment kinds, the test set (plain and
as photos) and the non-garments (`--stored-only`: that and the cost, without the candidates); and what scoring
costs per picture (`--cost-only`: that alone): Trust.scores on a batch of 64 product photos and on one, on one
thread, median of repeats, with the fmnist of each git `--baseline` revision timed in turn with this checkout's
(a revision before the view cues scores the energy and the framing cues alone), and predict's whole time per
photo at batch 64 (decode, frame, model, score).
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import io
import itertools
import json
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from types import ModuleType

import numpy as np
import torch
from sklearn.metrics import roc_auc_score
from threadpoolctl import threadpool_limits

from fmnist import data, trust
from fmnist.data import split_seed, validation_split
from fmnist.images import Cues, load_picture
from fmnist.inference import TorchPredictor
from fmnist.testing import domains, forms, outliers, photos, surfaces
from fmnist.trust import ood
from fmnist.trust.cache import reference_photos

POOL = trust.POOL  # a candidate draws from these; always energy
KEEPS = (0.98, 0.985)  # the keep levels a candidate's threshold is set at (1 - keep)
GATES = (0.0, ood.GATE, 1.0)  # under which a candidate's second smallest p-value counts (0: never; ood.unusualness)
# What a candidate must keep of each garment kind it is chosen on (garments on a surface are garments too).
KEPT = {"photo": 0.95, "plain": 0.98, "surface": 0.75}
# Domains measured, never a constraint of the choice (they came after its constraints were set), drawn after the
# close-ups, so that every other kind's pictures are those drawn before them (as are surfaces.LATE).
LATE_DOMAINS = ("opaque",)
FORMS = (
    forms.Form("RGB", "PNG"),
    forms.Form("L", "PNG", inverted=True),
    forms.Form("RGB", "JPEG", 4.0),
    forms.Form("RGBA", "PNG", 3.3, smooth=True),
    forms.Form("L", "PNG", margin=0.5),
)
COST_BATCH, COST_REPEATS = 64, 200

Values = dict[str, np.ndarray]


def framed(encoded: list[bytes]) -> tuple[torch.Tensor, list[Cues | None]]:
    loaded = [load_picture(data_, f"picture {i}") for i, data_ in enumerate(encoded)]
    return torch.stack([f.image for f in loaded]), [f.cues for f in loaded]


def garment_kinds(images: torch.Tensor, count: int, seed: int) -> dict[str, tuple[str, torch.Tensor, list]]:
    """Garment kinds (name -> (constraint: a key of KEPT, or "" for none, views, cues)) from validation images
    [N, 28, 28]."""
    rng = np.random.default_rng(seed)
    kinds: dict[str, tuple[str, torch.Tensor, list]] = {}
    for kind in photos.KINDS:
        picks = rng.choice(len(images), size=count, replace=False)
        rendered = [photos.render(images[i].numpy(), kind, rng)[0] for i in picks]
        kinds[f"photo {kind}"] = ("photo", *framed(rendered))
    kinds["plain 28x28"] = ("plain", images, [None] * len(images))
    picks = rng.choice(len(images), size=count, replace=False)
    for form in FORMS:
        kinds[f"file {form.name}"] = ("plain", *framed([forms.save(images[i].numpy(), form) for i in picks]))
    for domain in (d for d in domains.DOMAINS if d not in LATE_DOMAINS):
        picks = rng.choice(len(images), size=count, replace=False)
        kinds[f"domain {domain}"] = ("surface", *framed(domains.render_many(images[picks].numpy(), domain, seed)))
    for surface in (s for s in surfaces.KINDS if s not in surfaces.LATE):
        picks = rng.choice(len(images), size=count, replace=False)
        kinds[f"surface {surface}"] = ("surface", *framed(surfaces.render_many(images[picks].numpy(), surface, seed)))
    # Close-ups are measured, not a constraint of the choice (they came after its constraints were set), and drawn
    # last, so that the other kinds' pictures are those drawn before close-ups were.
    picks = rng.choice(len(images), size=count, replace=False)
    close_ups = [photos.render(images[i].numpy(), "studio", rng, margins=photos.CLOSE_UP)[0] for i in picks]
    kinds["photo close-up"] = ("", *framed(close_ups))
    for domain in LATE_DOMAINS:
        picks = rng.choice(len(images), size=count, replace=False)
        kinds[f"domain {domain}"] = ("", *framed(domains.render_many(images[picks].numpy(), domain, seed)))
    for surface in surfaces.LATE:
        picks = rng.choice(len(images), size=count, replace=False)
        kinds[f"surface {surface}"] = ("", *framed(surfaces.render_many(images[picks].numpy(), surface, seed)))
    return kinds


def non_garment_kinds(per_kind: int, seed: int) -> dict[str, tuple[torch.Tensor, list[Cues | None]]]:
    """Every kind of fmnist.testing.outliers, both parts, `per_kind` each: "KIND (PART)" -> (views, cues)."""
    return {
        f"{kind} ({part})": framed([o.data for o in outliers.build(per_kind, part, seed, (kind,))])
        for part in outliers.PARTS
        for kind in outliers.KINDS
    }


def gated(gate: float) -> str:
    """How a candidate's unusualness counts the second smallest p-value, in words."""
    if not gate:
        return "the smallest p-value alone"
    return (
        "the two smallest p-values multiplied" if gate == 1 else f"the second smallest p-value counted under {gate:.3f}"
    )


def auroc(inside: np.ndarray, outside: np.ndarray) -> float:
    labels = np.r_[np.ones(len(inside)), np.zeros(len(outside))]
    return float(roc_auc_score(labels, np.r_[inside, outside]))


class Candidates:
    """Every candidate detector's scores on every set, fitted on the first half's cue values."""

    def __init__(self, variants: dict[bool, tuple[Values, Values, dict[str, tuple[Values, np.ndarray]]]]):
        """`variants`: whether a textured picture's surface cues are judged -> the references', plain images' and
        each set's cue values (and which of its pictures are photos) so computed."""
        self.names: list[tuple[tuple[str, ...], float, bool, float]] = []
        self.scores: list[dict[str, np.ndarray]] = []
        self.computed: dict[str, np.ndarray] = {}
        others = POOL[1:]
        for judge_surface, (references, plain, sets) in variants.items():
            for size in range(len(others) + 1):
                for chosen in itertools.combinations(others, size):
                    cues = ("energy", *chosen)
                    for keep, gate in itertools.product(KEEPS, GATES):
                        fitted = ood.fitted(references, plain, cues, keep, gate)
                        scored = {
                            name: ood.calibrated(
                                values,
                                photo,
                                fitted["references"],  # type: ignore[arg-type]
                                fitted["plain"],  # type: ignore[arg-type]
                                fitted["held_out"],  # type: ignore[arg-type]
                                gate,
                            )
                            for name, (values, photo) in sets.items()
                        }
                        self.names.append((cues, keep, judge_surface, gate))
                        self.scores.append(scored)

    def shares(self, name: str) -> np.ndarray:
        """[candidates] share of set `name` each candidate calls a garment (computed once: every fold asks)."""
        if name not in self.computed:
            self.computed[name] = np.array(
                [(s[name] >= 1 - n[1]).mean() for s, n in zip(self.scores, self.names, strict=True)]
            )
        return self.computed[name]

    def choose(self, garments: dict[str, str], tune: list[str]) -> int:
        """The candidate that rejects most of the `tune` sets on average while keeping KEPT of each garment set
        (name -> constraint); the one with the fewest cues among equals."""
        allowed = np.ones(len(self.names), dtype=bool)
        for name, constraint in garments.items():
            if constraint:
                allowed &= self.shares(name) >= KEPT[constraint]
        rejected = 1 - np.mean([self.shares(name) for name in tune], axis=0)
        order = sorted(np.flatnonzero(allowed), key=lambda i: (-round(rejected[i], 6), len(self.names[i][0])))
        return int(order[0]) if order else int(np.argmax(rejected))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model", help="a run directory trained with a validation split (the default), or its best.pt")
    parser.add_argument("--per-kind", type=int, default=40, help="non-garments per kind and part (default: 40)")
    parser.add_argument("--photos", type=int, default=40, help="garment pictures per photo, form or domain kind")
    parser.add_argument("--seed", type=int, default=100, help="seed of the renders (default: 100)")
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--cost-only", action="store_true", help="only time the scoring (and predict per photo)")
    parser.add_argument(
        "--stored-only", action="store_true", help="only measure the run's stored detector (and time it)"
    )
    parser.add_argument(
        "--gaussian-images",
        type=int,
        default=trust.GAUSSIAN_IMAGES,
        help=f"training images the coarse cue's Gaussians are fitted on, at most (default: {trust.GAUSSIAN_IMAGES:,})",
    )
    parser.add_argument(
        "--baseline", action="append", default=[], help="a git revision whose scoring is timed beside (repeatable)"
    )
    args = parser.parse_args()

    t0 = time.perf_counter()
    predictor = TorchPredictor(args.model)
    dataset = data.load()
    if args.cost_only:
        _, val_idx = validation_split(dataset.train_labels, predictor.config)
        results = {"model": str(args.model), "cost": cost(predictor, dataset.train_images[val_idx], args.baseline)}
        if args.json:
            Path(args.json).write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
        return
    _, val_idx = validation_split(dataset.train_labels, predictor.config)
    val_x = dataset.train_images[val_idx]
    first, second = val_x[: len(val_x) // 2], val_x[len(val_x) // 2 :]
    garments = garment_kinds(second, args.photos, args.seed)
    pictures = {name: (views, cues) for name, (_, views, cues) in garments.items()}
    pictures.update(non_garment_kinds(args.per_kind, args.seed))
    if args.stored_only:
        results = {"model": str(args.model), "per_kind": args.per_kind, "photos": args.photos}
        results["stored"] = stored(predictor, pictures, dataset, args.seed)
        results["cost"] = cost(predictor, second, args.baseline)
        if args.json:
            Path(args.json).write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
        return

    # As trust.detector fits them: the residual's basis on the first half's plain images, the coarse cue's
    # Gaussians on the images the run trained on.
    basis = ood.basis_of(np.asarray(first)[0::2])
    gaussians = trust.gaussians_of(data.trained_on(dataset, predictor.config), args.gaussian_images)

    def values_of(views: torch.Tensor, cues: list) -> dict[bool, Values]:
        """Whether the surface cues are judged -> the cue values."""
        values = trust.cue_values(predictor.logits(views), views, cues, basis, gaussians)
        return {False: values, True: {**values, **ood.picture_cues(cues, judge_surface=True)}}

    refs = reference_photos(first, trust.REFERENCE_PHOTOS, split_seed(predictor.config))
    references = values_of(torch.stack([f.image for f in refs]), [f.cues for f in refs])
    plain = values_of(first, [None] * len(first))
    sets = {name: (values_of(*both), np.array([c is not None for c in both[1]])) for name, both in pictures.items()}
    print(f"material rendered, framed and scored in {time.perf_counter() - t0:.0f} s")
    t0 = time.perf_counter()
    variants = {
        judge: (
            references[judge],
            plain[judge],
            {name: (values[judge], photo) for name, (values, photo) in sets.items()},
        )
        for judge in (False, True)
    }
    candidates = Candidates(variants)
    print(f"{len(candidates.names)} candidates fitted and scored in {time.perf_counter() - t0:.0f} s")

    constraints = {name: constraint for name, (constraint, _, _) in garments.items()}
    results: dict = {"model": str(args.model), "per_kind": args.per_kind, "photos": args.photos, "kinds": {}}
    deployed = candidates.choose(constraints, [f"{k} (tune)" for k in outliers.KINDS])
    cues, keep, judge_surface, gate = candidates.names[deployed]
    results["chosen"] = {"cues": list(cues), "keep": keep, "surface_judged": judge_surface, "gate": gate}
    surface = "judged" if judge_surface else "not judged"
    print(
        f"\nchosen with every kind counted: {' + '.join(cues)}, keeping {keep:.1%} (threshold {1 - keep:.3f}), the"
        f" surface cues of a picture on a textured surface {surface}, {gated(gate)}"
    )
    print(
        "\n| kind | figure left out | its detector | figure, chosen detector | AUROC left out |\n|---|---|---|---|---|"
    )
    for name in [*garments, *outliers.KINDS]:
        is_garment = name in garments
        left = {k: c for k, c in constraints.items() if k != name}
        tune = [f"{k} (tune)" for k in outliers.KINDS if k != name]
        fold = candidates.choose(left, tune)
        measured = name if is_garment else f"{name} (holdout)"
        share = candidates.shares(measured)
        figure = share[fold] if is_garment else 1 - share[fold]
        chosen_figure = share[deployed] if is_garment else 1 - share[deployed]
        fold_garments = np.concatenate([candidates.scores[fold][k] for k in left if left[k]])
        area = None if is_garment else auroc(fold_garments, candidates.scores[fold][measured])
        fold_cues, fold_keep, fold_judge, fold_gate = candidates.names[fold]
        judged = ", surface judged" if fold_judge else ""
        same = "same" if fold == deployed else f"{' + '.join(fold_cues)} @ {fold_keep:.1%}{judged}, {gated(fold_gate)}"
        word = "kept" if is_garment else "rejected"
        print(
            f"| {name} | {figure:.1%} {word} | {same} | {chosen_figure:.1%} | {'' if area is None else f'{area:.3f}'} |"
        )
        results["kinds"][name] = {
            "garment": is_garment,
            "left_out": float(figure),
            "chosen": float(chosen_figure),
            "auroc_left_out": area,
            "fold_cues": list(fold_cues),
            "fold_keep": fold_keep,
            "fold_surface_judged": fold_judge,
            "fold_gate": fold_gate,
        }
    rejected = [1 - candidates.shares(f"{k} (holdout)")[deployed] for k in outliers.KINDS]
    print(f"\nnon-garments rejected, chosen detector, holdout parts: {np.mean(rejected):.1%} (mean over kinds)")

    results["stored"] = stored(predictor, pictures, dataset, args.seed)
    results["cost"] = cost(predictor, second, args.baseline)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")


def stored(predictor: TorchPredictor, pictures: dict, dataset: data.FashionMNIST, seed: int) -> dict:
    """The run's own detector, as predict applies it: share kept of each garment kind and of the test set (plain,
    and as product photos), share rejected of each non-garment kind's holdout part."""
    detector = predictor.trust
    if not detector.has_detector:
        return {}

    def kept(views: torch.Tensor, cues: list) -> float:
        return float(trust.judge(detector, predictor.logits(views), views, cues).garment.mean())

    figures = {name: kept(*both) for name, both in pictures.items() if "(" not in name}
    figures["test plain"] = kept(dataset.test_images, [None] * len(dataset.test_images))
    figures["test photos"] = kept(*framed([p.data for p in photos.render_set(dataset.test_images, 400, seed + 2)]))
    for kind in outliers.KINDS:
        figures[kind] = 1 - kept(*pictures[f"{kind} (holdout)"])
    print(
        f"\nthe run's stored detector ({' + '.join(detector.references)}, gate {detector.gate:.4g}, threshold "
        f"{detector.threshold:.3f}), as predict applies it:"
    )
    print("| set | share |\n|---|---|")
    for name, share in figures.items():
        print(f"| {name} | {share:.1%} {'rejected' if name in outliers.KINDS else 'kept'} |")
    return figures


def cost(predictor: TorchPredictor, images: torch.Tensor, baselines: list[str]) -> dict:
    """Median microseconds of Trust.scores per picture, on a batch of COST_BATCH photos of `images` and on one, for
    this checkout and each `baselines` revision (taking turns, repeat by repeat), and predict's whole milliseconds
    per photo at that batch (decode, frame, model, score), on one thread; printed, and returned by code ("this" or
    the revision)."""
    files = [p.data for p in photos.render_set(images, COST_BATCH, 7)]
    loaded = [load_picture(f) for f in files]
    batch, cues = torch.stack([f.image for f in loaded]), [f.cues for f in loaded]
    logits = predictor.logits(batch)
    facts = predictor.trust.to_dict()
    codes = {"this": trust, **{revision: trust_at(revision) for revision in baselines}}
    scorers = {code: scorer(module, facts, logits, batch, cues) for code, module in codes.items()}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(1):  # numpy's BLAS (the residual cue's projection) on one thread too
        results = timed(scorers)
        results["predict_ms_per_photo"] = predict_ms(predictor, files)
    torch.set_num_threads(threads)
    print(f"\nscoring (Trust.scores), median of {COST_REPEATS}, 1 thread, codes taking turns:")
    for code in codes:
        c = results[code]
        print(
            f"  {code}: {c['batch_us']:.1f} us per picture at batch {COST_BATCH}, {c['single_us']:.0f} us for one alone"
        )
    print(
        f"predict per photo at batch {COST_BATCH} (decode, frame, model, score; median of {COST_REPEATS // 20}): "
        f"{results['predict_ms_per_photo']:.2f} ms, of which scoring {results['this']['batch_us'] / 1e3:.3f} ms"
    )
    return results


def timed(scorers: dict[str, Callable[[int], object]]) -> dict:
    """{code: {batch_us, single_us}}: the median time of each scorer on COST_BATCH pictures (per picture) and on one."""
    times: dict[str, dict[int, list[float]]] = {code: {COST_BATCH: [], 1: []} for code in scorers}
    for _ in range(COST_REPEATS):
        for code, score in scorers.items():
            for size in (COST_BATCH, 1):
                start = time.perf_counter()
                score(size)
                times[code][size].append(time.perf_counter() - start)
    return {
        code: {
            "batch_us": 1e6 * float(np.median(t[COST_BATCH])) / COST_BATCH,
            "single_us": 1e6 * float(np.median(t[1])),
        }
        for code, t in times.items()
    }


def predict_ms(predictor: TorchPredictor, files: list[bytes]) -> float:
    """Median milliseconds per photo of what predict does with the photos `files`, as one batch: decode and frame
    each, run the model, judge them."""
    whole = []
    for _ in range(COST_REPEATS // 20):
        start = time.perf_counter()
        framed = [load_picture(f) for f in files]
        views = torch.stack([f.image for f in framed])
        trust.judge(predictor.trust, predictor.logits(views), views, [f.cues for f in framed])
        whole.append(time.perf_counter() - start)
    return 1e3 * float(np.median(whole)) / len(files)


def trust_at(revision: str) -> ModuleType:
    """fmnist.trust as it is at git `revision`: the revision's package, extracted from git, imported in place of this
    checkout's for the time of the import (so that its modules bind each other), this checkout's put back after."""
    root = Path(__file__).resolve().parents[1]
    archive = subprocess.run(
        ["git", "-C", str(root), "archive", revision, "src/fmnist"], capture_output=True, check=True
    ).stdout
    folder = Path(tempfile.mkdtemp(prefix="fmnist-baseline-")) / "src"
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(folder.parent, filter="data")

    def ours(name: str) -> bool:
        return name.split(".")[0] == "fmnist"

    this = {name: sys.modules.pop(name) for name in list(sys.modules) if ours(name)}
    sys.path.insert(0, str(folder))
    try:
        return importlib.import_module("fmnist.trust")
    finally:
        sys.path.remove(str(folder))
        for name in [name for name in sys.modules if ours(name)]:
            del sys.modules[name]  # the revision's modules live on in the objects that use them
        sys.modules.update(this)


def scorer(
    module: ModuleType, facts: dict, logits: torch.Tensor, batch: torch.Tensor, cues: list
) -> Callable[[int], object]:
    """Trust.scores of `module` (an fmnist.trust) on the first n pictures, with the detector of `facts` (Trust.to_dict);
    a revision from before the view cues gets the energy and framing cues of the references, as it scored them."""
    detector = module.Trust.from_dict(facts)
    if "images" in inspect.signature(detector.scores).parameters:
        return lambda n: detector.scores(logits[:n], batch[:n], cues[:n])
    earlier = replace(
        detector, references={k: v for k, v in detector.references.items() if k in ("energy", *Cues.NAMES)}
    )
    return lambda n: earlier.scores(logits[:n], cues[:n])


if __name__ == "__main__":
    main()
