"""Square product photos on a flat off-white backdrop, with a camera's sensor noise and, or not, a soft drop shadow:
the share kept as garments, the share read right, and the share framed as a digital image, per noise level.

    python benchmarks/square_photos.py RUN [--images 120] [--noise 0,1.5,4] [--split val] [--seed 0] [--backdrop 255]

Each photo: `fmnist.testing.photos.square_photo` of a Fashion-MNIST image. `--split val` (the default) renders the
run's validation images (the last 5,000 training images); `test` the test set. Nothing here is fitted on these photos.
"""

from __future__ import annotations

import argparse
import platform

import numpy as np

from fmnist import data
from fmnist.images import load_picture
from fmnist.inference import load_predictor
from fmnist.testing.photos import square_photo


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", help="a run directory or checkpoint")
    parser.add_argument("--images", type=int, default=120, help="source images (default: 120)")
    parser.add_argument("--noise", default="0,1.5,4", help="sensor noise levels, comma-separated (default: 0,1.5,4)")
    parser.add_argument("--split", choices=("val", "test"), default="val")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--backdrop", type=float, help="the backdrop's level (default: drawn in 225-255; 255 clips half of its noise)"
    )
    args = parser.parse_args()
    arrays = data.load_arrays()
    images, labels = (
        (arrays.train_images[-5000:], arrays.train_labels[-5000:])
        if args.split == "val"
        else (arrays.test_images, arrays.test_labels)
    )
    picks = np.random.default_rng(args.seed).choice(len(images), args.images, replace=False)
    predictor = load_predictor(args.run)
    trust = predictor.trust
    backdrop = "225-255" if args.backdrop is None else f"{args.backdrop:g}"
    print(f"{args.images} {args.split} images, backdrop {backdrop}, {platform.machine()}; RUN {args.run}")
    print("\n| noise | shadow | kept | right | framed as digital |\n|---|---|---|---|---|")
    for noise in (float(n) for n in args.noise.split(",")):
        for shadow in (False, True):
            rngs = [np.random.default_rng([args.seed, int(i)]) for i in picks]
            rendered = [
                square_photo(images[i], noise, shadow, rng, args.backdrop) for i, rng in zip(picks, rngs, strict=True)
            ]
            framed = [load_picture(data) for data in rendered]
            views = np.stack([f.pixels for f in framed])
            logits = predictor.logits(views)
            scores = trust.scores(logits, views, [f.cues for f in framed])
            kept = scores >= trust.threshold if scores is not None else np.ones(len(framed), bool)
            right = np.asarray(logits).argmax(1) == labels[picks]
            digital = np.mean([f.cues is None for f in framed])
            shadowed = "yes" if shadow else "no"
            print(f"| {noise:g} | {shadowed} | {kept.mean():.1%} | {right.mean():.1%} | {digital:.1%} |")


if __name__ == "__main__":
    main()
