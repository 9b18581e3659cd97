"""Garments photographed lying on a surface, turned: test material for the photo framing (images.py) and
benchmarks/surfaces.py.

Each photo puts one Fashion-MNIST image on one kind of surface: procedural ones drawn here (wood with growth
rings, a woven or checked cloth, fibrous paper, tiles with grout, a tablecloth printed in crisp flat colours
("check": a gingham, a checkerboard or stripes, at any angle, with little sensor noise, or half the time none,
saved by a program as a lossless PNG), a plain "flat" table, a "lit" studio backdrop whose light ramps across it
and clips at white, or at black on a dark one, the garment's drop shadow on it half the time, a flat table crossed by
a hard edge of light ("shade": a shadow, a window's light or a bar's shadow, across the garment too), a light bedsheet
shaded by its folds ("sheet": soft ridges of light and shadow across it, with little sensor noise) and scikit-image's
shipped photos of brick, grass and gravel (`skimage.data`, in its wheel), tinted. The garment is drawn either as
ink over the surface (the surface shows through its thin parts, as in `fmnist.testing.domains`) or as opaque
cloth that hides the surface, light on a dark surface or dark on a light one; the whole is turned by up to
`max_angle` degrees, lit by a coloured light, sometimes crossed by a soft shadow, with sensor noise, and saved
as a JPEG (but the lossless checks). Everything is drawn from a seeded generator.
"""

from __future__ import annotations

import io
from functools import cache

import numpy as np
from PIL import Image, ImageFilter

from fmnist.trust.references import _placed

# Surfaces drawn here, and surfaces that are photos shipped with scikit-image.
PROCEDURAL = ("wood", "cloth", "paper", "tile", "check")
SHIPPED = ("brick", "grass", "gravel")
# Every kind, in the order the kinds were added: a kind's place seeds its photos, which a new kind leaves as they were.
KINDS = ("wood", "cloth", "paper", "tile", *SHIPPED, "flat", "lit", "check", "shade", "sheet")
TEXTURED = tuple(kind for kind in KINDS if kind in PROCEDURAL + SHIPPED)
# Kinds added after the benchmarks' choices were made (benchmarks/ood.py, benchmarks/surfaces.py): they draw them after
# every other picture, so that those stay the pictures they were.
LATE = ("sheet",)
LONGER_SIDE = (240, 480)  # pixels, before turning
FOLDS = (3, 8)  # a sheet's creases: 3 to 7
# The sensor noise's standard deviation, levels, drawn uniformly: (1, 6) but for a print (a crisp check) and a phone's
# denoised photo of a sheet.
SENSOR_NOISE = {"check": (0.3, 2.0), "sheet": (0.0, 1.0)}
MIN_CONTRAST = 70.0  # the least difference in luminance between the garment and the surface's mean, 0..255


def render(image: np.ndarray, kind: str, rng: np.random.Generator, max_angle: float = 30.0) -> bytes:
    """One photo (a JPEG; a PNG for a lossless check) of a uint8 [28, 28] Fashion-MNIST image lying on surface
    `kind`, turned by a uniform angle in [-max_angle, max_angle] degrees. Raises ValueError for an unknown kind."""
    if kind not in KINDS:
        raise ValueError(f"unknown surface {kind!r}; one of {', '.join(KINDS)}")
    ink = _placed(image, "studio", rng, LONGER_SIDE)
    angle = float(rng.uniform(-max_angle, max_angle))
    ink = np.asarray(Image.fromarray(ink).rotate(angle, Image.Resampling.BILINEAR, expand=True))
    surface = _surface(kind, ink.shape, rng)
    if kind == "lit" and rng.random() < 0.5:
        surface = _drop_shadow(surface, ink, rng)
    level = float(np.clip(surface, 0, 255).mean() if kind == "lit" else surface.mean())
    # Mostly the contrast a photographer picks; always on a backdrop lit past white (a white shirt would vanish).
    light = (level < 128) != (rng.random() >= 0.85 and kind != "lit")
    tone = rng.uniform(min(level + MIN_CONTRAST, 255), 255) if light else rng.uniform(0, max(level - MIN_CONTRAST, 0))
    colour = np.clip(tone + rng.uniform(-25, 25, 3), 0, 255).astype(np.float32)
    if rng.random() < 0.5:  # ink: the surface shows through the garment's thin parts
        photo = surface * (1 - ink[..., None]) + colour * ink[..., None]
    else:  # opaque cloth: hides the surface, shaded by the image's intensity
        cover = np.clip(ink * 6, 0, 1)[..., None]
        cloth = level * (1 - ink[..., None]) + colour * ink[..., None]
        photo = surface * (1 - cover) + cloth * cover
    photo = _lit(photo, rng)
    if kind == "shade":
        photo = _light_edge(photo, rng)
    noise = rng.standard_normal(photo.shape).astype(np.float32)
    lossless = kind == "check" and rng.random() < 0.5  # a print saved by a program: no sensor noise, a PNG
    photo += noise * np.float32(0.0 if lossless else rng.uniform(*SENSOR_NOISE.get(kind, (1, 6))))
    buffer = io.BytesIO()
    picture = Image.fromarray(np.clip(np.rint(photo), 0, 255).astype(np.uint8), "RGB")
    if lossless:
        picture.save(buffer, "PNG")
    else:
        picture.save(buffer, "JPEG", quality=int(rng.integers(70, 95)))
    return buffer.getvalue()


