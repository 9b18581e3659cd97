"""A Fashion-MNIST image saved in the forms people save images in: test material for `images.load_picture`.

Each form is one container of the same 28x28 image: an image mode (L, LA, RGB, RGBA, P, I;16, F), a size (28x28,
or upscaled by an integer or a non-integer factor, nearest or smooth), a polarity (light garment on black, as in the
dataset, or dark on white, as on a product page), a file format (PNG, JPEG, WebP, BMP, TIFF, GIF), optional margins,
in the background's colour or in another one (the image pasted on a page, or padded with white), or padded to another
shape, its background transparent or the image its opacity, optionally a colour map (matplotlib's default, viridis,
as `plt.imsave(path, image)` draws an image whose levels span 0-255), and optionally a figure round it: matplotlib's
axes with their ticks and tick labels (`plt.imshow(image); plt.savefig(path)`, with a title and a colour bar when
saved tight, or without axes), a screenshot of an image viewer's window with its title bar, or of a web page showing
it above a caption; and its levels in video's limited range (16-235), lowered to a part of their range (a dimmed
copy), printed in a colour on white (a tinted garment), mixed onto a grey backdrop, or, in a 16-bit picture, a
sensor's 10 or 12 bits or 8-bit levels stored unscaled.
Nothing in a form changes what the picture shows, so each form must give the class and the verdict the dataset's own
bytes give.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

MODES = ("L", "LA", "RGB", "RGBA", "P", "I;16", "F")
FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "TIFF", "GIF")
# Which modes each format stores (Pillow's writers); a form pairs a mode with a format that keeps it.
_STORES = {
    "PNG": ("L", "LA", "RGB", "RGBA", "P", "I;16"),
    "JPEG": ("L", "RGB"),
    "WEBP": ("RGB", "RGBA"),
    "BMP": ("L", "RGB", "P"),
    "TIFF": ("L", "LA", "RGB", "RGBA", "P", "I;16", "F"),
    "GIF": ("L", "P"),
}
SUFFIX = {"PNG": ".png", "JPEG": ".jpg", "WEBP": ".webp", "BMP": ".bmp", "TIFF": ".tif", "GIF": ".gif"}
# What a form may draw round the picture: matplotlib's default figure (6.4 x 4.8 inches at 100 dpi) with the image
# in its axes; the same saved with bbox_inches="tight", a title and a colour bar; or without its axes, saved tight
# with matplotlib's 0.1 inch of padding; an image viewer's window; a screenshot of a web page showing it above a
# caption, the page light or dark.
CAPTIONED = ("caption", "caption-dark")
FIGURES = ("axes", "axes-tight", "bare", "window", *CAPTIONED)
# Inks a tinted form prints the garment in on white (its level a = image / 255 mixes white and the ink): a yellow
# stands only 61 levels of luminance above the page, a light pink 50.
TINTS = {"yellow": (240, 200, 40), "pink": (255, 182, 193), "navy": (20, 30, 120)}


@dataclass(frozen=True)
class Form:
    mode: str
    fmt: str
    scale: float = 1.0  # the saved side is round(28 * scale)
    smooth: bool = False  # upscaled with bicubic interpolation (else nearest, as "save at 4x" does)
    inverted: bool = False  # dark garment on white
    margin: float = 0.0  # added on every side, as a fraction of 28 pixels
    wide: int = 0  # pixels of background added on the left and on the right: padded to another shape (ImageOps.pad)
    transparent: bool = False  # the background made transparent (alpha 0 where the image is 0), as an LA or RGBA PNG
    in_alpha: bool = False  # a white picture whose opacity is the image, as an LA or RGBA PNG
    canvas: int | None = None  # the margins' level (0-255) when not the background's: a page the image is set on
    colour_map: str | None = None  # a matplotlib colour map the levels are drawn in (viridis: dark violet to yellow)
    figure: str | None = None  # one of FIGURES, drawn round the picture (the figure's axes keep `scale` out of it)
    limited: bool = False  # levels 16-235, video's limited range, as some cameras and converters store them
    dim: float = 1.0  # the levels multiplied by it, rounded: a copy with its contrast lowered
    tint: str | None = None  # one of TINTS the garment is printed in on a white page
    backdrop: int | None = None  # the background level (0-255): the garment mixed from it to white (to black inverted)
    depth: int = 16  # I;16 only: the bits of its levels, 0..2^depth - 1 (8: the 0..255 levels stored unscaled)

    def __post_init__(self) -> None:
        if self.backdrop is not None and (
            self.transparent or self.in_alpha or self.tint or self.colour_map or self.figure or self.limited
        ):
            raise ValueError("a grey backdrop is the image's own background: no transparency, tint, colour map, figure")
        if self.depth != 16 and self.mode != "I;16":
            raise ValueError("`depth` is a 16-bit picture's")
        if self.transparent and (self.mode not in ("LA", "RGBA") or self.inverted or self.colour_map or self.figure):
            raise ValueError("a transparent background needs an LA or RGBA picture, light on black, without a figure")
        if self.wide and (self.margin or self.figure):
            raise ValueError("`wide` pads the picture itself: not with margins or a figure")
        if self.in_alpha and (
            self.mode not in ("LA", "RGBA") or self.inverted or self.colour_map or self.figure or self.tint
        ):
            raise ValueError("a picture in its alpha is an LA or RGBA picture, light on black, no figure or tint")
        if self.tint and (
            self.mode not in ("RGB", "RGBA") or self.inverted or self.colour_map or self.transparent or self.figure
        ):
            raise ValueError(
                "a tint prints the image in colour on white: an RGB or RGBA picture, not inverted, without a colour"
                " map, transparency or a figure"
            )

    @property
    def name(self) -> str:
        size = f"{round(28 * self.scale)}px{'-smooth' if self.smooth else ''}"
        extras = ("-inverted" if self.inverted else "") + (f"-margin{self.margin:g}" if self.margin else "")
        extras += f"-wide{self.wide}" if self.wide else ""
        extras += "-transparent" if self.transparent else ""
        extras += "-in-alpha" if self.in_alpha else ""
        extras += f"-canvas{self.canvas}" if self.canvas is not None else ""
        extras += f"-{self.colour_map}" if self.colour_map else ""
        extras += f"-{self.figure}" if self.figure else ""
        extras += "-limited" if self.limited else ""
        extras += f"-dim{self.dim:g}" if self.dim != 1 else ""
        extras += f"-{self.tint}" if self.tint else ""
        extras += f"-backdrop{self.backdrop}" if self.backdrop is not None else ""
        extras += f"-{self.depth}bit" if self.depth != 16 else ""
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
        Form("L", "PNG", wide=6),  # 40x28
        Form("RGB", "PNG", inverted=True, wide=6),
        Form("LA", "PNG", transparent=True),  # an array saved with its black as transparency
        Form("RGBA", "PNG", 4.0, transparent=True),
        Form("RGBA", "PNG", in_alpha=True),  # a white picture, the image its opacity
        Form("LA", "PNG", 3.0, in_alpha=True),
        Form("RGBA", "PNG", colour_map="viridis"),  # plt.imsave(path, image) of levels 0-255
        Form("RGB", "JPEG", 4.0, smooth=True, colour_map="viridis"),
        Form("RGB", "PNG", 3.0, margin=0.25, canvas=255, colour_map="viridis"),  # a figure saved without its axes
        Form("RGBA", "PNG", colour_map="viridis", figure="axes"),  # plt.imshow(image); plt.savefig(path)
        Form("RGBA", "PNG", colour_map="gray", figure="axes"),
        Form("RGB", "JPEG", inverted=True, colour_map="gray", figure="axes-tight"),
        Form("RGBA", "PNG", inverted=True, colour_map="gray", figure="bare"),  # plt.imshow(image, cmap="gray_r")
        Form("RGB", "PNG", 8.0, figure="window"),
        Form("RGB", "PNG", 8.0, figure="caption"),  # a captioned screenshot of a web page
        Form("RGB", "PNG", 8.0, figure="caption-dark"),
        Form("RGB", "PNG", 8.0, inverted=True, figure="caption"),  # dark on white on a white page: no edge seen
        Form("L", "PNG", limited=True),
        Form("RGB", "JPEG", 4.0, smooth=True, inverted=True, limited=True),
        Form("L", "PNG", dim=0.5),
        Form("RGB", "JPEG", 4.0, smooth=True, inverted=True, dim=0.6),
        Form("RGB", "PNG", tint="yellow"),
        Form("RGB", "JPEG", 4.0, smooth=True, tint="pink"),
        Form("RGBA", "PNG", 3.0, margin=0.5, tint="navy"),
        Form("L", "PNG", inverted=True, backdrop=200),  # a dark garment on a light grey
        Form("L", "PNG", backdrop=80),  # a light garment on a dark grey
        Form("RGB", "PNG", 4.0, inverted=True, backdrop=180),
        Form("I;16", "PNG", depth=12),  # a 12-bit sensor's levels in a 16-bit file
        Form("I;16", "TIFF", depth=8),  # Image.fromarray(image.astype(np.uint16))
        Form("I;16", "PNG", 4.0, depth=10),
    ]
    return forms


def save(image: np.ndarray, form: Form) -> bytes:
    """The uint8 [28, 28] image saved in `form`: the file's bytes. A colour map draws the levels after scaling,
    but before a canvas of another colour is set round them (a figure's white page); a tint prints them last."""
    pixels = np.rint(image * form.dim) if form.dim != 1 else image
    if form.backdrop is not None:
        ink = np.asarray(pixels, np.float64) / 255
        mixed = form.backdrop * (1 - ink) if form.inverted else form.backdrop + (255 - form.backdrop) * ink
        pixels = np.rint(mixed)
    else:
        pixels = 255 - pixels if form.inverted else pixels
    if form.limited:
        pixels = limited_range(pixels)
    picture = Image.fromarray(np.ascontiguousarray(pixels, dtype=np.uint8), "L")
    if form.figure == "window":
        picture = _window(picture.resize((round(28 * form.scale),) * 2, Image.Resampling.NEAREST))
    elif form.figure in CAPTIONED:
        resample = Image.Resampling.BICUBIC if form.smooth else Image.Resampling.NEAREST
        picture = _captioned(picture.resize((round(28 * form.scale),) * 2, resample), dark=form.figure == CAPTIONED[1])
    elif form.figure:
        picture = _figure(pixels, form.colour_map or "viridis", form.figure)
    elif form.margin:
        pad = round(28 * form.margin)
        if form.canvas is not None and form.colour_map:
            page = Image.new("RGBA", (28 + 2 * pad, 28 + 2 * pad), (form.canvas,) * 3 + (255,))
            page.paste(_coloured(picture, form.colour_map), (pad, pad))
            picture = page
        else:
            background = 255 if form.inverted else 0
            level = background if form.canvas is None else form.canvas
            picture = Image.fromarray(np.pad(pixels, pad, constant_values=level).astype(np.uint8), "L")
    elif form.wide:
        padded = np.pad(pixels, ((0, 0), (form.wide, form.wide)), constant_values=255 if form.inverted else 0)
        picture = Image.fromarray(padded.astype(np.uint8), "L")
    if form.scale != 1 and not form.figure:
        size = (round(picture.width * form.scale), round(picture.height * form.scale))
        resample = Image.Resampling.BICUBIC if form.smooth else Image.Resampling.NEAREST
        picture = picture.resize(size, resample)
    if form.colour_map and picture.mode == "L" and not form.figure:
        picture = _coloured(picture, form.colour_map)
    if form.tint:
        picture = _tinted(picture, TINTS[form.tint])
    if form.transparent:
        picture = Image.merge(
            "LA", (picture, Image.fromarray(np.where(np.asarray(picture) > 0, 255, 0).astype(np.uint8)))
        )
    if form.in_alpha:
        picture = Image.merge("LA", (Image.new("L", picture.size, 255), picture))
    buffer = io.BytesIO()
    kwargs = {"quality": 90} if form.fmt in ("JPEG", "WEBP") else {}
    _converted(picture, form.mode, form.depth).save(buffer, format=form.fmt, **kwargs)
    return buffer.getvalue()


def limited_range(pixels: np.ndarray) -> np.ndarray:
    """uint8 levels 0-255 [...] mapped to video's limited range, 16-235 (ITU-R BT.601), rounded: uint8 [...]."""
    return np.rint(16 + pixels.astype(np.float32) * (219 / 255)).astype(np.uint8)


def _figure(pixels: np.ndarray, colour_map: str, kind: str) -> Image.Image:
    """matplotlib's default figure showing `pixels` with imshow in its axes, ticks and tick labels round it;
    "axes-tight": with a title and a colour bar, saved with bbox_inches="tight"; "bare": its axes off, saved tight
    (0.1 inch of the figure's white round the image). As RGBA."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure()
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    shown = axes.imshow(pixels, cmap=colour_map)
    if kind == "axes-tight":
        axes.set_title("Fashion-MNIST")
        figure.colorbar(shown)
    if kind == "bare":
        axes.set_axis_off()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", bbox_inches=None if kind == "axes" else "tight")
    return Image.open(io.BytesIO(buffer.getvalue())).convert("RGBA")


def _window(picture: Image.Image) -> Image.Image:
    """A screenshot of an image viewer showing `picture`: a grey window, a dark title bar with two buttons, the
    picture in a thin mid-grey frame. As RGB."""
    width, height = picture.width + 60, picture.height + 70
    window = Image.new("RGB", (width, height), (200, 200, 204))
    window.paste((60, 63, 70), (0, 0, width, 30))
    window.paste((230, 80, 70), (10, 8, 22, 22))
    window.paste((240, 190, 60), (28, 8, 40, 22))
    window.paste((120, 120, 120), (29, 49, 31 + picture.width, 51 + picture.height))
    window.paste(picture.convert("RGB"), (30, 50))
    return window


def _captioned(picture: Image.Image, dark: bool) -> Image.Image:
    """A screenshot of a web page showing `picture` with a line of caption under it: a white page and black text, or
    a dark page (a dark theme's) and light text. As RGB."""
    page, ink = ((32, 33, 36), (220, 220, 220)) if dark else ((255, 255, 255), (0, 0, 0))
    screen = Image.new("RGB", (picture.width + 160, picture.height + 100), page)
    screen.paste(picture.convert("RGB"), (80, 20))
    ImageDraw.Draw(screen).text((80, picture.height + 36), "Figure 1: a test image", fill=ink, font_size=16)
    return screen


def _tinted(picture: Image.Image, ink: tuple[int, int, int]) -> Image.Image:
    """An L picture's levels printed in `ink` on white: level a/255 of ink over 1 - a/255 of white, as RGB."""
    level = np.asarray(picture, dtype=np.float32)[..., None] / 255
    return Image.fromarray(np.rint(255 * (1 - level) + np.asarray(ink, np.float32) * level).astype(np.uint8), "RGB")


def _coloured(picture: Image.Image, colour_map: str) -> Image.Image:
    """An L picture's levels drawn in a matplotlib colour map, as RGBA."""
    from matplotlib import colormaps

    return Image.fromarray(colormaps[colour_map](np.asarray(picture), bytes=True), "RGBA")


def _converted(picture: Image.Image, mode: str, depth: int = 16) -> Image.Image:
    if mode == "I;16":
        return Image.fromarray(np.rint(np.asarray(picture, np.float64) * ((2**depth - 1) / 255)).astype(np.uint16))
    if mode == "F":
        return Image.fromarray(np.asarray(picture, dtype=np.float32) / 255, "F")
    if mode == "P":
        return picture.convert("RGB").convert("P", palette=Image.Palette.ADAPTIVE, colors=256)
    return picture.convert(mode)
