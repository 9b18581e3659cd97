"""Product-style garment photos rendered from Fashion-MNIST images: the reference garment photos the
not-a-garment detector is fitted on (trust.fit), and test material for the photo framing (images.py).

A Fashion-MNIST image is the negated photo of a product on white, so the photo is recovered by
drawing the image's intensity as ink on a background: `background * (1 - x) + ink * x`. Each
render then gets what user photos have: wide, uneven margins (20-150 % of the object on each
side), tinted or uneven backgrounds, a light object on a dark background, an object touching
the edge, sensor noise, JPEG compression, cut-outs on transparency, phone orientation tags, and
a resolution of a few hundred pixels. The detector's references are smaller, framed closer and, half of those not
cut at the edge, turned (REFERENCE_SIDE, REFERENCE_MARGINS, REFERENCE_TURNED). Everything is drawn from a seeded
generator.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

if TYPE_CHECKING:
    import torch

# One kind per thing a real photo does differently; the benchmark reports accuracy per kind.
KINDS = ("studio", "tinted", "gradient", "dark", "edge", "noisy", "cutout", "phone")

MARGINS = (0.2, 1.5)  # each side's margin, as a fraction of the object's size on that axis
LONGER_SIDE = (200, 800)  # the photo's longer side, pixels
# The detector's reference photos (trust.cache renders them so) are smaller: framing costs about the photo's pixels,
# and 400 photos at 200-800 pixels took 8.5-14 s at the end of every training run on 2 vCPUs.
REFERENCE_SIDE = (96, 256)
# They are also framed closer, down to margins of 5 % (a shop's close-up, where the garment fills the picture), and
# half of them are turned, by a uniform angle within MAX_TURN degrees either way (never an "edge" photo, whose object
# stays cut at the picture's edge), as users photograph garments at an angle that the framing sets upright. Upright
# references with margins of 20 % or more showed the detector neither; over five draws of the references
# (benchmarks/reference_draws.py, docs/TRUST.md) these keep more close-ups and garments turned on a flat or textured
# surface, and reject as many non-garments.
REFERENCE_MARGINS = (0.05, 1.5)
REFERENCE_TURNED = 0.5
MAX_TURN = 30.0  # degrees

_EXIF_ORIENTATION = 0x0112
# Orientation tag -> the transpose that makes the stored (sideways) picture from the upright one.
_STORED_AS = {3: Image.Transpose.ROTATE_180, 6: Image.Transpose.ROTATE_90, 8: Image.Transpose.ROTATE_270}


@dataclass(frozen=True)
class Photo:
    data: bytes  # the encoded file, as a user would upload it
    suffix: str  # ".jpg" or ".png"
    kind: str
    index: int  # of the source image in its split


def render_set(images: torch.Tensor, count: int, seed: int, longer_side: tuple[int, int] = LONGER_SIDE) -> list[Photo]:
    """`count` photos of distinct images picked at random from `images` (uint8 [N, 28, 28]), kinds in turn,
    their longer side drawn uniformly from `longer_side` (pixels). Raises ValueError for a count out of range."""
    return list(rendered(images, count, seed, longer_side))


def rendered(
    images: torch.Tensor,
    count: int,
    seed: int,
    longer_side: tuple[int, int] = LONGER_SIDE,
    *,
    margins: tuple[float, float] = MARGINS,
    turned: float = 0.0,
) -> Iterator[Photo]:
    """`render_set`'s photos one at a time, as each is rendered, with `render`'s `margins` and `turned`; its
    ValueError comes at the first one."""
    if not 0 < count <= len(images):
        raise ValueError(f"count must be in 1..{len(images)}, got {count}")
    rng = np.random.default_rng(seed)
    picks = rng.choice(len(images), size=count, replace=False)
    for i, index in enumerate(picks.tolist()):
        kind = KINDS[i % len(KINDS)]
        data, suffix = render(images[index].numpy(), kind, rng, longer_side, margins=margins, turned=turned)
        yield Photo(data, suffix, kind, index)


def reference_renders(images: torch.Tensor, count: int, seed: int) -> Iterator[Photo]:
    """The not-a-garment detector's reference photos (trust.cache frames them): `rendered` in the references' style,
    REFERENCE_SIDE, REFERENCE_MARGINS and REFERENCE_TURNED, read when called."""
    return rendered(images, count, seed, REFERENCE_SIDE, margins=REFERENCE_MARGINS, turned=REFERENCE_TURNED)


def render(
    image: np.ndarray,
    kind: str,
    rng: np.random.Generator,
    longer_side: tuple[int, int] = LONGER_SIDE,
    *,
    margins: tuple[float, float] = MARGINS,
    turned: float = 0.0,
) -> tuple[bytes, str]:
    """One photo of `kind` of a uint8 [28, 28] Fashion-MNIST image: (file bytes, suffix). Each side's margin is
    drawn from `margins` (fractions of the object's size); with probability `turned` (never for "edge") the
    object is turned by up to MAX_TURN degrees, the canvas grown to hold it. Raises ValueError for an unknown kind."""
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; one of {', '.join(KINDS)}")
    ink = _placed(image, kind, rng, longer_side, margins)  # 0..1 on the photo's canvas
    if turned and kind != "edge" and rng.random() < turned:
        angle = float(rng.uniform(-MAX_TURN, MAX_TURN))
        ink = np.asarray(Image.fromarray(ink).rotate(angle, Image.Resampling.BILINEAR, expand=True))
    return photographed(ink, kind, rng)


def photographed(ink: np.ndarray, kind: str, rng: np.random.Generator) -> tuple[bytes, str]:
    """A photo of `kind` (its backdrop, colours, noise and file) of an object drawn as ink coverage float32 0..1
    [H, W] on the photo's canvas: (file bytes, suffix). `render`'s second half."""
    if kind == "cutout":
        return _png(_cutout(ink, rng)), ".png"
    background, colour = _colours(kind, ink.shape, rng)
    photo = (background * (1 - ink[..., None]) + colour * ink[..., None]).astype(np.float32)
    noise = rng.uniform(6, 14) if kind == "noisy" else rng.uniform(0, 3)
    photo += rng.standard_normal(photo.shape, dtype=np.float32) * np.float32(noise)
    picture = Image.fromarray(np.clip(np.rint(photo), 0, 255).astype(np.uint8), "RGB")
    quality = int(rng.integers(35, 60)) if kind == "noisy" else int(rng.integers(70, 96))
    exif = Image.Exif()
    if kind == "phone":
        orientation = int(rng.choice(list(_STORED_AS)))
        picture = picture.transpose(_STORED_AS[orientation])
        exif[_EXIF_ORIENTATION] = orientation
    buffer = io.BytesIO()
    picture.save(buffer, format="JPEG", quality=quality, exif=exif)
    return buffer.getvalue(), ".jpg"


def _placed(
    image: np.ndarray,
    kind: str,
    rng: np.random.Generator,
    longer_side: tuple[int, int],
    margins_range: tuple[float, float] = MARGINS,
) -> np.ndarray:
    """The object, upsampled to photo size and placed with margins drawn from `margins_range`, as ink coverage
    0..1 [H, W]."""
    rows, cols = np.flatnonzero(image.any(1)), np.flatnonzero(image.any(0))
    obj = image[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1] if rows.size else image
    height, width = obj.shape
    # Margins per side (top, bottom, left, right) as fractions of the object's height or width.
    margins = rng.uniform(*margins_range, size=4)
    if kind == "edge":  # one side, sometimes two, cut off at the object
        margins[rng.choice(4, size=int(rng.integers(1, 3)), replace=False)] = 0.0
    canvas_h = height * (1 + margins[0] + margins[1])
    canvas_w = width * (1 + margins[2] + margins[3])
    scale = rng.uniform(*longer_side) / max(canvas_h, canvas_w)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    big = Image.fromarray(obj).resize(size, Image.Resampling.BICUBIC)
    ink = np.zeros((round(canvas_h * scale), round(canvas_w * scale)), dtype=np.float32)
    top = min(round(height * margins[0] * scale), ink.shape[0] - size[1])
    left = min(round(width * margins[2] * scale), ink.shape[1] - size[0])
    ink[top : top + size[1], left : left + size[0]] = np.asarray(big, dtype=np.float32) / 255
    return ink


def _colours(kind: str, shape: tuple[int, ...], rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Background [H, W, 3] (or broadcastable) and ink colour [3], 0..255."""
    if kind == "dark":  # a light object in a dark studio
        background = rng.uniform(0, 60) + rng.uniform(-8, 8, 3)
        colour = rng.uniform(180, 255) + rng.uniform(-15, 15, 3)
        return background[None, None, :], colour
    if kind == "tinted":  # a pastel backdrop and a coloured garment
        background = rng.uniform(170, 245, 3)
        colour = rng.uniform(0, 110, 3)
    else:
        background = rng.uniform(215, 255) + rng.uniform(-6, 6, 3)
        colour = rng.uniform(0, 70) + rng.uniform(-15, 15, 3)
    background = np.broadcast_to(background, (*shape, 3)).astype(np.float32)
    if kind == "gradient":  # light falling off across the backdrop, and a vignette
        height, width = shape
        y, x = np.mgrid[0:height, 0:width].astype(np.float32)
        y, x = y / height - 0.5, x / width - 0.5
        angle = rng.uniform(0, 2 * np.pi)
        ramp = rng.uniform(15, 40) * (np.cos(angle) * x + np.sin(angle) * y)
        vignette = rng.uniform(0, 30) * (x**2 + y**2) * 2
        background = background + (ramp - vignette)[..., None]
    return background, colour


def _cutout(ink: np.ndarray, rng: np.random.Generator) -> Image.Image:
    """RGBA: the object opaque where it has any ink, the rest fully transparent (with junk colour behind)."""
    # The object's silhouette with a soft edge; the source's faint background specks stay outside.
    alpha = np.clip((ink - 0.03) * 15, 0, 1)
    if rng.random() < 0.5:  # a dark or mid-tone product
        colour = rng.uniform(0, 120) + rng.uniform(-15, 15, 3)
        light = 255.0
    else:  # a light product (white sneaker, cream shirt): must not vanish on white
        colour = rng.uniform(140, 200) + rng.uniform(-10, 10, 3)
        light = rng.uniform(235, 255)
    rgb = light * (1 - ink[..., None]) + colour * ink[..., None]
    junk = 0.0 if rng.random() < 0.5 else 255.0  # what editors leave under alpha 0
    rgb = np.where(alpha[..., None] > 0, rgb, junk)
    rgba = np.concatenate([rgb, alpha[..., None] * 255], axis=2)
    return Image.fromarray(np.clip(np.rint(rgba), 0, 255).astype(np.uint8), "RGBA")


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()
