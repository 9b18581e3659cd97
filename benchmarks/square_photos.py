"""Square product photos on a flat off-white backdrop, with a camera's sensor noise and, or not, a soft drop shadow:
the share kept as garments, the share read right, and the share framed as a digital image, per noise level.

    python benchmarks/square_photos.py RUN [--images 120] [--noise 0,1.5,4] [--split val] [--seed 0]

Each photo: a Fashion-MNIST image enlarged bicubically to 50-75 % of a square 250-500 pixels wide, near its centre,
drawn as a coloured garment on a backdrop of level 225-255, Gaussian noise of the given level in each channel, saved
as a JPEG of quality 90; with a shadow, the backdrop under the garment's silhouette shifted by 1-5 % of the side
and blurred by 1-4 % of it is darkened by 15-40 %. `--split val` (the default) renders the run's validation images
(the last 5,000 training images); `test` the test set. Nothing here is fitted on these photos.
"""

from __future__ import annotations

import argparse
import io
import platform

import numpy as np
from PIL import Image, ImageFilter

from fmnist import data
from fmnist.images import load_picture
from fmnist.inference import load_predictor


def photo(image: np.ndarray, noise: float, shadow: bool, rng: np.random.Generator) -> bytes:
    side = int(rng.integers(250, 500))
    size = int(side * rng.uniform(0.5, 0.75))
    ink = np.asarray(Image.fromarray(image).resize((size, size), Image.Resampling.BICUBIC), np.float32) / 255
    canvas = np.zeros((side, side), np.float32)
    at = (side - size) // 2 + int(rng.integers(-10, 10))
    canvas[at : at + size, at : at + size] = ink
    picture = np.full((side, side, 3), rng.uniform(225, 255), np.float32)
    if shadow:
        silhouette = (canvas > 0.05).astype(np.float32)
        dx, dy = (int(side * rng.uniform(0.01, 0.05)) for _ in range(2))
        moved = np.roll(silhouette, (dy, dx), (0, 1))
        blur = ImageFilter.GaussianBlur(side * rng.uniform(0.01, 0.04))
        soft = np.asarray(Image.fromarray(np.uint8(moved * 255)).filter(blur), np.float32) / 255
        picture *= (1 - rng.uniform(0.15, 0.4) * soft)[..., None]
    colour = rng.uniform(20, 120, 3).astype(np.float32)
    picture = picture * (1 - canvas[..., None]) + colour * canvas[..., None]
    picture += rng.normal(0, noise, picture.shape).astype(np.float32)
    buffer = io.BytesIO()
    Image.fromarray(np.uint8(np.clip(np.rint(picture), 0, 255))).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", help="a run directory or checkpoint")
    parser.add_argument("--images", type=int, default=120, help="source images (default: 120)")
    parser.add_argument("--noise", default="0,1.5,4", help="sensor noise levels, comma-separated (default: 0,1.5,4)")
    parser.add_argument("--split", choices=("val", "test"), default="val")
    parser.add_argument("--seed", type=int, default=0)
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
    print(f"{args.images} {args.split} images, {platform.processor() or platform.machine()}; RUN {args.run}")
    print("\n| noise | shadow | kept | right | framed as digital |\n|---|---|---|---|---|")
    for noise in (float(n) for n in args.noise.split(",")):
        for shadow in (False, True):
            framed = [
                load_picture(photo(images[i], noise, shadow, np.random.default_rng([args.seed, int(i)]))) for i in picks
            ]
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
