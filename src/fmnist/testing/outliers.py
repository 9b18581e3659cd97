"""Pictures that are not garments, built from material shipped in Python packages: test material for the
out-of-distribution detector (ood.py, benchmarks/ood.py).

Nothing is downloaded: natural photos, textures, a printed page, faces and a silhouette come with
scikit-image (`skimage.data`, which ships them in its wheel; `lfw_subset` is 100 faces of Labeled
Faces in the Wild at 25x25), two photos and 1,797 handwritten digits with scikit-learn
(`load_sample_images`, `load_digits`); text, screenshots, drawings and product-like objects are
drawn with Pillow; noise and blank images with numpy. Every picture is drawn from a seeded
generator and saved as a user would upload it (JPEG or PNG bytes; the `mnist-form` kind, a digit in MNIST's
style, in any form of fmnist.testing.forms that a browser reads, as a Fashion-MNIST image may come; `digit8`,
scikit-learn's 8x8 digits enlarged as a program enlarges a small image).

Each kind's sources are split in two parts, "tune" and "holdout" (different source images where a
kind has several, different random draws otherwise), so that what was looked at while choosing the
detector's cues can be kept apart from what checks them.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from fmnist.testing import forms

KINDS = (
    "photo",
    "texture",
    "document",
    "screenshot",
    "drawing",
    "digit",
    "face",
    "noise",
    "object",
    "mnist",
    "glyph",
    "printed",
    "scrawl",
    "scrawl28",
    "word",
    "pencil",
    "sketch",
    "mnist-form",
    "digit8",
)
PARTS = ("tune", "holdout")

Picture = np.ndarray  # uint8 [H, W, 3]


@dataclass(frozen=True)
class Outlier:
    data: bytes  # the encoded file
    suffix: str  # ".jpg" or ".png"
    kind: str


def build(count_per_kind: int, part: str, seed: int = 0, kinds: tuple[str, ...] = KINDS) -> list[Outlier]:
    """`count_per_kind` pictures of each kind in `kinds`, from the sources of `part` ("tune" or "holdout").

    Raises ValueError for an unknown kind or part, or a count below 1. Needs scikit-image and
    scikit-learn (the `test` extra).
    """
    if part not in PARTS:
        raise ValueError(f"part must be one of {', '.join(PARTS)}, got {part!r}")
    if count_per_kind < 1:
        raise ValueError(f"count_per_kind must be >= 1, got {count_per_kind}")
    unknown = set(kinds) - set(KINDS)
    if unknown:
        raise ValueError(f"unknown kinds {sorted(unknown)}; choose from {', '.join(KINDS)}")
    rng = np.random.default_rng([seed, PARTS.index(part)])
    out = []
    for kind in kinds:
        make = _MAKERS[kind]
        for _ in range(count_per_kind):
            picture = make(rng, part)
            out.append(_encode(picture, kind, rng))
    return out


# ---- sources -------------------------------------------------------------------------------------------------


def _rgb(a: np.ndarray) -> Picture:
    if a.dtype == bool:
        a = np.where(a, 0, 255).astype(np.uint8)  # skimage's horse: True is the horse; draw it dark on white
    if a.dtype != np.uint8:
        a = np.clip(np.rint(a * 255 if a.max() <= 1 else a), 0, 255).astype(np.uint8)
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, axis=2)
    return np.ascontiguousarray(a[..., :3])


@cache
def _photos() -> tuple[Picture, ...]:
    import skimage.data as sk
    from sklearn.datasets import load_sample_images

    shipped = [
        sk.astronaut(),
        sk.chelsea(),
        sk.coffee(),
        sk.rocket(),
        sk.camera(),
        sk.hubble_deep_field(),
        sk.immunohistochemistry(),
        sk.coins(),
        sk.moon(),
        sk.clock(),
        sk.retina(),
        sk.cell(),
    ]
    return tuple(_rgb(a) for a in shipped + list(load_sample_images().images))


@cache
def _textures() -> tuple[Picture, ...]:
    import skimage.data as sk

    return tuple(_rgb(a) for a in (sk.brick(), sk.grass(), sk.gravel()))


@cache
def _pages() -> tuple[Picture, ...]:
    import skimage.data as sk

    return tuple(_rgb(a) for a in (sk.page(), sk.text()))


@cache
def _faces() -> np.ndarray:
    import skimage.data as sk

    return sk.lfw_subset()[:100]  # the first 100 are faces, the rest are not


@cache
def _digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    images = load_digits().images  # [1797, 8, 8], 0..16
    return images[0::2], images[1::2]


@cache
def _silhouettes() -> tuple[Picture, ...]:
    import skimage.data as sk

    logo = sk.logo()
    on_white = (logo[..., :3] * (logo[..., 3:] / 255) + 255 * (1 - logo[..., 3:] / 255)).astype(np.uint8)
    return (_rgb(sk.horse()), on_white)


def _pick(items: tuple | np.ndarray, part: str, rng: np.random.Generator):
    """An item of `part`'s half: even positions for tune, odd for holdout."""
    half = items[PARTS.index(part) :: 2]
    return half[int(rng.integers(len(half)))]


