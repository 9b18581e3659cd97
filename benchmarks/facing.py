"""Shoes facing right: how Fashion-MNIST's shoes face, and what mirroring a view that faces right (images.FACING)
does to product photos of garments facing either way.

    python benchmarks/facing.py RUN_DIR [--per-class 40] [--seed 0] [--json FILE]

First, on the first 50,000 training images (the statistic behind images.FACING): per class, the 5 % and 95 %
quantiles of the facing offset (the intensity centroid of the top half of the object's rows, in box widths from its
middle; negative: the high part of the object is on the left), and the share of the images that
images._facing_left mirrors (offset at -FACING or below). Then the run's validation images (28x28), read right as
they are and mirrored. Then --per-class product photos a class (fmnist.trust.references' kinds in turn) of the
run's validation images, each rendered as it is and mirrored (the same draw of kind, size and colours): per
class, accuracy and the share the run's detector keeps, with the mirroring (this checkout) and without it
(images.FACING set out of reach), on the same files.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from fmnist import data, images, trust
from fmnist.data import CLASSES, validation_split
from fmnist.inference import TorchPredictor
from fmnist.testing import photos

NEVER = 1.0  # an offset is within [-0.5, 0.5]: nothing is mirrored


def judged(predictor: TorchPredictor, files: list[bytes], labels: np.ndarray) -> tuple[float, float, torch.Tensor]:
    """Accuracy and share kept of the encoded photos `files` with their labels [N], framed and judged as predict does,
    and their views uint8 [N, 28, 28]."""
    framed = [images.load_picture(f) for f in files]
    views = torch.stack([f.image for f in framed])
    logits = predictor.logits(views)
    kept = np.asarray(trust.judge(predictor.trust, logits, views, [f.cues for f in framed]).garment)
    return float((logits.argmax(1).numpy() == labels).mean()), float(kept.mean()), views


def scored(predictor: TorchPredictor, files: list[bytes], labels: np.ndarray, facing: float) -> tuple[float, float]:
    images.FACING = facing
    return judged(predictor, files, labels)[:2]


def validation_images(predictor: TorchPredictor, dataset: data.FashionMNIST) -> tuple[np.ndarray, np.ndarray]:
    """The run's validation images uint8 [N, 28, 28] and their labels [N] (data.validation_split of its config)."""
    _, val = validation_split(dataset.train_labels, predictor.config)
    return dataset.train_images[val].numpy(), dataset.train_labels[val].numpy()


def arguments(doc: str) -> argparse.Namespace:
    """The options of this benchmark and of benchmarks/pairs.py: RUN [--per-class] [--seed] [--json]."""
    parser = argparse.ArgumentParser(description=doc.split("\n")[0])
    parser.add_argument("run", help="a run directory or its best.pt")
    parser.add_argument("--per-class", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path)
    torch.set_num_threads(1)
    return parser.parse_args()


def main() -> None:
    args = arguments(__doc__)
    deployed = images.FACING
    predictor = TorchPredictor(args.run)
    dataset = data.load()
    train, train_labels = dataset.train_images[:50_000].numpy(), dataset.train_labels[:50_000].numpy()
    found = np.array([images.facing_offset(view) for view in train])
    print(f"facing offset of the first 50,000 training images; mirrored at FACING = {deployed}:\n")
    print("| class | 5 % | median | 95 % | mirrored |\n|---|---|---|---|---|")
    statistics = {}
    for c, name in enumerate(CLASSES):
        mine = found[train_labels == c]
        low, mid, high = np.quantile(mine, [0.05, 0.5, 0.95])
        mirrored = float(np.mean([images._facing_left(v) is not v for v in train[train_labels == c]]))
        statistics[name] = {"q05": low, "median": mid, "q95": high, "mirrored": mirrored}
        print(f"| {name} | {low:+.3f} | {mid:+.3f} | {high:+.3f} | {statistics[name]['mirrored']:.1%} |")

    val_x, val_y = validation_images(predictor, dataset)
    plain = torch.from_numpy(val_x)
    upright = predictor.logits(plain).argmax(1).numpy() == val_y
    turned = predictor.logits(plain.flip(2)).argmax(1).numpy() == val_y
    print("\nthe run's validation images (28x28) read right, as they are / mirrored:\n")
    print("| class | as it is | mirrored |\n|---|---|---|")
    for c, name in enumerate(CLASSES):
        print(f"| {name} | {upright[val_y == c].mean():.1%} | {turned[val_y == c].mean():.1%} |")
    rng = np.random.default_rng(args.seed)
    picks = np.concatenate([rng.choice(np.flatnonzero(val_y == c), args.per_class, replace=False) for c in range(10)])
    files: dict[str, list[bytes]] = {"as it is": [], "mirrored": []}
    for n, i in enumerate(picks):
        kind = photos.KINDS[n % len(photos.KINDS)]
        seed = int(rng.integers(2**32))
        for name, image in (("as it is", val_x[i]), ("mirrored", np.ascontiguousarray(val_x[i][:, ::-1]))):
            files[name].append(photos.render(image, kind, np.random.default_rng(seed))[0])
    labels = val_y[picks]
    print(f"\n{args.per_class} validation images a class as product photos; accuracy / kept, mirroring and not:\n")
    print("| class | as it is | without | mirrored | without |\n|---|---|---|---|---|")
    results: dict[str, dict[str, list[float]]] = {}
    for c, name in enumerate([*CLASSES, "all"]):
        chosen = labels == c if c < 10 else np.ones(len(labels), bool)
        row = {}
        for facing_name, facing in (("with", deployed), ("without", NEVER)):
            for orientation in files:
                subset = [f for f, keep in zip(files[orientation], chosen, strict=True) if keep]
                row[f"{orientation}, {facing_name}"] = list(scored(predictor, subset, labels[chosen], facing))
        results[name] = row
        cells = [row[k] for k in ("as it is, with", "as it is, without", "mirrored, with", "mirrored, without")]
        print(f"| {name} | " + " | ".join(f"{a:.1%} / {k:.1%}" for a, k in cells) + " |")
    images.FACING = deployed
    if args.json:
        args.json.write_text(json.dumps({"training": statistics, "photos": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
