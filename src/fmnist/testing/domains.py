"""Shifted photo domains rendered from Fashion-MNIST images: material for `fmnist adapt`'s benchmark and tests.

Each domain is a way of photographing garments that the product renders (trust.references) do not
cover: lying on a wooden table ("wood"), on a woven cloth ("cloth"), in low coloured light ("dim"),
partly covered by another object ("covered"), and drawn as opaque cloth ("opaque"). A render draws the image's
intensity as ink of a light or dark colour over the surface (an "opaque" garment: its silhouette filled with one
colour, shaded by the intensity), turns it a little, and saves a JPEG; everything is drawn from a seeded
generator, so a domain's photos of training images and of test images never share a source.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from fmnist.trust.references import _placed

DOMAINS = ("wood", "cloth", "dim", "covered", "opaque")
LONGER_SIDE = (240, 480)  # pixels


def render(image: np.ndarray, domain: str, rng: np.random.Generator) -> bytes:
    """One JPEG photo in `domain` of a uint8 [28, 28] Fashion-MNIST image."""
    if domain not in DOMAINS:
        raise ValueError(f"unknown domain {domain!r}; one of {', '.join(DOMAINS)}")
    ink = _placed(image, "studio", rng, LONGER_SIDE)
    ink = np.asarray(Image.fromarray(ink).rotate(float(rng.uniform(-12, 12)), Image.Resampling.BILINEAR))
    height, width = ink.shape
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    if domain == "wood":  # warm grain along one axis, a light garment
        grain = np.sin(x / rng.uniform(3, 7) + 2.5 * np.sin(y / rng.uniform(25, 60))) * rng.uniform(12, 25)
        surface = np.array([120, 80, 45], np.float32) * rng.uniform(0.8, 1.2) + grain[..., None]
        colour = rng.uniform(200, 245) + rng.uniform(-10, 10, 3)
    elif domain == "cloth":  # a woven weave of two thread colours, a garment light or dark
        period = rng.uniform(3, 6)
        weave = (np.sin(x / period) * np.sin(y / period) > 0).astype(np.float32)
        threads = rng.uniform(60, 170, (2, 3)).astype(np.float32)
        surface = threads[0] * weave[..., None] + threads[1] * (1 - weave[..., None])
        colour = rng.uniform(215, 250, 3) if rng.random() < 0.6 else rng.uniform(0, 40, 3)
    elif domain == "dim":  # a white backdrop under low, tinted light, with the noise of a high ISO
        tint = np.array(rng.choice([[1.0, 0.75, 0.45], [0.55, 0.7, 1.0], [1.0, 0.55, 0.7]]), np.float32)
        gain = rng.uniform(0.25, 0.45)
        surface = np.full((height, width, 3), 235, np.float32) * tint * gain
        colour = rng.uniform(0, 40, 3) * gain
    elif domain == "opaque":  # the silhouette filled with one colour shaded by the intensity, from 40-70 % of it to all
        surface = np.full((height, width, 3), rng.uniform(215, 250), np.float32)
        low = rng.uniform(0.4, 0.7)
        shade = low + (1 - low) * ink if rng.random() < 0.5 else 1 - (1 - low) * ink  # either way round
        colour = (rng.uniform(20, 150) + rng.uniform(-20, 20, 3)).astype(np.float32) * shade[..., None]
        ink = np.clip((ink * 255 - 8) / 16, 0, 1)  # opaque wherever the image is above a faint level
    else:  # covered: a studio photo with a block of another object over part of the garment
        surface = np.full((height, width, 3), rng.uniform(220, 255), np.float32)
        colour = rng.uniform(0, 80) + rng.uniform(-15, 15, 3)
    photo = surface * (1 - ink[..., None]) + colour * ink[..., None]
    if domain == "covered":
        _cover(photo, ink, rng)
    noise = 12 if domain == "dim" else 3
    photo += rng.standard_normal(photo.shape).astype(np.float32) * noise
    buffer = io.BytesIO()
    Image.fromarray(np.clip(np.rint(photo), 0, 255).astype(np.uint8), "RGB").save(buffer, "JPEG", quality=88)
    return buffer.getvalue()


def _cover(photo: np.ndarray, ink: np.ndarray, rng: np.random.Generator) -> None:
    """Paint a flat-coloured rectangle over 15-30 % of the garment's box, from one of its sides."""
    rows, cols = np.flatnonzero(ink.max(1) > 0.1), np.flatnonzero(ink.max(0) > 0.1)
    if not rows.size:
        return
    top, bottom, left, right = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    share = rng.uniform(0.15, 0.3)
    side = int(rng.integers(4))
    if side == 0:
        bottom = top + int(share * (bottom - top))
    elif side == 1:
        top = bottom - int(share * (bottom - top))
    elif side == 2:
        right = left + int(share * (right - left))
    else:
        left = right - int(share * (right - left))
    photo[top:bottom, left:right] = rng.uniform(60, 200, 3)


def render_many(images: np.ndarray, domain: str, seed: int) -> list[bytes]:
    """A photo in `domain` of each uint8 [28, 28] image of `images` [N, 28, 28], in order."""
    rng = np.random.default_rng([seed, DOMAINS.index(domain)])
    return [render(image, domain, rng) for image in images]
