"""Turn a user's picture into a 28x28 image that looks like Fashion-MNIST, for `fmnist predict`.

Fashion-MNIST shows a light object on a black background, with the longer side of the
object filling the frame. Product photos are the opposite (a dark object on white), so
we composite transparency onto white, convert to grayscale, invert when the border is
light, scale the longer side to 28 pixels and pad the shorter one with the background level.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from fmnist.atomic import atomic_path
from fmnist.data import SIDE
from fmnist.errors import FmnistError

# A small compressed file can decode to gigabytes (a "decompression bomb"); 50 M pixels is
# far more than any photo needs and about 200 MB once decoded as 32-bit float.
MAX_PIXELS = 50_000_000

_ALPHA_MODES = ("LA", "PA", "RGBA")


def load_image(source: str | Path | bytes, name: str = "upload") -> torch.Tensor:
    """Read any image Pillow can open (a file, or its bytes) as a uint8 [28, 28] Fashion-MNIST-like tensor.

    Raises FmnistError, naming the file (or `name` for bytes), when it is missing, a directory,
    empty, not an image, truncated or corrupt, or larger than MAX_PIXELS.
    """
    if isinstance(source, bytes):
        image = _decode(source, name)
    else:
        name = str(source)
        image = _decode(Path(source), name)
    try:
        gray = _grayscale(image)
    except ValueError as exc:  # modes Pillow cannot convert, such as LAB
        raise FmnistError(f"{name}: cannot convert a {image.mode} image to grayscale") from exc
    background = float(np.median(_border(gray)))
    if background > 127.5:
        gray, background = 255 - gray, 255 - background
    framed = _fit(gray, background)
    # LANCZOS overshoots a little at sharp edges, hence the clip.
    return torch.from_numpy(np.clip(np.rint(framed), 0, 255).astype(np.uint8))


def export_png(image: torch.Tensor, path: str | Path) -> None:
    """Write a uint8 [H, W] tensor (e.g. a 28x28 Fashion-MNIST image) as a grayscale PNG, atomically."""
    if image.dtype != torch.uint8 or image.dim() != 2:
        raise ValueError(f"expected a 2-D uint8 tensor, got {image.dtype} of shape {tuple(image.shape)}")
    with atomic_path(path) as tmp:
        Image.fromarray(image.cpu().numpy()).save(tmp, format="PNG")


def _decode(source: Path | bytes, name: str) -> Image.Image:
    """Open and fully decode `source`, upright per its EXIF tag, turning each failure into an FmnistError."""
    if isinstance(source, bytes):
        if not source:
            raise FmnistError(f"{name}: empty, not an image")
        opened = io.BytesIO(source)
    elif not source.exists():
        raise FmnistError(f"{name}: no such file")
    elif source.is_dir():
        raise FmnistError(f"{name}: is a directory, not an image")
    try:
        with warnings.catch_warnings():
            # Pillow warns about large images at open; MAX_PIXELS below is our own, stricter limit.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(opened if isinstance(source, bytes) else source) as image:
                _check_size(name, image)
                image.load()  # decode now, so that a truncated file fails here and not later
                return ImageOps.exif_transpose(image)
    except Image.DecompressionBombError as exc:
        raise FmnistError(f"{name}: image is larger than the {MAX_PIXELS:,} pixels allowed") from exc
    except UnidentifiedImageError as exc:
        raise FmnistError(f"{name}: not an image file that Pillow can read") from exc
    # Pillow's decoders report damaged data with any of these, depending on the format.
    except (OSError, ValueError, EOFError, SyntaxError) as exc:
        raise FmnistError(f"{name}: image is truncated or corrupt ({_one_line(exc)})") from exc


def _check_size(name: str, image: Image.Image) -> None:
    # The size comes from the header, so this runs before any pixel is decoded.
    width, height = image.size
    if width * height > MAX_PIXELS:
        raise FmnistError(
            f"{name}: image is {width}x{height} = {width * height:,} pixels, "
            f"more than the {MAX_PIXELS:,} allowed"
        )


def _grayscale(image: Image.Image) -> np.ndarray:
    """Luminance as float32 in 0..255, keeping the precision of 16-bit images."""
    if image.mode.startswith("I"):
        values = np.asarray(image, dtype=np.float32).clip(min=0)
        # "I" is 32-bit but usually holds 16-bit data (older Pillow opens 16-bit PNGs as "I").
        full_scale = 65535.0 if image.mode.startswith("I;16") else max(65535.0, float(values.max()))
        return values * (255 / full_scale)
    if image.mode in _ALPHA_MODES or "transparency" in image.info:
        # Transparent pixels often hold black; white is the background of product photos.
        white = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(white, image.convert("RGBA"))
    return np.asarray(image.convert("L"), dtype=np.float32)


def _border(gray: np.ndarray) -> np.ndarray:
    return np.concatenate([gray[0], gray[-1], gray[1:-1, 0], gray[1:-1, -1]])


def _fit(gray: np.ndarray, background: float) -> np.ndarray:
    """Scale so that the longer side spans SIDE pixels, keeping the aspect ratio; pad to SIDE x SIDE."""
    height, width = gray.shape
    scale = SIDE / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    # Resizing before padding keeps memory bounded for very elongated images.
    small = np.asarray(Image.fromarray(gray).resize(size, Image.Resampling.LANCZOS))
    framed = np.full((SIDE, SIDE), background, dtype=np.float32)
    top, left = (SIDE - small.shape[0]) // 2, (SIDE - small.shape[1]) // 2
    framed[top : top + small.shape[0], left : left + small.shape[1]] = small
    return framed


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__
