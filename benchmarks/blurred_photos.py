"""Product photos out of focus: the share of garment photos the not-a-garment detector keeps, and the share read
right, when each photo is blurred by a Gaussian whose sigma is a share of its longer side, per share.

    python benchmarks/blurred_photos.py RUN [--images 200] [--blur 0,0.005,0.01,0.02,0.03] [--split val] [--seed 5]

Each photo: `fmnist.trust.references.render_set` of a Fashion-MNIST image (the renderer of the detector's references,
in the upright style of the test material: its eight kinds, at its default sizes and margins), blurred by Pillow's
GaussianBlur, saved as a JPEG (quality 90).
`--split val` (the default) renders the run's validation split (images it never trained on); `test` the test set.
Nothing is fitted here.
"""

from __future__ import annotations

import argparse
import io
import platform

import numpy as np
import torch
from PIL import Image, ImageFilter

from fmnist import data
from fmnist.data import validation_split
from fmnist.images import load_picture
from fmnist.inference import TorchPredictor
from fmnist.trust import judge
from fmnist.trust.references import render_set


def blurred(photo: bytes, share: float) -> bytes:
    """The photo blurred by a Gaussian of sigma `share` x its longer side, as a JPEG."""
    image = Image.open(io.BytesIO(photo)).convert("RGB")
    if share:
        image = image.filter(ImageFilter.GaussianBlur(share * max(image.size)))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", help="a run directory or checkpoint")
    parser.add_argument("--blur", default="0,0.005,0.01,0.02,0.03", help="sigmas, shares of the longer side")
    parser.add_argument("--split", choices=("val", "test"), default="val")
    parser.add_argument("--images", type=int, default=200, help="source images (default: 200)")
    parser.add_argument("--seed", type=int, default=5)
    args = parser.parse_args()
    predictor = TorchPredictor(args.run)
    dataset = data.load()
    if args.split == "val":
        _, held_out = validation_split(dataset.train_labels, predictor.config)
        images, labels = dataset.train_images[held_out], dataset.train_labels[held_out]
    else:
        images, labels = dataset.test_images, dataset.test_labels
    photos = render_set(images, args.images, args.seed)  # distinct images, drawn by the seed
    truth = labels[[photo.index for photo in photos]].numpy()
    print(f"{args.images} {args.split} images as product photos, {platform.machine()}; RUN {args.run}")
    print("\n| blur (sigma / longer side) | kept | right |\n|---|---|---|")
    for share in (float(s) for s in args.blur.split(",")):
        framed = [load_picture(blurred(photo.data, share)) for photo in photos]
        views = torch.stack([f.image for f in framed])
        logits = predictor.logits(views)
        kept = judge(predictor.trust, logits, views, [f.cues for f in framed]).garment
        right = np.asarray(logits).argmax(1) == truth
        print(f"| {share:g} | {kept.mean():.1%} | {right.mean():.1%} |")


if __name__ == "__main__":
    main()
