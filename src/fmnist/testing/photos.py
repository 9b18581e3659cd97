"""Accuracy on product-style photos rendered from Fashion-MNIST images, per kind: test material for the photo
framing (images.py) and benchmarks/photos.py. The renderer itself is fmnist.trust.references (the detector's
references are rendered with it); its names are re-exported here for the tests and benchmarks. `square_photo`
renders a square product photo on a flat backdrop, with sensor noise and a drop shadow (benchmarks/square_photos.py);
`pair_of` sets a shoe beside a copy of itself, for `render` to photograph as a pair (benchmarks/pairs.py), and
`on_hanger` photographs a garment hanging on a wire hanger (benchmarks/hangers.py).
A close-up (`render(..., margins=CLOSE_UP)`) is framed tight: the garment fills most of the picture, as in a shop's
product photos.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFilter

from fmnist.images import load_image
from fmnist.inference import Predictor
from fmnist.trust.references import KINDS, LONGER_SIDE, Photo, _placed, photographed, render, render_set

__all__ = [
    "CLOSE_UP",
    "KINDS",
    "KindResult",
    "Photo",
    "measure",
    "on_hanger",
    "pair_of",
    "render",
    "render_set",
    "square_photo",
]

CLOSE_UP = (0.03, 0.25)  # each side's margin of a close-up, as a fraction of the object's size on that axis


@dataclass(frozen=True)
class KindResult:
    kind: str
    count: int
    photo_correct: int  # the photos, through images.load_image
    plain_correct: int  # the same source images, as 28x28 test images
    mean_abs_difference: float  # between the converted photo and its source image, 0..255


def measure(
    predictor: Predictor, images: torch.Tensor, labels: torch.Tensor, count: int, seed: int, batch_size: int = 256
) -> list[KindResult]:
    """Accuracy on `count` photos rendered from `images` (converted by images.load_image) against the
    same predictor on the source images themselves; one row per kind."""
    photos = render_set(images, count, seed)
    converted = torch.stack([load_image(p.data, f"{p.kind}-{p.index}{p.suffix}") for p in photos])
    indices = torch.tensor([p.index for p in photos])
    source = images[indices]
    photo_pred = _classify(predictor, converted, batch_size)
    plain_pred = _classify(predictor, source, batch_size)
    truth = labels[indices]
    difference = (converted.float() - source.float()).abs().mean((1, 2))
    kinds = np.array([p.kind for p in photos])
    rows = []
    for kind in KINDS:
        sel = torch.from_numpy(kinds == kind)
        if sel.any():
            rows.append(
                KindResult(
                    kind,
                    int(sel.sum()),
                    int((photo_pred[sel] == truth[sel]).sum()),
                    int((plain_pred[sel] == truth[sel]).sum()),
                    float(difference[sel].mean()),
                )
            )
    return rows


def _classify(predictor: Predictor, images: torch.Tensor, batch_size: int) -> torch.Tensor:
    return torch.cat([predictor.logits(chunk).argmax(1) for chunk in images.split(batch_size)])


def square_photo(
    image: np.ndarray, noise: float, shadow: bool, rng: np.random.Generator, backdrop: float | None = None
) -> bytes:
    """A square JPEG (quality 90) of a uint8 [28, 28] Fashion-MNIST image as a product on a flat backdrop: the image
    enlarged bicubically to 50-75 % of a square 250-500 pixels wide, near its centre, drawn as a coloured garment on a
    backdrop of level 225-255 (or `backdrop`: 255 is one lit past white, which clips half of its noise), with
    Gaussian sensor noise of `noise` levels in each channel; with a `shadow`, the backdrop under the garment's
    silhouette shifted by 1-5 % of the side and blurred by 1-4 % of it is darkened by 15-40 % (a drop shadow)."""
    side = int(rng.integers(250, 500))
    size = int(side * rng.uniform(0.5, 0.75))
    ink = np.asarray(Image.fromarray(image).resize((size, size), Image.Resampling.BICUBIC), np.float32) / 255
    canvas = np.zeros((side, side), np.float32)
    at = (side - size) // 2 + int(rng.integers(-10, 10))
    canvas[at : at + size, at : at + size] = ink
    picture = np.full((side, side, 3), rng.uniform(225, 255) if backdrop is None else backdrop, np.float32)
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


def pair_of(shoe: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A pair of the shoe in a uint8 [28, 28] Fashion-MNIST image, side by side as a shop photographs one, as one uint8
    image [h + |drop|, 2w + gap] (h, w: the shoe's box) for `render`: a gap of 10-60 % of w between the two, the second
    set lower or higher by up to 15 % of h (seen a little from the front), and mirrored half of the time (a left and a
    right shoe, their toes apart or together)."""
    rows, cols = np.flatnonzero(shoe.any(1)), np.flatnonzero(shoe.any(0))
    one = shoe[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    h, w = one.shape
    gap, drop = max(1, round(w * rng.uniform(0.1, 0.6))), round(h * rng.uniform(-0.15, 0.15))
    other = one[:, ::-1] if rng.random() < 0.5 else one
    pair = np.zeros((h + abs(drop), 2 * w + gap), np.uint8)
    pair[max(0, -drop) : max(0, -drop) + h, :w] = one
    pair[max(0, drop) : max(0, drop) + h, w + gap :] = other
    return pair


def on_hanger(image: np.ndarray, kind: str, rng: np.random.Generator, wire: np.random.Generator) -> tuple[bytes, str]:
    """A photo of `kind` of the garment in a uint8 [28, 28] Fashion-MNIST image hanging on a wire hanger: (file bytes,
    suffix). The garment is placed and photographed as `render` does with `rng` (the same draws: the same photo but
    for the hanger, which `wire` draws): a hook above its top's middle and a wire from the hook down to just beyond
    its shoulders and across them, 1/50 to 1/32 of the garment's longer side thick (half a pixel of the 28x28 view or
    more, less than a whole one). Raises ValueError for an unknown kind or for "edge" (no room above the garment)."""
    kinds = [k for k in KINDS if k != "edge"]
    if kind not in kinds:
        raise ValueError(f"a hanger needs room above the garment: one of {', '.join(kinds)}")
    ink = _placed(image, kind, rng, LONGER_SIDE)
    rows, cols = np.flatnonzero(ink.max(1) > 0.1), np.flatnonzero(ink.max(0) > 0.1)
    top, left, right = int(rows[0]), int(cols[0]), int(cols[-1]) + 1
    height, width = int(rows[-1]) + 1 - top, right - left
    thick = max(1, round(max(height, width) * wire.uniform(1 / 50, 1 / 32)))
    middle, hook = (left + right) / 2, max(thick, min(top, round(0.12 * height)))  # the hook's height above the top
    shoulder = top + round(0.12 * height * wire.uniform(0.5, 1.0))
    ends = (left - 0.04 * width, shoulder), (right + 0.04 * width, shoulder)
    hanger = Image.new("L", (ink.shape[1], ink.shape[0]), 0)
    draw = ImageDraw.Draw(hanger)
    base = (middle, top - hook / 3)
    draw.line([ends[0], base, ends[1], ends[0]], fill=255, width=thick)
    draw.arc((middle - hook / 3, top - hook, middle + hook / 3, top - hook / 3), 180, 90, fill=255, width=thick)
    ink = np.maximum(ink, np.asarray(hanger, np.float32) / 255 * np.float32(wire.uniform(0.6, 1.0)))
    return photographed(ink, kind, rng)