def _crop(picture: Picture, rng: np.random.Generator, least: float = 0.3) -> Picture:
    height, width = picture.shape[:2]
    h = int(height * rng.uniform(least, 1.0))
    w = int(width * rng.uniform(least, 1.0))
    top, left = int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1))
    return picture[top : top + h, left : left + w]


def _resized(picture: Picture, longer: int) -> Picture:
    height, width = picture.shape[:2]
    scale = longer / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return np.asarray(Image.fromarray(picture).resize(size, Image.Resampling.BICUBIC))


@cache
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size)


_WORDS = (
    "the quick brown fox jumps over a lazy dog while invoices totals shipping order number date page "
    "settings account login password search results report summary chapter table figure"
).split()


def _sentence(rng: np.random.Generator, words: int) -> str:
    return " ".join(str(rng.choice(_WORDS)) for _ in range(words))


# ---- kinds ---------------------------------------------------------------------------------------------------


def _photo(rng: np.random.Generator, part: str) -> Picture:
    """A crop of a natural photo (a person, a cat, a cup, a rocket, coins, the moon, a street...)."""
    return _resized(_crop(_pick(_photos(), part, rng), rng), int(rng.integers(200, 700)))


def _texture(rng: np.random.Generator, part: str) -> Picture:
    """A crop of brick, grass or gravel; or, for the rest, a procedural wood or marble-like pattern."""
    if rng.random() < 0.6:
        return _resized(_crop(_pick(_textures(), part, rng), rng, 0.2), int(rng.integers(200, 600)))
    side = int(rng.integers(200, 500))
    y, x = np.mgrid[0:side, 0:side] / side
    freq = rng.uniform(5, 40)
    wobble = rng.standard_normal((8, 8))
    wobble = np.asarray(Image.fromarray(wobble.astype(np.float32), "F").resize((side, side), Image.Resampling.BICUBIC))
    value = 128 + 80 * np.sin(2 * np.pi * freq * (x * np.cos(rng.uniform(0, np.pi)) + y) + 3 * wobble)
    tint = rng.uniform(0.6, 1.0, 3)
    return np.clip(value[..., None] * tint, 0, 255).astype(np.uint8)


def _document(rng: np.random.Generator, part: str) -> Picture:
    """A scanned page (skimage's page and text) or a rendered page of text lines."""
    if rng.random() < 0.4:
        return _resized(_crop(_pick(_pages(), part, rng), rng, 0.5), int(rng.integers(200, 600)))
    width, height = int(rng.integers(300, 700)), int(rng.integers(300, 800))
    page = Image.new("RGB", (width, height), tuple(int(v) for v in rng.uniform(225, 255, 3)))
    draw = ImageDraw.Draw(page)
    size = int(rng.integers(10, 24))
    y = int(rng.integers(5, 40))
    while y < height - size:
        draw.text(
            (int(rng.integers(5, 40)), y),
            _sentence(rng, int(rng.integers(4, 14))),
            fill=tuple(int(v) for v in rng.uniform(0, 60, 3)),
            font=_font(size),
        )
        y += int(size * rng.uniform(1.2, 2.0))
    return np.asarray(page)


