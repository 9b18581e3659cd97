"""Accuracy on product-style photos rendered from Fashion-MNIST test images (fmnist.testing.photos), per kind,
next to the same checkpoint's accuracy on the plain 28x28 test images with the same indices.

    python benchmarks/photos.py CHECKPOINT_OR_RUN [--n 400] [--seed 0] [--save DIR] [--split test]

`--split train` renders training images instead: use it, never the test split, when changing
the conversion in fmnist.images. `--save DIR` also writes the photos and what the model saw.
"""

import argparse
import sys
import time
from pathlib import Path

import torch

from fmnist import data
from fmnist.atomic import atomic_write
from fmnist.images import export_png, load_image
from fmnist.inference import load_predictor
from fmnist.testing import photos


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", help="a .pt checkpoint or a run directory")
    parser.add_argument("--n", type=int, default=400, help="photos to render (default: 400, 50 per kind)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the image choice and the rendering (default: 0)")
    parser.add_argument("--split", choices=("test", "train"), default="test", help="source images (default: test)")
    parser.add_argument("--save", metavar="DIR", help="write every photo and its 28x28 conversion here")
    args = parser.parse_args()
    torch.set_num_threads(1)
    dataset = data.load()
    images, labels = (
        (dataset.test_images, dataset.test_labels)
        if args.split == "test"
        else (dataset.train_images, dataset.train_labels)
    )
    predictor = load_predictor(args.checkpoint)
    start = time.perf_counter()
    rows = photos.measure(predictor, images, labels, args.n, args.seed)
    seconds = time.perf_counter() - start
    if args.save:
        for p in photos.render_set(images, args.n, args.seed):
            stem = Path(args.save) / f"{p.index:05d}-{p.kind}"
            atomic_write(stem.with_suffix(p.suffix), p.data)
            export_png(load_image(p.data), f"{stem}-seen.png")
    print(f"{args.n} photos from the {args.split} split, seed {args.seed}, {args.checkpoint}")
    print(f"{'kind':<10} {'photos':>6} {'photo acc':>9} {'plain acc':>9} {'diff':>6} {'|photo-plain| px':>16}")
    count = sum(r.count for r in rows)
    total = photos.KindResult(
        "all",
        count,
        sum(r.photo_correct for r in rows),
        sum(r.plain_correct for r in rows),
        sum(r.mean_abs_difference * r.count for r in rows) / count,
    )
    for r in [*rows, total]:
        print(
            f"{r.kind:<10} {r.count:>6} {r.photo_correct / r.count:>9.2%} {r.plain_correct / r.count:>9.2%} "
            f"{(r.photo_correct - r.plain_correct) / r.count * 100:>+6.2f} {r.mean_abs_difference:>16.1f}"
        )
    print(f"({seconds:.1f} s to render, convert and classify; not a timing benchmark)", file=sys.stderr)


if __name__ == "__main__":
    main()
