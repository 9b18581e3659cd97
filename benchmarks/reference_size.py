"""What the size of the detector's reference photos costs and changes: fit time, and what the detector keeps.

    python benchmarks/reference_size.py RUN_DIR [--sides 200-800 96-256] [--photos 300] [--per-kind 20]

For each range of longer sides, the detector is fitted as trust.fit fits it (400 reference photos rendered
from the run's validation images, threshold keeping ood.KEEP of them) and timed (render, frame, logits,
references); then measured on fresh validation photos at the usual 200-800 pixels (another seed), on
2,000 plain test images, and on the non-garments' "holdout" part, per kind; last, the share of the fresh
photos each cue alone puts below the threshold.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from fmnist import data, trust
from fmnist.data import stratified_split
from fmnist.images import Cues, load_picture
from fmnist.inference import TorchPredictor
from fmnist.testing import outliers
from fmnist.trust import ood, references


def framed(pictures: list) -> tuple[torch.Tensor, list[Cues | None]]:
    loaded = [load_picture(p.data) for p in pictures]
    return torch.stack([f.image for f in loaded]), [f.cues for f in loaded]


def fitted(logits_of: trust.Logits, val_x: torch.Tensor, side: tuple[int, int]) -> trust.Trust:
    rendered = references.render_set(val_x, trust.REFERENCE_PHOTOS, 0, side)
    images, cues = framed(rendered)
    values = {"energy": ood.energy(logits_of(images)).numpy().astype(np.float64), **ood.picture_cues(cues)}
    refs = {name: np.sort(values[name]) for name in trust.CUES}
    return trust.Trust(1.0, {n: ood.reference_of(v) for n, v in refs.items()}, ood.threshold_of(values, refs))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run")
    parser.add_argument("--sides", nargs="+", default=["200-800", "96-256"])
    parser.add_argument("--photos", type=int, default=300)
    parser.add_argument("--per-kind", type=int, default=20)
    args = parser.parse_args()
    predictor = TorchPredictor(args.run)
    dataset = data.load()
    _, val = stratified_split(dataset.train_labels, predictor.config.val_size, predictor.config.seed)
    val_x = dataset.train_images[val]
    logits_of = trust.model_logits(predictor.model)
    fresh = framed(references.render_set(val_x, args.photos, 101))
    pictures = outliers.build(args.per_kind, "holdout", 100)
    kinds = np.array([p.kind for p in pictures])
    others = framed(pictures)
    plain = dataset.test_images[:2000]
    for text in args.sides:
        low, high = (int(v) for v in text.split("-"))
        start = time.perf_counter()
        detector = fitted(logits_of, val_x, (low, high))
        seconds = time.perf_counter() - start
        kept = trust.judge(detector, logits_of(fresh[0]), fresh[1]).garment
        accepted = trust.judge(detector, logits_of(others[0]), others[1]).garment
        plain_kept = trust.judge(detector, logits_of(plain), [None] * len(plain)).garment
        print(
            f"\nreferences {low}-{high} px: fitted in {seconds:.1f} s; keeps {kept.mean():.1%} of fresh photos, "
            f"{plain_kept.mean():.1%} of plain test images; accepts {accepted.mean():.1%} of non-garments"
        )
        print("  " + ", ".join(f"{k} {accepted[kinds == k].mean():.0%}" for k in outliers.KINDS))
        values = {"energy": ood.energy(logits_of(fresh[0])).numpy().astype(np.float64), **ood.picture_cues(fresh[1])}
        below = {
            n: ood.p_values(values[n], detector.references[n], ood.UNUSUAL[n]) < detector.threshold for n in trust.CUES
        }
        print(
            "  fresh photos below the threshold by cue: " + ", ".join(f"{n} {b.mean():.1%}" for n, b in below.items())
        )


if __name__ == "__main__":
    main()
