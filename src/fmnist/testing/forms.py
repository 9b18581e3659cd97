"""A Fashion-MNIST image saved in the forms people save images in: test material for `images.load_picture`.

Each form is one container of the same 28x28 image: an image mode (L, LA, RGB, RGBA, P, I;16, F),
a size (28x28, or upscaled by an integer or a non-integer factor, nearest or smooth), a polarity (light
garment on black, as in the dataset, or dark on white, as on a product page), a file format (PNG,
JPEG, WebP, BMP, TIFF), optional margins, in the background's colour or in another one (the image
pasted on a page, or padded with white), and optionally a colour map (matplotlib's default, viridis, as
`plt.imsave(path, image)` draws an image whose levels span 0-255). Nothing in a form changes what the picture
shows, so each form must give the class and the verdict the dataset's own bytes give.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image

MODES = ("L", "LA", "RGB", "RGBA", "P", "I;16", "F")
FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "TIFF")
# Which modes each format stores (Pillow's writers); a form pairs a mode with a format that keeps it.
_STORES = {
    "PNG": ("L", "LA", "RGB", "RGBA", "P", "I;16"),
    "JPEG": ("L", "RGB"),
    "WEBP": ("RGB", "RGBA"),
    "BMP": ("L", "RGB", "P"),
    "TIFF": ("L", "LA", "RGB", "RGBA", "P", "I;16", "F"),
}
SUFFIX = {"PNG": ".png", "JPEG": ".jpg", "WEBP": ".webp", "BMP": ".bmp", "TIFF": ".tif"}


@dataclass(frozen=True)
class Form:
    mode: str
    fmt: str
    scale: float = 1.0  # the saved side is round(28 * scale)
    smooth: bool = False  # upscaled with bicubic interpolation (else nearest, as "save at 4x" does)
    inverted: bool = False  # dark garment on white
    margin: float = 0.0  # added on every side, as a fraction of 28 pixels
    canvas: int | None = None  # the margins' level (0-255) when not the background's: a page the image is set on
    colour_map: str | None = None  # a matplotlib colour map the levels are drawn in (viridis: dark violet to yellow)

    @property
    def name(self) -> str:
        size = f"{round(28 * self.scale)}px{'-smooth' if self.smooth else ''}"
        extras = ("-inverted" if self.inverted else "") + (f"-margin{self.margin:g}" if self.margin else "")
        extras += f"-canvas{self.canvas}" if self.canvas is not None else ""
        extras += f"-{self.colour_map}" if self.colour_map else ""
        return f"{self.mode}-{self.fmt.lower()}-{size}{extras}"


def all_forms() -> list[Form]:
    """Every mode in every format that stores it at 28x28, and the common variations on PNG, JPEG and WebP."""
    forms = [Form(mode, fmt) for fmt, modes in _STORES.items() for mode in modes]
    forms += [
        Form("L", "PNG", 4.0),
        Form("RGB", "PNG", 4.0, smooth=True),
        Form("RGB", "JPEG", 4.0),
        Form("RGB", "JPEG", 10.0, smooth=True),
        Form("RGBA", "PNG", 3.3, smooth=True),
        Form("L", "PNG", inverted=True),
        Form("RGB", "PNG", inverted=True),
        Form("RGB", "JPEG", 8.0, smooth=True, inverted=True),
        Form("RGBA", "WEBP", 4.0, inverted=True),
        Form("L", "PNG", margin=0.5),
        Form("RGB", "JPEG", 6.0, smooth=True, margin=0.25),
        Form("RGB", "PNG", 2.0, inverted=True, margin=1.0),
        Form("L", "PNG", margin=0.5, canvas=255),
        Form("RGBA", "PNG", 3.0, inverted=True, margin=0.25, canvas=0),
        Form("RGB", "JPEG", 4.0, smooth=True, margin=0.5, canvas=255),
        Form("RGB", "PNG", 2.0, margin=0.75, canvas=128),
        Form("L", "PNG", 3.0, margin=4.0, canvas=250),  # 756 pixels: a page, looked at reduced first
        Form("RGBA", "PNG", colour_map="viridis"),  # plt.imsave(path, image) of levels 0-255
        Form("RGB", "JPEG", 4.0, smooth=True, colour_map="viridis"),
        Form("RGB", "PNG", 3.0, margin=0.25, canvas=255, colour_map="viridis"),  # a figure saved without its axes
    ]
    return forms


def save(image: np.ndarray, form: Form) -> bytes:
    """The uint8 [28, 28] image saved in `form`: the file's bytes. A colour map draws the levels after scaling,
    but before a canvas of another colour is set round them (a figure's white page)."""
    pixels = 255 - image if form.inverted else image
    picture = Image.fromarray(np.ascontiguousarray(pixels, dtype=np.uint8), "L")
    if form.margin:
        pad = round(28 * form.margin)
        if form.canvas is not None and form.colour_map:
            page = Image.new("RGBA", (28 + 2 * pad, 28 + 2 * pad), (form.canvas,) * 3 + (255,))
            page.paste(_coloured(picture, form.colour_map), (pad, pad))
            picture = page
        else:
            background = 255 if form.inverted else 0
            level = background if form.canvas is None else form.canvas
            picture = Image.fromarray(np.pad(pixels, pad, constant_values=level).astype(np.uint8), "L")
    if form.scale != 1:
        side = round(picture.width * form.scale)
        resample = Image.Resampling.BICUBIC if form.smooth else Image.Resampling.NEAREST
        picture = picture.resize((side, side), resample)
    if form.colour_map and picture.mode == "L":
        picture = _coloured(picture, form.colour_map)
    buffer = io.BytesIO()
    kwargs = {"quality": 90} if form.fmt in ("JPEG", "WEBP") else {}
    _converted(picture, form.mode).save(buffer, format=form.fmt, **kwargs)
    return buffer.getvalue()


def _coloured(picture: Image.Image, colour_map: str) -> Image.Image:
    """An L picture's levels drawn in a matplotlib colour map, as RGBA."""
    from matplotlib import colormaps

    return Image.fromarray(colormaps[colour_map](np.asarray(picture), bytes=True), "RGBA")


def _converted(picture: Image.Image, mode: str) -> Image.Image:
    if mode == "I;16":
        return Image.fromarray(np.asarray(picture, dtype=np.uint16) * 257)
    if mode == "F":
        return Image.fromarray(np.asarray(picture, dtype=np.float32) / 255, "F")
    if mode == "P":
        return picture.convert("RGB").convert("P", palette=Image.Palette.ADAPTIVE, colors=256)
    return picture.convert(mode)
