"""A pair of shoes side by side: what framing the larger of two pieces alone (images.PAIR_SHARE) does to product
photos of pairs, and to photos of one garment.

    python benchmarks/pairs.py RUN_DIR [--per-class 40] [--seed 0] [--json FILE]

First, on the first 50,000 training images: per class, the median width over height of the object's box (pixels
above images.FACING_LEVEL) and the share at least images.PAIR_ASPECT as wide as tall (what a piece of a pair must be).
Then --per-class validation images of each class of the run, each rendered as a product photo (fmnist.trust.references'
kinds in turn); those of sandals, sneakers and ankle boots also as a pair (fmnist.testing.photos.pair_of: the shoe
beside a copy of itself, mirrored half of the time), with the same draw of kind, size and colours. Per class,
accuracy and the share the run's detector keeps, with the rule (this checkout) and without it (images.PAIR_SHARE set
out of reach), on the same files, and how many views the rule changed.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from fmnist import data, images
from fmnist.data import CLASSES
from fmnist.inference import TorchPredictor
from fmnist.testing import photos

sys.path.insert(0, str(Path(__file__).parent))
from facing import arguments, judged, validation_images  # noqa: E402  (the same options and measure as benchmarks/facing.py)

SHOES = (5, 7, 9)
NEVER = 2.0  # two pieces never hold more than all of the object's pixels


def scored(predictor: TorchPredictor, files: list[bytes], labels: np.ndarray, share: float) -> dict:
    images.PAIR_SHARE = share
    right, kept, views = judged(predictor, files, labels)
    return {"right": right, "kept": kept, "views": views}


def aspect(view: np.ndarray) -> float:
    """Width over height of the box of a uint8 [28, 28] view's pixels above images.FACING_LEVEL."""
    ink = view > images.FACING_LEVEL
    rows, cols = np.flatnonzero(ink.any(1)), np.flatnonzero(ink.any(0))
    return (cols[-1] - cols[0] + 1) / (rows[-1] - rows[0] + 1)


def main() -> None:
    args = arguments(__doc__)
    deployed = images.PAIR_SHARE
    predictor = TorchPredictor(args.run)
    dataset = data.load()
    train, train_labels = dataset.train_images[:50_000].numpy(), dataset.train_labels[:50_000].numpy()
    widths = np.array([aspect(view) for view in train])
    print(f"width over height, the first 50,000 training images; at least PAIR_ASPECT = {images.PAIR_ASPECT}:\n")
    print("| class | median | as wide |\n|---|---|---|")
    shapes = {}
    for c, name in enumerate(CLASSES):
        mine = widths[train_labels == c]
        shapes[name] = {"median": float(np.median(mine)), "wide": float((mine >= images.PAIR_ASPECT).mean())}
        print(f"| {name} | {shapes[name]['median']:.2f} | {shapes[name]['wide']:.1%} |")
    val_x, val_y = validation_images(predictor, dataset)
    rng = np.random.default_rng(args.seed)
    print(f"\n{args.per_class} validation images a class as product photos; right / kept, with the rule and without:\n")
    print("| class | photo | with | without | views changed |\n|---|---|---|---|---|")
    results: dict[str, dict] = {}
    for c, name in enumerate(CLASSES):
        picks = rng.choice(np.flatnonzero(val_y == c), args.per_class, replace=False)
        files: dict[str, list[bytes]] = {"one": [], "pair": []}
        for n, i in enumerate(picks):
            kind, seed = photos.KINDS[n % len(photos.KINDS)], int(rng.integers(2**32))
            files["one"].append(photos.render(val_x[i], kind, np.random.default_rng(seed))[0])
            if c in SHOES:
                pair = photos.pair_of(val_x[i], np.random.default_rng(seed + 1))
                files["pair"].append(photos.render(pair, kind, np.random.default_rng(seed))[0])
        for photo, chosen in files.items():
            if not chosen:
                continue
            labels = np.full(len(chosen), c)
            on, off = (scored(predictor, chosen, labels, share) for share in (deployed, NEVER))
            changed = int((on["views"] != off["views"]).flatten(1).any(1).sum())
            results[f"{name}, {photo}"] = {
                "with": {k: on[k] for k in ("right", "kept")},
                "without": {k: off[k] for k in ("right", "kept")},
                "changed": changed,
            }
            cells = " | ".join(f"{r['right']:.1%} / {r['kept']:.1%}" for r in (on, off))
            print(f"| {name} | {photo} | {cells} | {changed} of {len(chosen)} |")
    images.PAIR_SHARE = deployed
    if args.json:
        args.json.write_text(json.dumps({"training": shapes, "photos": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