def _screenshot(rng: np.random.Generator, part: str) -> Picture:
    """A rendered app screen: a coloured title bar, a sidebar, buttons and lines of text."""
    width, height = int(rng.integers(400, 900)), int(rng.integers(300, 700))
    theme = rng.uniform(0, 60) if rng.random() < 0.3 else rng.uniform(225, 255)
    ink = 230 if theme < 128 else 30
    shot = Image.new("RGB", (width, height), (int(theme),) * 3)
    draw = ImageDraw.Draw(shot)
    bar = int(rng.integers(30, 60))
    draw.rectangle((0, 0, width, bar), fill=tuple(int(v) for v in rng.uniform(0, 255, 3)))
    draw.text((10, bar // 4), _sentence(rng, 3), fill=(255, 255, 255), font=_font(bar // 2))
    side = int(rng.integers(0, width // 4))
    if side:
        draw.rectangle((0, bar, side, height), fill=(int(theme * 0.9),) * 3)
    y = bar + 10
    size = int(rng.integers(11, 18))
    while y < height - 2 * size:
        if rng.random() < 0.2:
            left = side + int(rng.integers(10, 60))
            draw.rounded_rectangle(
                (left, y, left + int(rng.integers(60, 160)), y + 2 * size),
                radius=6,
                fill=tuple(int(v) for v in rng.uniform(0, 255, 3)),
            )
            y += 3 * size
        else:
            draw.text((side + 10, y), _sentence(rng, int(rng.integers(3, 10))), fill=(ink,) * 3, font=_font(size))
            y += int(1.6 * size)
    return np.asarray(shot)


def _drawing(rng: np.random.Generator, part: str) -> Picture:
    """Shapes drawn on paper: circles, polygons, lines and stars, outlined or filled, one to eight of them."""
    side = int(rng.integers(200, 600))
    canvas = Image.new("RGB", (side, side), tuple(int(v) for v in rng.uniform(220, 255, 3)))
    draw = ImageDraw.Draw(canvas)
    for _ in range(int(rng.integers(1, 9))):
        colour = tuple(int(v) for v in rng.uniform(0, 200, 3))
        x0, y0 = rng.uniform(0, side * 0.8, 2)
        w, h = rng.uniform(side * 0.1, side * 0.5, 2)
        box = (float(x0), float(y0), float(min(x0 + w, side - 1)), float(min(y0 + h, side - 1)))
        fill = colour if rng.random() < 0.5 else None
        width = int(rng.integers(2, 8))
        shape = int(rng.integers(4))
        if shape == 0:
            draw.ellipse(box, fill=fill, outline=colour, width=width)
        elif shape == 1:
            corners = int(rng.integers(3, 8))
            draw.regular_polygon(
                ((box[0] + box[2]) / 2, (box[1] + box[3]) / 2, w / 2),
                corners,
                rotation=float(rng.uniform(0, 360)),
                fill=fill,
                outline=colour,
            )
        elif shape == 2:
            points = [tuple(float(v) for v in rng.uniform(0, side, 2)) for _ in range(int(rng.integers(2, 6)))]
            draw.line(points, fill=colour, width=width)
        else:
            draw.rectangle(box, fill=fill, outline=colour, width=width)
    return np.asarray(canvas)


def _digit(rng: np.random.Generator, part: str) -> Picture:
    """A handwritten digit (scikit-learn's 8x8 digits, upsampled) in ink on paper, sometimes a few in a row."""
    pool = _digits()[PARTS.index(part)]
    count = 1 if rng.random() < 0.6 else int(rng.integers(2, 5))
    strokes = np.concatenate([pool[int(rng.integers(len(pool)))] for _ in range(count)], axis=1) / 16
    cell = int(rng.integers(20, 60))
    ink = np.asarray(
        Image.fromarray(strokes.astype(np.float32), "F").resize(
            (strokes.shape[1] * cell, 8 * cell), Image.Resampling.BICUBIC
        )
    ).clip(0, 1)
    margin = int(cell * rng.uniform(1, 4))
    ink = np.pad(ink, margin)
    paper = rng.uniform(200, 255) + rng.uniform(-10, 10, 3)
    colour = rng.uniform(0, 80, 3)
    picture = paper * (1 - ink[..., None]) + colour * ink[..., None]
    picture += rng.standard_normal(picture.shape) * rng.uniform(0, 6)
    return np.clip(picture, 0, 255).astype(np.uint8)


def _pencil(rng: np.random.Generator, part: str) -> Picture:
    """A handwritten digit (scikit-learn's 8x8 digits, upsampled) in soft grey pencil on a tinted page: strokes
    blurred by a Gaussian of a tenth to four tenths of a cell, grey ink, a pale sheet of any colour, sensor noise."""
    from scipy import ndimage

    pool = _digits()[PARTS.index(part)]
    strokes = pool[int(rng.integers(len(pool)))] / 16
    cell = int(rng.integers(16, 48))
    ink = np.asarray(
        Image.fromarray(strokes.astype(np.float32), "F").resize((8 * cell, 8 * cell), Image.Resampling.BICUBIC)
    )
    ink = np.pad(ndimage.gaussian_filter(ink, cell * rng.uniform(0.1, 0.4)).clip(0, 1), int(cell * rng.uniform(1, 3)))
    paper = rng.uniform(170, 250, 3)
    colour = rng.uniform(60, 170) + rng.uniform(-15, 15, 3)
    picture = paper * (1 - ink[..., None]) + colour * ink[..., None]
    picture += rng.standard_normal(picture.shape) * rng.uniform(3, 12)
    return np.clip(picture, 0, 255).astype(np.uint8)


def _face(rng: np.random.Generator, part: str) -> Picture:
    """A face (Labeled Faces in the Wild, 25x25, grayscale), upsampled, sometimes mirrored, or the astronaut's."""
    faces = _faces()
    face = _rgb(_pick(faces, part, rng))
    if rng.random() < 0.5:
        face = face[:, ::-1]
    return _resized(np.ascontiguousarray(face), int(rng.integers(150, 500)))


def _noise(rng: np.random.Generator, part: str) -> Picture:
    """Gaussian or uniform noise, a blank or nearly blank image, or a smooth gradient."""
    height, width = (int(v) for v in rng.integers(100, 600, 2))
    choice = int(rng.integers(4))
    if choice == 0:
        picture = rng.normal(rng.uniform(60, 200), rng.uniform(10, 80), (height, width, 3))
    elif choice == 1:
        picture = rng.uniform(0, 255, (height, width, 1)) * np.ones(3)
    elif choice == 2:
        picture = np.ones((height, width, 3)) * rng.uniform(0, 255, 3) + rng.normal(0, 2, (height, width, 3))
    else:
        y, x = np.mgrid[0:height, 0:width]
        ramp = (x * rng.uniform(-1, 1) + y * rng.uniform(-1, 1)) / max(height, width)
        picture = 128 + 120 * ramp[..., None] * rng.uniform(0.5, 1, 3)
    return np.clip(picture, 0, 255).astype(np.uint8)


def _object(rng: np.random.Generator, part: str) -> Picture:
    """A product photo of something else: a textured ball, can, box or phone on a white backdrop, or a
    silhouette (a horse, a logo)."""
    if rng.random() < 0.25:
        return _resized(_pick(_silhouettes(), part, rng), int(rng.integers(200, 600)))
    side = int(rng.integers(250, 700))
    backdrop = rng.uniform(215, 255)
    canvas = np.full((side, side, 3), backdrop, dtype=np.float32)
    w, h = (int(v) for v in side * rng.uniform(0.25, 0.7, 2))
    top, left = int(rng.integers(0, side - h)), int(rng.integers(0, side - w))
    mask = Image.new("L", (side, side), 0)
    draw = ImageDraw.Draw(mask)
    shape = int(rng.integers(3))
    box = (left, top, left + w, top + h)
    if shape == 0:
        draw.ellipse(box, fill=255)
    elif shape == 1:
        draw.rounded_rectangle(box, radius=int(min(w, h) * rng.uniform(0.05, 0.3)), fill=255)
    else:
        draw.rectangle(box, fill=255)
        draw.ellipse((left, top - h // 10, left + w, top + h // 10), fill=255)
    alpha = np.asarray(mask, dtype=np.float32)[..., None] / 255
    surface = _resized(_crop(_pick(_photos(), part, rng), rng, 0.2), side).astype(np.float32)
    surface = np.asarray(Image.fromarray(surface.astype(np.uint8)).resize((side, side)), dtype=np.float32)
    picture = canvas * (1 - alpha) + surface * alpha
    return np.clip(picture + rng.normal(0, 2, picture.shape), 0, 255).astype(np.uint8)


def mnist_style(strokes: np.ndarray) -> np.ndarray:
    """uint8 [28, 28] in MNIST's style from ink coverage `strokes` [h, w] (0..1): the strokes' box resized so
    its longer side is 20 pixels, light on black, then centred by its centre of mass (LeCun et al., 1998)."""
    rows, cols = np.flatnonzero(strokes.max(1) > 0.05), np.flatnonzero(strokes.max(0) > 0.05)
    box = strokes[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1] if rows.size else strokes
    scale = 20 / max(box.shape)
    size = (max(1, round(box.shape[1] * scale)), max(1, round(box.shape[0] * scale)))
    small = np.asarray(Image.fromarray(box.astype(np.float32), "F").resize(size, Image.Resampling.BICUBIC))
    canvas = np.zeros((28, 28), dtype=np.float32)
    top, left = (28 - size[1]) // 2, (28 - size[0]) // 2
    canvas[top : top + size[1], left : left + size[0]] = small.clip(0, 1)
    total = canvas.sum()
    if total > 0:
        cy, cx = (np.indices(canvas.shape) * canvas).reshape(2, -1).sum(1) / total
        canvas = np.roll(canvas, (round(13.5 - cy), round(13.5 - cx)), axis=(0, 1))
    return np.clip(np.rint(canvas * 255), 0, 255).astype(np.uint8)


@cache
def _font_files() -> tuple[str, ...]:
    """TrueType fonts that ship with matplotlib (DejaVu, always) and Debian's fonts-dejavu/-liberation."""
    import glob
    import os

    import matplotlib

    shipped = glob.glob(os.path.join(os.path.dirname(matplotlib.__file__), "mpl-data", "fonts", "ttf", "*.ttf"))
    system = glob.glob("/usr/share/fonts/truetype/*/*.ttf")
    # Text faces only: matplotlib's Computer Modern and STIX files are symbol sets with no letters in them.
    families = ("DejaVuSans", "DejaVuSerif", "Liberation")
    return tuple(sorted(f for f in shipped + system if os.path.basename(f).startswith(families) and "Display" not in f))


def _glyph_strokes(rng: np.random.Generator, part: str) -> np.ndarray:
    """Ink coverage 0..1 of one printed digit or letter in a font of `part`'s half, slightly slanted."""
    fonts = _font_files()
    font = ImageFont.truetype(_pick(fonts, part, rng), 96)
    char = str(rng.choice(list("0123456789ABCDEFGHJKLMNPRSTUVWXYZabdefghkmnpqrstuwxyz")))
    canvas = Image.new("L", (160, 160), 0)
    ImageDraw.Draw(canvas).text((30, 10), char, fill=255, font=font)
    canvas = canvas.rotate(float(rng.uniform(-12, 12)), Image.Resampling.BICUBIC)
    return np.asarray(canvas, dtype=np.float32) / 255


def _paper(rng: np.random.Generator) -> np.ndarray:
    """A sheet's colour [3], 0..255: white or grey most often, else any pale or saturated colour (sticky notes,
    kraft paper, a coloured card)."""
    if rng.random() < 0.5:
        return rng.uniform(190, 255) + rng.uniform(-10, 10, 3)
    return rng.uniform(120, 255, 3)


def _on_paper(ink: np.ndarray, rng: np.random.Generator) -> Picture:
    """Ink coverage [H, W] (0..1) as a photo of paper: dark or coloured ink on a sheet of `_paper`, uneven light
    and sensor noise."""
    paper = _paper(rng)
    colour = rng.uniform(0, 90, 3) if rng.random() < 0.7 else rng.uniform(0, 160, 3) * rng.uniform(0, 1, 3)
    height, width = ink.shape
    y, x = np.mgrid[0:height, 0:width] / max(height, width)
    light = 1 + rng.uniform(-0.12, 0.12) * (x - 0.5) + rng.uniform(-0.12, 0.12) * (y - 0.5)
    picture = (paper * (1 - ink[..., None]) + colour * ink[..., None]) * light[..., None]
    return np.clip(picture + rng.standard_normal(picture.shape) * rng.uniform(1, 6), 0, 255).astype(np.uint8)


# Handwriting as pen strokes: each character a few polylines in a unit box (x right, y down), traced in
# `scrawl_strokes` with a jittered pen of random width, slant and size. Digits are split between the
# parts, letters too: the two parts never share a character.
_STROKES: dict[str, tuple[tuple[tuple[float, float], ...], ...]] = {
    "0": (((0.5, 0), (0.15, 0.2), (0.1, 0.6), (0.35, 1), (0.7, 0.9), (0.9, 0.45), (0.75, 0.08), (0.5, 0)),),
    "1": (((0.3, 0.2), (0.55, 0), (0.55, 1)),),
    "2": (((0.15, 0.2), (0.45, 0), (0.8, 0.15), (0.75, 0.45), (0.1, 1), (0.9, 1)),),
    "3": (((0.15, 0.1), (0.6, 0), (0.8, 0.2), (0.45, 0.48), (0.85, 0.7), (0.6, 1), (0.1, 0.9)),),
    "4": (((0.65, 1), (0.65, 0), (0.1, 0.7), (0.9, 0.7)),),
    "5": (((0.85, 0), (0.25, 0), (0.2, 0.45), (0.7, 0.4), (0.85, 0.7), (0.6, 1), (0.15, 0.9)),),
    "6": (((0.75, 0.05), (0.35, 0.2), (0.15, 0.7), (0.4, 1), (0.8, 0.8), (0.7, 0.5), (0.2, 0.6)),),
    "7": (((0.1, 0), (0.9, 0), (0.4, 1)), ((0.3, 0.5), (0.75, 0.5))),
    "8": (
        (
            (0.5, 0.48),
            (0.2, 0.25),
            (0.5, 0),
            (0.8, 0.25),
            (0.5, 0.48),
            (0.15, 0.75),
            (0.5, 1),
            (0.85, 0.75),
            (0.5, 0.48),
        ),
    ),
    "9": (((0.8, 0.4), (0.5, 0.5), (0.2, 0.3), (0.5, 0), (0.8, 0.2), (0.75, 1)),),
    "A": (((0.05, 1), (0.5, 0), (0.95, 1)), ((0.25, 0.6), (0.75, 0.6))),
    "E": (((0.85, 0), (0.15, 0), (0.15, 1), (0.85, 1)), ((0.15, 0.5), (0.7, 0.5))),
    "K": (((0.15, 0), (0.15, 1)), ((0.85, 0), (0.15, 0.55), (0.85, 1))),
    "M": (((0.05, 1), (0.15, 0), (0.5, 0.6), (0.85, 0), (0.95, 1)),),
    "R": (((0.15, 1), (0.15, 0), (0.7, 0.05), (0.75, 0.4), (0.15, 0.5), (0.85, 1)),),
    "S": (((0.85, 0.1), (0.5, 0), (0.15, 0.2), (0.5, 0.5), (0.85, 0.75), (0.5, 1), (0.1, 0.9)),),
    "W": (((0.0, 0), (0.25, 1), (0.5, 0.4), (0.75, 1), (1.0, 0)),),
    "Z": (((0.1, 0), (0.9, 0), (0.1, 1), (0.9, 1)),),
}
_SCRAWL_PARTS = ("02468AERW", "13579KMSZ")


def scrawl_strokes(rng: np.random.Generator, part: str) -> np.ndarray:
    """Ink coverage 0..1 [160, 160] of one hand-drawn character of `part`'s half, traced with Pillow."""
    char = str(rng.choice(list(_SCRAWL_PARTS[PARTS.index(part)])))
    canvas = Image.new("L", (160, 160), 0)
    draw = ImageDraw.Draw(canvas)
    height = rng.uniform(90, 130)
    width = height * rng.uniform(0.5, 0.85)
    slant = rng.uniform(-0.3, 0.3)
    pen = int(rng.integers(3, 13))
    for line in _STROKES[char]:
        points = np.array(line) + rng.normal(0, 0.04, (len(line), 2))
        xs = 80 + (points[:, 0] - 0.5) * width + slant * (0.5 - points[:, 1]) * height
        ys = 80 + (points[:, 1] - 0.5) * height
        draw.line(list(zip(xs.tolist(), ys.tolist(), strict=True)), fill=255, width=pen, joint="curve")
    return np.asarray(canvas, dtype=np.float32) / 255


def _scrawl(rng: np.random.Generator, part: str) -> Picture:
    """A hand-drawn digit or letter, or a few in a row, photographed on paper of any colour."""
    count = 1 if rng.random() < 0.6 else int(rng.integers(2, 4))
    ink = _handwriting(rng, part, count)
    scale = rng.uniform(1.2, 3.5)
    return _on_paper(np.pad(_enlarged(ink, scale), int(rng.integers(0, 60) * scale)), rng)


def _handwriting(rng: np.random.Generator, part: str, count: int) -> np.ndarray:
    """Ink coverage 0..1 [160, 120 * count] of `count` hand-drawn characters of `part`'s half in a row."""
    return np.concatenate([scrawl_strokes(rng, part)[:, 20:140] for _ in range(count)], axis=1)


def _enlarged(ink: np.ndarray, scale: float) -> np.ndarray:
    """Ink coverage [H, W] resized by `scale` (bicubic), still 0..1."""
    size = (round(ink.shape[1] * scale), round(ink.shape[0] * scale))
    return np.asarray(Image.fromarray(ink, "F").resize(size, Image.Resampling.BICUBIC)).clip(0, 1)


def _scrawl28(rng: np.random.Generator, part: str) -> Picture:
    """A hand-drawn digit or letter in MNIST's style, 28x28 light on black."""
    return _rgb(mnist_style(scrawl_strokes(rng, part)))


def _word(rng: np.random.Generator, part: str) -> Picture:
    """A printed word or two, large, in a font of `part`'s half, photographed on paper of any colour."""
    font = ImageFont.truetype(_pick(_font_files(), part, rng), int(rng.integers(40, 120)))
    text = _sentence(rng, int(rng.integers(1, 3)))
    margin = int(rng.integers(10, 80))
    return _on_paper(_text_ink(font, text, margin, float(rng.uniform(-8, 8))), rng)


def _text_ink(font: ImageFont.FreeTypeFont, text: str, margin: int, angle: float) -> np.ndarray:
    """Ink coverage 0..1 of `text` printed in `font` with `margin` pixels all round, turned by `angle` degrees
    (the canvas grown to hold it)."""
    left, top, right, bottom = (round(v) for v in font.getbbox(text))
    canvas = Image.new("L", (right - left + 2 * margin, bottom - top + 2 * margin), 0)
    ImageDraw.Draw(canvas).text((margin - left, margin - top), text, fill=255, font=font)
    canvas = canvas.rotate(angle, Image.Resampling.BICUBIC, expand=True)
    return np.asarray(canvas, dtype=np.float32) / 255


def handwritten_strokes(rng: np.random.Generator, part: str) -> np.ndarray:
    """A handwritten digit of `part`'s half (scikit-learn's 8x8 digits), ink coverage 0..1 [8, 8]."""
    pool = _digits()[PARTS.index(part)]
    return pool[int(rng.integers(len(pool)))] / 16


def _mnist(rng: np.random.Generator, part: str) -> Picture:
    """A digit in MNIST's own style, 28x28 light on black: handwritten (scikit-learn's 8x8 digits) or printed."""
    strokes = handwritten_strokes(rng, part) if rng.random() < 0.6 else _glyph_strokes(rng, part)
    return _rgb(mnist_style(strokes))


def _glyph(rng: np.random.Generator, part: str) -> Picture:
    """A printed letter or digit, alone, as a photo of paper: ink on a light page with noise."""
    ink = _glyph_strokes(rng, part)
    cell = rng.uniform(1.5, 4)
    ink = np.asarray(Image.fromarray(ink, "F").resize((round(160 * cell),) * 2, Image.Resampling.BICUBIC)).clip(0, 1)
    return _on_paper(ink, rng)


def _sketch(rng: np.random.Generator, part: str) -> Picture:
    """One to three characters of `part`'s half, hand-drawn (in pencil grey or in pen) or printed, photographed on a
    grainy sheet under uneven light: the paper's grain (noise blurred over a pixel or two: fibres, not a sensor's)
    and a vignette put much of the border off any smooth surface, so that the framing reads about half of these
    pages as a textured surface."""
    from scipy import ndimage

    count = int(rng.integers(1, 4))
    if rng.random() < 0.5:
        ink = _handwriting(rng, part, count)
    else:
        font = ImageFont.truetype(_pick(_font_files(), part, rng), int(rng.integers(60, 140)))
        text = "".join(str(c) for c in rng.choice(list(_SCRAWL_PARTS[PARTS.index(part)]), count))
        ink = _text_ink(font, text, 10, float(rng.uniform(-8, 8)))
    ink = np.pad(_enlarged(ink, rng.uniform(1.0, 3.0)), int(rng.integers(20, 120)))
    height, width = ink.shape
    paper = _paper(rng)
    colour = rng.uniform(70, 150) + rng.uniform(-10, 10, 3) if rng.random() < 0.5 else rng.uniform(0, 80, 3)
    y, x = np.mgrid[0:height, 0:width] / max(height, width)
    cy, cx = rng.uniform(0.2, 0.8, 2) * (height / max(height, width), width / max(height, width))
    light = 1 - rng.uniform(0.05, 0.25) * ((y - cy) ** 2 + (x - cx) ** 2) + rng.uniform(-0.1, 0.1) * (x - 0.5)
    grain = ndimage.gaussian_filter(rng.standard_normal((height, width)), rng.uniform(0.7, 2.0))
    grain *= rng.uniform(3, 8) / max(float(grain.std()), 1e-6)
    picture = (paper * (1 - ink[..., None]) + colour * ink[..., None]) * light[..., None] + grain[..., None]
    picture += rng.standard_normal(picture.shape) * rng.uniform(0.5, 2)
    return np.clip(picture, 0, 255).astype(np.uint8)


def _printed(rng: np.random.Generator, part: str) -> Picture:
    """A printed or handwritten digit at 28x28 or a few times larger, dark on a white page as a drawing program
    saves it: no noise, the picture a digital file (PNG)."""
    strokes = handwritten_strokes(rng, part) if rng.random() < 0.5 else _glyph_strokes(rng, part)
    picture = 255 - mnist_style(strokes)
    scale = int(rng.integers(1, 6))
    big = Image.fromarray(picture).resize((28 * scale, 28 * scale), Image.Resampling.BICUBIC)
    return _rgb(np.asarray(big))


_ENLARGING = (
    Image.Resampling.NEAREST,
    Image.Resampling.BILINEAR,
    Image.Resampling.BICUBIC,
    Image.Resampling.LANCZOS,
)


def _digit8(rng: np.random.Generator, part: str) -> Picture:
    """A handwritten digit of scikit-learn's 8x8 set enlarged as a program enlarges a small image: to 28x28 (one
    time in four, 56 or 112 pixels) by nearest, bilinear, bicubic or Lanczos resampling, light on black as the
    dataset's images, or inverted one time in three; saved as a grayscale PNG by `_encode`."""
    pool = _digits()[PARTS.index(part)]
    digit = Image.fromarray(np.rint(pool[int(rng.integers(len(pool)))] * 255 / 16).astype(np.uint8))
    side = 28 if rng.random() < 0.75 else int(rng.choice([56, 112]))
    picture = np.asarray(digit.resize((side, side), _ENLARGING[int(rng.integers(len(_ENLARGING)))]))
    return _rgb(255 - picture if rng.random() < 1 / 3 else picture)


_MAKERS: dict[str, Callable[[np.random.Generator, str], Picture]] = {
    "photo": _photo,
    "texture": _texture,
    "document": _document,
    "screenshot": _screenshot,
    "drawing": _drawing,
    "digit": _digit,
    "face": _face,
    "noise": _noise,
    "object": _object,
    "mnist": _mnist,
    "glyph": _glyph,
    "printed": _printed,
    "scrawl": _scrawl,
    "scrawl28": _scrawl28,
    "word": _word,
    "pencil": _pencil,
    "sketch": _sketch,
    "mnist-form": _mnist,  # saved by _encode in one of fmnist.testing.forms' forms
    "digit8": _digit8,
}


@cache
def _browser_forms() -> tuple[forms.Form, ...]:
    """The forms of fmnist.testing.forms that the page reads too: every one but TIFF, which no browser decodes."""
    return tuple(form for form in forms.all_forms() if form.fmt != "TIFF")


def _encode(picture: Picture, kind: str, rng: np.random.Generator) -> Outlier:
    if kind == "mnist-form":  # as a user saves a dataset image: enlarged, inverted, with margins, on a figure...
        choices = _browser_forms()
        form = choices[int(rng.integers(len(choices)))]
        return Outlier(forms.save(picture[..., 0], form), forms.SUFFIX[form.fmt], kind)
    buffer = io.BytesIO()
    image = Image.fromarray(picture, "RGB")
    if kind in ("mnist", "scrawl28", "digit8", "printed"):  # digital: grayscale as the dataset, a drawing's PNG
        image = image.convert("L") if kind != "printed" else image
        image.save(buffer, format="PNG")
        return Outlier(buffer.getvalue(), ".png", kind)
    if kind in ("screenshot", "drawing") or rng.random() < 0.2:
        image.save(buffer, format="PNG", compress_level=1)
        return Outlier(buffer.getvalue(), ".png", kind)
    image.save(buffer, format="JPEG", quality=int(rng.integers(70, 95)))
    return Outlier(buffer.getvalue(), ".jpg", kind)