def render_many(images: np.ndarray, kind: str, seed: int, max_angle: float = 30.0) -> list[bytes]:
    """A photo on surface `kind` of each uint8 [28, 28] image of `images` [N, 28, 28], in order."""
    rng = np.random.default_rng([seed, KINDS.index(kind)])
    return [render(image, kind, rng, max_angle) for image in images]


def _surface(kind: str, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """float32 RGB [H, W, 3] on 0..255."""
    height, width = shape
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    if kind in ("flat", "shade"):
        base = rng.uniform(30, 230) + rng.uniform(-20, 20, 3)
        return np.broadcast_to(base.astype(np.float32), (height, width, 3)).copy()
    if kind == "lit":  # light ramping across a white backdrop past 255 (or a black one below 0) over part of it
        angle = rng.uniform(0, 2 * np.pi)
        ramp = (np.cos(angle) * (x - width / 2) + np.sin(angle) * (y - height / 2)) / max(height, width)
        if rng.random() < 0.7:
            level = rng.uniform(220, 250) * (1 + rng.uniform(0.5, 1.0) * ramp + rng.uniform(0.1, 0.3))
        else:
            level = rng.uniform(5, 30) - rng.uniform(80, 180) * (ramp + rng.uniform(0.0, 0.2))
        return (level[..., None] + rng.uniform(-6, 6, 3)).astype(np.float32)
    if kind == "sheet":  # a light sheet with FOLDS creases, each lit on one side and shaded on the other by 3-15 levels
        level = np.full((height, width), rng.uniform(200, 235), np.float32)  # under 255 with its folds and tint
        for _ in range(int(rng.integers(*FOLDS))):
            angle, spread = rng.uniform(0, np.pi), rng.uniform(0.05, 0.2) * max(height, width)
            cos, sin = np.cos(angle), np.sin(angle)
            reach = (abs(cos) * width + abs(sin) * height) / 2  # the crease crosses the picture
            across = (cos * (x - width / 2) + sin * (y - height / 2) - rng.uniform(-reach, reach)) / spread
            level += np.float32(rng.uniform(5, 25) * rng.choice([-1, 1])) * across * np.exp(-0.5 * across**2)
        return level[..., None] + rng.uniform(-8, 4, 3).astype(np.float32)
    if kind in SHIPPED:
        texture = _texture(kind, (height, width), rng)
        tint = rng.uniform(0.5, 1.0, 3).astype(np.float32)
        return texture[..., None] * tint * np.float32(rng.uniform(0.6, 1.1))
    if kind == "wood":  # growth rings around a far-away centre, warped by a slow wave
        cy, cx = rng.uniform(-3, 3, 2) * np.array([height, width])
        radius = np.hypot(y - cy, x - cx) + 6 * np.sin(x / rng.uniform(20, 50))
        grain = 0.5 + 0.5 * np.sin(radius / rng.uniform(2, 6))
        brown = np.array([140, 95, 55], np.float32) * np.float32(rng.uniform(0.5, 1.3))
        return brown * (0.75 + 0.35 * grain[..., None])
    if kind == "cloth":  # a weave of two thread colours, or a gingham check
        period = rng.uniform(2.5, 10)
        if rng.random() < 0.5:
            pattern = (np.sin(x / period) * np.sin(y / period) > 0).astype(np.float32)
        else:
            pattern = 0.5 * ((np.sin(x / period) > 0).astype(np.float32) + (np.sin(y / period) > 0))
        threads = rng.uniform(30, 220, (2, 3)).astype(np.float32)
        return threads[0] * pattern[..., None] + threads[1] * (1 - pattern[..., None])
    if kind == "check":  # a printed tablecloth: flat colours in squares or stripes 8-40 pixels wide, at any angle
        period, angle = rng.uniform(8, 40), rng.uniform(0, np.pi)
        u, v = np.cos(angle) * x + np.sin(angle) * y, np.cos(angle) * y - np.sin(angle) * x
        across, down = ((u + rng.uniform(0, 2 * period)) % (2 * period) < period), ((v % (2 * period)) < period)
        style = int(rng.integers(3))
        pattern = (across ^ down) if style == 0 else 0.5 * (across.astype(np.float32) + down) if style == 1 else across
        inks = rng.uniform(20, 240, (2, 3)).astype(np.float32)
        pattern = np.asarray(pattern, np.float32)[..., None]
        return inks[0] * pattern + inks[1] * (1 - pattern)
    if kind == "paper":  # light, with fibres and blotches
        fibres = _smooth_noise((height, width), rng, 2) * 10 + _smooth_noise((height, width), rng, 25) * 20
        base = rng.uniform(190, 245) + rng.uniform(-10, 5, 3)
        return (base + fibres[..., None]).astype(np.float32)
    # tile: square tiles, each its own shade, with darker or lighter grout lines
    size = rng.uniform(25, 90)
    grout = ((x + rng.uniform(0, size)) % size < 3) | ((y + rng.uniform(0, size)) % size < 3)
    cells = (x // size) * 31 + (y // size) * 17
    shade = np.sin(cells) * 12
    base = rng.uniform(40, 230) + rng.uniform(-15, 15, 3)
    tile = base + shade[..., None]
    return np.where(grout[..., None], base * rng.choice([0.5, 1.4]), tile).astype(np.float32)


@cache
def _shipped(kind: str) -> np.ndarray:
    import skimage.data as sk

    return np.asarray(getattr(sk, kind)(), dtype=np.float32)


def _texture(kind: str, shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """A random crop of scikit-image's `kind` texture, resized to `shape` (height, width)."""
    full = _shipped(kind)
    side = int(rng.integers(200, full.shape[0] + 1))
    top, left = rng.integers(0, full.shape[0] - side + 1), rng.integers(0, full.shape[1] - side + 1)
    crop = Image.fromarray(full[top : top + side, left : left + side], "F")
    return np.asarray(crop.resize((shape[1], shape[0]), Image.Resampling.BILINEAR), dtype=np.float32)


def _smooth_noise(shape: tuple[int, int], rng: np.random.Generator, scale: float) -> np.ndarray:
    """Gaussian noise blurred to features about `scale` pixels wide, about unit standard deviation."""
    small = rng.standard_normal((max(2, int(shape[0] / scale)), max(2, int(shape[1] / scale)))).astype(np.float32)
    return np.asarray(Image.fromarray(small, "F").resize((shape[1], shape[0]), Image.Resampling.BICUBIC))


def _drop_shadow(surface: np.ndarray, ink: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """`surface` darkened by a soft shadow of the garment (`ink`, 0..1 [H, W]) cast down and to one side."""
    side = max(ink.shape)
    blur = ImageFilter.GaussianBlur(side * rng.uniform(0.01, 0.04))
    shadow = np.asarray(Image.fromarray(np.uint8(np.rint(ink * 255))).filter(blur), np.float32) / 255
    shift = (rng.uniform(0.01, 0.04, 2) * side * rng.choice([-1, 1], 2)).round().astype(int)
    shadow = np.roll(shadow, tuple(shift), axis=(0, 1))
    return surface * (1 - rng.uniform(0.2, 0.45) * shadow[..., None])


def _light_edge(photo: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """`photo` crossed by a hard edge of light at any angle, each style a third of the time: a shadow (25-55 % darker
    beyond it), a window's light (15-35 % brighter, clipping where it passes white) or the shadow of a bar 5-20 % of
    the side wide; the edge softened over 0.2-1.5 % of the side."""
    height, width = photo.shape[:2]
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    angle, side = rng.uniform(0, 2 * np.pi), max(height, width)
    across = (np.cos(angle) * (x - width / 2) + np.sin(angle) * (y - height / 2)) / side - rng.uniform(-0.3, 0.3)
    softness = rng.uniform(0.002, 0.015)

    def beyond(at: float) -> np.ndarray:
        return 1 / (1 + np.exp(-np.clip((across - at) / softness, -50, 50)))

    style = int(rng.integers(3))
    if style == 0:
        light = 1 - rng.uniform(0.25, 0.55) * beyond(0.0)
    elif style == 1:
        light = 1 + rng.uniform(0.15, 0.35) * beyond(0.0)
    else:
        light = 1 - rng.uniform(0.25, 0.55) * beyond(0.0) * (1 - beyond(rng.uniform(0.05, 0.2)))
    return photo * light[..., None].astype(np.float32)


def _lit(photo: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Coloured light across the picture, and, half the time, a soft shadow over a part of it."""
    height, width = photo.shape[:2]
    tint = rng.uniform(0.7, 1.0, 3).astype(np.float32)
    tint /= tint.max()
    lit = photo * tint * np.float32(rng.uniform(0.75, 1.1))
    if rng.random() < 0.5:
        y, x = np.mgrid[0:height, 0:width].astype(np.float32)
        angle = rng.uniform(0, 2 * np.pi)
        edge = (np.cos(angle) * (x - width / 2) + np.sin(angle) * (y - height / 2)) / max(height, width)
        shade = 1 - rng.uniform(0.2, 0.45) / (1 + np.exp(-(edge - rng.uniform(-0.3, 0.3)) * 25))
        lit = lit * shade[..., None]
    return lit
