"""Turn a user's picture into a 28x28 image framed the way Fashion-MNIST's were, for predict and serve.

Xiao, Rasul and Vollgraf (2017) built Fashion-MNIST from product photos (an object on a light
background): trim the margins to the object's bounding box, resize the longer side to 28
pixels, centre it on the shorter side, negate, 8-bit grayscale. In the result the background is
0, the object's longer side spans the 28 pixels and its darkest photo pixel is 255. We do the
same for any photo, with what real photos need on top: the background level (a smooth surface, for
uneven light) is measured on the border and mapped to 0 whatever its colour; the polarity
comes from the object's contrast with that level, so a light object on a dark background
works, even when the object touches an edge; the trim threshold follows the measured noise; a
straight edge of light across the picture (a hard shadow, a window's light) is taken out first (fmnist.shading),
and the object's drop shadow after (fmnist.shadows); a cut-out on transparency uses its alpha as the object
mask; EXIF orientation is applied.
Any format Pillow reads is taken, and HEIC/HEIF (phone photos) through the pillow-heif plugin.
"""

from __future__ import annotations

import functools
import glob
import io
import stat
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple, TypeAlias

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError
from pillow_heif import register_heif_opener
from scipy import ndimage

from fmnist import segmentation, shading, shadows
from fmnist.atomic import atomic_path
from fmnist.data import SIDE
from fmnist.errors import FmnistError

if TYPE_CHECKING:  # a torch tensor is made only when asked for (Framed.image): predict with an ONNX model needs none
    import torch

# A small compressed file can decode to gigabytes (a "decompression bomb"); 50 M pixels
# decoded is far more than the analysis needs and about 200 MB as 32-bit float. The limit is
# on the pixels actually decoded: a JPEG is decoded at 1/2, 1/4 or 1/8 of its size (see
# _reduce), so a 108-megapixel phone photo passes; a PNG, TIFF, WebP... is decoded whole.
MAX_PIXELS = 50_000_000
JPEG_MAX_REDUCTION = 8  # libjpeg scales the DCT by 1/2, 1/4 or 1/8 while decoding

# Pictures are analysed at most this large (longer side, pixels): the output is 28 pixels, so
# more resolution only costs time, and averaging pixels down also averages sensor noise away.
WORK_SIDE = 512
# A JPEG is decoded at the smallest scale that leaves at least this many pixels on its longer
# side, so that the resize to WORK_SIDE still averages over 2x2 or more decoded pixels.
DECODE_SIDE = 2 * WORK_SIDE

# HEIC/HEIF, the format iPhones save photos in by default: Pillow opens it once libheif's plugin is registered.
register_heif_opener()

# Pillow refuses, at open, any image over 2 x Image.MAX_IMAGE_PIXELS (179 M pixels by default), to
# guard callers that decode whole images. _check_size applies fmnist's own limit to every image
# before decoding, to what will be decoded, so Pillow's may stand back to let a 200-megapixel JPEG
# (16320x12240, from a phone) be opened and reduced.
if Image.MAX_IMAGE_PIXELS is not None:
    Image.MAX_IMAGE_PIXELS = max(Image.MAX_IMAGE_PIXELS, MAX_PIXELS * JPEG_MAX_REDUCTION**2)

# The depths, in bits, that integer data in a 16- or 32-bit picture is taken to have: the fewest that hold its largest
# value (a 10-, 12- or 14-bit sensor's levels in a 16-bit file, or 8-bit levels stored unscaled, as
# `Image.fromarray(image.astype(np.uint16))` stores them) sets the range that spans 0..255.
DATA_BITS = (8, 10, 12, 14, 16)

# Smoothing radius (pixels at the working size) for finding the object: single noisy pixels
# and JPEG speckle fall below the threshold, real edges move by at most this much.
SMOOTH_RADIUS = 2

# The object is where the smoothed contrast with the background exceeds the larger of
# NOISE_SIGMAS noise standard deviations (measured on the border), MIN_CONTRAST levels and
# PEAK_FRACTION of the strongest contrast (so faint shadows and vignetting stay outside).
NOISE_SIGMAS = 5.0
MIN_CONTRAST = 3.0
PEAK_FRACTION = 0.06

# The background's fit grows from the border's most common level for PLAIN_ROUNDS rounds. Border pixels within
# CLIPPED_BAND levels of the format's black or white are light the picture clipped (a backdrop lit past white): a
# second fit holds them with CLIPPED_WEIGHT where it passes beyond them, for at most FIT_ROUNDS rounds, until no
# border pixel's fitted level moves by SETTLED levels more, and is taken when it puts CENSORED_GAIN more of the
# border on the background.
PLAIN_ROUNDS = 6
CLIPPED_BAND = 2.0
CLIPPED_WEIGHT = 1e-3
FIT_ROUNDS = 50
SETTLED = 0.05
CENSORED_GAIN = 0.15

# A digital image (digital_view): a background within BACKGROUND_BAND levels of black or white (the darkest colour
# of matplotlib's default colour map, viridis, is 31 levels above black), at least half of its border within
# FLAT_BAND levels of that background's level, with at most DIGITAL_NOISE levels of noise there (a photo's sensor
# noise, JPEG speckle and uneven light are more). A 28x28 grid (`_grid_picture`: at its own size or enlarged) may have a
# background of any grey when its object lies on one side of it: at most ONE_SIDE as many pixels more than
# ONE_SIDE_BAND levels the other way as that way (a dataset image mixed onto a grey: a dark garment on a light grey, a
# light one on a dark grey; a JPEG's ringing overshoots the grey by less than ONE_SIDE_BAND); a photo on a flat grey
# table is no such grid.
BACKGROUND_BAND = 40.0
ONE_SIDE = 0.02
ONE_SIDE_BAND = 24.0
FLAT_BAND = 6.0
DIGITAL_NOISE = 2.0
DIGITAL_OBJECT = 8.0  # contrast that counts as the object when finding its box (faint JPEG ringing does not)
SPECK = 5  # pixels: fewer of them above DIGITAL_OBJECT, 8-connected, are noise in a large digital picture
# A dataset image on a transparent background (its black made transparent) fades toward black at the edge of its opaque
# part: the mean of that rim is under 0.9 of the mean inside it in 98.6 % of 3,000 test images (the median 0.52;
# tests/test_realdata.py::test_the_dataset_facts_behind_faint_fade_and_graded, as for FAINT's figures).
FADE = 0.9
# A dataset image saved as a picture in one colour, the image its opacity: at least half of the pixels it shows are
# neither transparent nor opaque (in 99.9 % of 3,000 test images, the least share 0.41; the same test prints it).
GRADED = 0.5
# Fashion-MNIST trimmed its pictures at a faint level: the box of every lit pixel spans the 28 pixels in 98.3 % of its
# 60,000 training images, that of those above DIGITAL_OBJECT in 94.3 %. At a digital picture's own pixels (28x28 with
# margins, or one reduced from its enlargement), an object whose box spans 26 to 28 of them has the box of every pixel
# above FAINT when that spans 28 at most (a JPEG's ringing spreads further, and keeps the box above DIGITAL_OBJECT).
FAINT = 0.5
# A Fashion-MNIST image's object crosses the border of its 28x28 picture in 14 runs at most (of all 70,000), and an
# enlargement cannot cross it more often: a square picture whose border falls into more pieces is a pattern.
DIGITAL_PIECES = 16
MARGIN_SPAN = 26 / 28  # an object spanning less of a square digital picture was given margins, unless in
# 0.6 % of Fashion-MNIST's images (the rest span 26 to 28 of the 28 pixels; a photo's framing spans 28)
# A square digital picture whose object spans less than MARGIN_SPAN may also be a 28x28 picture enlarged whose object
# spans less of its 28 pixels (an MNIST-style digit in its 20-pixel box; 6 of Fashion-MNIST's 70,000 images): then it
# keeps its placement, as at 28x28. It is one when it is GRID_FACTOR times 28 pixels or more, its object spans
# GRID_SPAN of the 28 or more, and its samples at the 28x28 grid's centres rebuild it (`_enlarged`) within GRID_ERROR
# of the sum of its mean steps between neighbouring pixels across and down. A garment given margins of a few pixels
# and enlarged twice (bilinear, bicubic) rebuilds as well as a digit enlarged four times (Lanczos): enlarged twice or
# less, a picture is not asked; three times or more, a picture given margins first rebuilds far worse (tests).
GRID_ERROR = 0.24
GRID_SPAN = 16
GRID_FACTOR = 3
# The least contrast of a digital image's object with its background (a faint scan, grey text or a faint drawing on
# flat paper is framed as a photo, its cues judged); GRID_CONTRAST for a picture that is a 28x28 grid, at its own size
# or enlarged (_enlarged): a garment printed in yellow on white stands 61 levels above the page, a light pink one 50
# (fmnist.testing.forms.TINTS).
DIGITAL_CONTRAST = 128.0
GRID_CONTRAST = 40.0
FULL_PEAK = 250.0  # a digital object's strongest contrast; Fashion-MNIST's images all reach 254 or 255
# Every one of Fashion-MNIST's 70,000 images has a pixel at 0: a 28x28 grey picture whose darkest level is
# DATASET_BLACK or more is not in the dataset's format (video's limited range puts black at 16, white at 235) and has
# its background subtracted as a digital image's.
DATASET_BLACK = 8

# A digital picture set on a plain canvas (a dataset image pasted on a white page, or padded with margins of another
# colour than its own background) is read without the canvas (`_inner_picture`). The canvas is the picture's border:
# at least CANVAS_FLAT of it within FLAT_BAND levels of one level, with at most DIGITAL_NOISE levels of noise. The
# inner picture is the box of the pixels more than halfway from that level to the level most common among those at
# least CANVAS_STEP away. It is at least INNER_SIDE pixels on a side and at most INNER_ASPECT times as long as wide
# (a dataset image is square); its four corners and at least INNER_EDGE of its border lie more than CANVAS_STEP / 2
# from the canvas (80.6 % or more of the border of each of Fashion-MNIST's 70,000 images lies more than 12 levels
# from white, and so do all four of its corners); its border, or a ring a little inside it when a smooth upscale
# blurred it, is flat as a digital image's (digital_view) at a level within INNER_BAND of black or white (when no
# ring is: within BACKGROUND_BAND, as a colour map's darkest is, and at least CANVAS_APART from the canvas's) and at
# least CANVAS_STEP from the canvas's; at least INNER_BACKGROUND of it lies at that level (its background: 5.7 % or
# more of every Fashion-MNIST test image, 13.6 % or more of 99.9 % of them); and what stands on it, DIGITAL_CONTRAST
# or more apart at its strongest, spans at least INNER_SPAN of the box's longer side (a Fashion-MNIST image's object
# spans 26 to 28 of its 28 pixels in 99.4 % of them; a dark clutch's bright clasp, or a flat box's seam, is a detail
# of an object on a plain backdrop). Of the test set's 10,000 images padded in their own background's colour none is
# taken for a picture on a canvas, and of those padded in white 9,991 are (tests/test_realdata.py). A picture found
# on the reduced work planes of a larger one is read again at its own size when it is at most WORK_SIDE pixels on a
# side.
# A picture in a drawn frame on a page with other marks (a figure's axes, with their ticks, tick labels, title and
# colour bar; an image viewer's window with its title bar) fails the canvas test: its page is flat on FRAME_FLAT of the
# border only, or its box takes in the marks. It is the widest (by its box) 8-connected piece of the pixels CANVAS_STEP
# or more from the page, cut to the rows and columns that the piece fills for INNER_EDGE of its box (the frame's lines,
# or the picture's own edge: ticks reach a few pixels out of it), each of its corners within a pixel of one CANVAS_STEP
# or more from the page (a thin line's corner is antialiased lighter); round it, FRAME_GAP pixels out, INNER_EDGE of
# the ring lies on the page (a frame is drawn on the page; a box cut out of a larger object is not), and beyond that
# ring the page holds FRAME_MARKS pixels or more of other marks (without them, a garment that fills its box on a plain
# page, trousers padded in black, would pass: tests/test_realdata.py). Its background is the first flat ring inward
# that is not a frame line (a ring two pixels further in flat at a level CANVAS_STEP or more away), within
# BACKGROUND_BAND of black or white, at any distance from the page (an image drawn white on a white figure within its
# black spines); the rings outside it are the frame's and are cut off. When that is the outermost ring (the picture's
# own background reaches the frame, as black does in a grey figure), the frame must have ticks (FRAME_MARKS pixels of
# its piece beyond the ring, at most FRAME_TICKS of its perimeter: short marks): a dark block among marks without them
# is an object (a black bag, its handle reaching out, above a caption), unless it is square and what stands on it spans
# MARGIN_SPAN of it (a captioned screenshot of a dataset image). Its other tests are the canvas rule's; a box
# FRAME_SQUARE pixels or less from square is cut square (a figure's axes drawn round a square image).
FRAME_FLAT = 0.5
FRAME_GAP = 2
FRAME_MARKS = 8
FRAME_TICKS = 0.25
FRAME_SQUARE = 2
CANVAS_FLAT = 0.9
INNER_BAND = 16.0
CANVAS_APART = 128.0
CANVAS_STEP = 24.0
INNER_SIDE = 8
INNER_ASPECT = 1.5
INNER_EDGE = 0.8
INNER_BACKGROUND = 0.1
INNER_SPAN = 1 / 3
INNER_RIM = 3  # rings tried inward, at least: a picture found on reduced work planes has a blurred rim

# The object lies on a textured or shaded surface, which segmentation.object_mask separates it from, when the
# border's noise (grey levels, after smoothing) exceeds SURFACE_NOISE (a product photo's stays under 5, grass and
# gravel reach 10-30), or when less than SURFACE_FIT of the border lies on the smooth background surface (a product
# photo's 0.85 or more, unless its object covers the border) and either that noise is at least SURFACE_MIN_NOISE
# (a pattern, a shadow's edge: a plain background that the object touches stays under 1), or the border off the
# surface falls into SURFACE_PIECES pieces or more, runs of PIECE_RUN pixels or more going round it (a pattern
# printed in flat colours, a gingham tablecloth, whose noise is a fraction of a level, none in a lossless file;
# a drawn line crossing the border, a chart's or a table's grid, makes narrower runs; PIECE_RUN is in pixels of
# the working planes, so a fine check in a small picture makes narrower ones too; benchmarks/surfaces.py counts
# the pieces where the noise alone does not decide), or that noise is at least SHADED_NOISE and the border off the
# surface lies less than SHADING levels from it (the median): a sheet's folds or a soft light shade the border
# smoothly off a quadratic in a phone's denoised photo, while an object covering the border stands out by its own
# contrast. In that noise and with fewer pieces, on the stretched levels (0..255), the border lies 10-19 levels off
# the fit on benchmarks/surfaces.py's `shade` table, 18-103 on its `lit` backdrop, 36-59 on tile and 49 on its sheet
# (whose folds under coloured light mostly make a level of noise or more), and 47 on one of its 160 product photos of
# a garment cut by the picture's edge; the tests' objects covering the border lie 61-221 levels off it. 40 rather
# than 50 leaves that photo as it was (50 kept one more garment on the sheet, the flat table and the lit backdrop).
SURFACE_NOISE = 6.0
SURFACE_FIT = 0.8
SURFACE_MIN_NOISE = 1.0
SHADED_NOISE = 0.3
SHADING = 40.0
SURFACE_PIECES = 6
PIECE_RUN = 8

# In a cut-out, the least contrast an object pixel gets, as a fraction of the object's strongest.
SILHOUETTE_FLOOR = 0.25
# A line of caption under (or over) the object, as on a screenshot of a web page: a band of rows, apart from the object
# by rows with nothing on them, at most CAPTION_HEIGHT of the object's height, holding CAPTION_PIECES separate marks or
# more (its letters).
CAPTION_HEIGHT = 0.2
CAPTION_PIECES = 3
CAPTION_GAP = 3  # empty rows at least (a shoe's thin sole close under it is no caption)

# A part of the object thinner than THIN_PART of its box's longer side (half a pixel of the 28x28 view) that sticks
# out of the rest above or to a side, by more than half a pixel, does not set the box: a thin hanger's hook and wire,
# a price tag's string. In the view it would be a faint line at most, and the garment shrank to make room for it.
# Found by a morphological opening (a square about THIN_PART wide); not when the opening would take out THIN_KEEP of
# the object or more (a drawing made of strokes). Half a pixel, not a whole one: the dataset shows parts a pixel wide
# (a sandal's straps, a bag's handle), and in a photo they may be as thin as that. The bottom never moves: a heel or a
# hem stands on it.
THIN_PART = 1 / (2 * SIDE)
THIN_KEEP = 0.5

# Fashion-MNIST's shoes nearly all face left: the shaft, the collar or the heel strap, the high part of the shoe, is on
# the right. The facing offset (`facing_offset`: the intensity centroid of the top half of the object's rows, in box
# widths from its middle) is +0.09 or more for 95 % of the sneakers among the first 50,000 training images and +0.16
# or more for 95 % of the ankle boots; for 90 % of the images of each class with no facing it lies between -0.05 and
# +0.06 (`benchmarks/facing.py`). A photo's view whose offset is -FACING or less shows a shoe facing right, and is
# mirrored: the model reads ankle boots facing right as ankle boots 0 % of the time, sneakers and sandals about 40 %.
# At FACING = 0.1 the training images of every class but sandals are mirrored 0.3 % of the time or less, sandals
# 3.3 %. A garment with no facing is read nearly as well mirrored (the validation images: 0-5.4 points less), so
# nothing else is asked of a view: a test of the box's shape (a shoe is wider than tall) would leave facing right the
# 4-10 % of ankle boots that are taller than wide.
FACING = 0.1
FACING_LEVEL = 25  # a view's pixels above it are the object's, for its box (a tenth of the range)

# A pair of shoes side by side, as shops photograph them, is framed as one wide, low object: the model reads a pair of
# sneakers as a sandal. Fashion-MNIST shows one shoe, so when the object is two pieces (8-connected) that hold
# PAIR_SHARE of its pixels or more, the smaller at least PAIR_BALANCE of the larger, side by side (no column shared,
# rows shared over PAIR_OVERLAP of the shorter piece's height or more), each at least PAIR_ASPECT as wide as it is
# tall, the larger alone is framed and judged. Among the first 50,000 training images (benchmarks/pairs.py), 97.1 % of
# the ankle boots, 98.4 % of the sandals and every sneaker are at least PAIR_ASPECT as wide as tall; tops, dresses and
# coats are 0.54-0.79 as wide as tall at the median, so a half of one, cut down the middle, is far narrower.
PAIR_SHARE = 0.95
PAIR_BALANCE = 0.5
PAIR_OVERLAP = 0.5
PAIR_ASPECT = 0.9

_ALPHA_MODES = ("LA", "PA", "RGBA", "RGBa")

# Files that file managers hide and copy along with photos, none of them a picture: macOS Finder's
# folder settings and the AppleDouble "._name" files it writes on non-Mac disks, Windows Explorer's
# thumbnail caches and folder settings. Any other name starting with "." is hidden too.
SYSTEM_FILES = frozenset({".ds_store", "thumbs.db", "ehthumbs.db", "ehthumbs_vista.db", "desktop.ini"})

# Why collect_images leaves a file out (the keys of CollectedImages.skipped).
SKIP_HIDDEN = "hidden or system file"
SKIP_NOT_IMAGE = "not an image Pillow reads"
SKIP_DIRECTORY = "directory (not searched)"
SKIP_SPECIAL = "not a regular file"


def skipped_line(skipped: dict[str, int]) -> str | None:
    """ "skipped 3 files: hidden or system file: 2; not an image Pillow reads: 1" of counts by reason, or None when
    none was skipped."""
    if not skipped:
        return None
    total = sum(skipped.values())
    reasons = "; ".join(f"{reason}: {count}" for reason, count in skipped.items())
    return f"skipped {total} file{'s' if total > 1 else ''}: {reasons}"


@dataclass
class CollectedImages:
    """The pictures `collect_images` found, in order, how many files it left out for each reason, which files
    it left out for a reason other than SKIP_HIDDEN (with that reason), and the directories and globs that stood
    for no picture at all (`empty`, as given)."""

    paths: list[Path] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)
    left_out: list[tuple[Path, str]] = field(default_factory=list)
    empty: list[str] = field(default_factory=list)

    def skipped_summary(self) -> str | None:
        """skipped_line of `skipped`."""
        return skipped_line(self.skipped)


def collect_images(arguments: list[str]) -> CollectedImages:
    """The image files that `arguments` (files, directories, globs) stand for, decided by content.

    A directory stands for the files directly inside it, sorted by name; a glob that the shell did
    not expand ("photos/*.jpg", "**" recurses) for its matches, sorted. Of those, a file is taken when
    Pillow can open it (its header names a format Pillow decodes: any suffix, or none: .jfif, .jpe,
    .avif where Pillow has AVIF), and left out, counted in `skipped` by reason, when it is hidden or a
    system file (SYSTEM_FILES, AppleDouble "._*", any dot-file), not an image, a subdirectory or not a
    regular file. A file named directly is taken unless it is a system file or "._*": the user asked
    for it, so a non-image among them is reported by `load_image`, as is a path that does not exist
    (also a glob matching nothing). A directory or glob none of whose files is taken is named in `empty`.
    Reading headers costs one small read per file. Raises FmnistError when a directory cannot be listed.
    """
    paths: list[Path] = []
    skipped: Counter[str] = Counter()
    left_out: list[tuple[Path, str]] = []
    empty: list[str] = []
    for argument in arguments:
        path = Path(argument)
        if path.is_dir():
            try:
                members = sorted(path.iterdir())
            except OSError as e:  # no read permission on the directory, or it vanished
                raise FmnistError(f"{argument}: cannot list the directory: {e.strerror or e}") from None
        elif not path.exists() and glob.has_magic(argument):
            members = [Path(match) for match in sorted(glob.glob(argument, recursive=True))]
            if not members:
                paths.append(path)
                continue
        else:
            if _is_system_file(path.name):
                skipped[SKIP_HIDDEN] += 1
            else:
                paths.append(path)
            continue
        before = len(paths)
        for member in members:
            reason = _skip_reason(member)
            if reason is None:
                paths.append(member)
                continue
            skipped[reason] += 1
            if reason != SKIP_HIDDEN:
                left_out.append((member, reason))
        if len(paths) == before:
            empty.append(argument)
    return CollectedImages(paths, dict(skipped), left_out, empty)


def _is_system_file(name: str) -> bool:
    return name.lower() in SYSTEM_FILES or name.startswith("._")


def _skip_reason(path: Path) -> str | None:
    """Why a file found in a directory or by a glob is not a picture to classify, or None when it is one."""
    if path.name.startswith(".") or _is_system_file(path.name):
        return SKIP_HIDDEN
    if path.is_dir():
        return SKIP_DIRECTORY
    if not path.is_file():  # a FIFO would block the read below; a socket, a dangling link
        return SKIP_SPECIAL
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:  # reads the header only
                # Formats Pillow identifies without decoding them (BUFR, GRIB, HDF5) need a handler.
                return SKIP_NOT_IMAGE if isinstance(image, ImageFile.StubImageFile) else None
    except UnidentifiedImageError:
        return SKIP_NOT_IMAGE
    except (OSError, Image.DecompressionBombError):  # unreadable, or a bomb: load_image says which
        return None


@dataclass(frozen=True)
class Cues:
    """What framing measured of the picture around the object: out-of-distribution cues (fmnist.trust.ood).

    A product photo has a plain background all round, little noise, one object that fills a
    part of the picture; a snapshot, a page or a texture does not.
    """

    border_fit: float  # share of the border's pixels that lie on the fitted background surface, 0..1
    noise: float  # the background's noise, grey levels (0..255 scale, after smoothing)
    coverage: float  # the object's bounding box, as a share of the picture's area, 0..1 (0: no object)
    fill: float  # the object's pixels, as a share of its bounding box, 0..1
    largest_part: float  # the largest connected piece of the object, as a share of all its pixels, 0..1
    textured: bool = False  # whether the object was taken to lie on a textured surface (on_texture); not a cue

    NAMES = ("border_fit", "noise", "coverage", "fill", "largest_part")  # the detector's cues

    def values(self) -> tuple[float, ...]:
        return tuple(float(getattr(self, n)) for n in self.NAMES)


@dataclass(frozen=True)
class Framed:
    pixels: np.ndarray  # uint8 [28, 28], as the model sees it
    cues: Cues | None  # None for a picture that already was a 28x28 Fashion-MNIST-style image

    @property
    def image(self) -> torch.Tensor:
        """`pixels` as a torch tensor (sharing its memory)."""
        import torch

        return torch.from_numpy(self.pixels)


def load_image(source: str | Path | bytes, name: str = "upload") -> torch.Tensor:
    """Read any image Pillow can open (a file, or its bytes) as a uint8 [28, 28] Fashion-MNIST-like tensor.

    Raises FmnistError, naming the file (or `name` for bytes), when it is missing, a directory,
    empty, not an image, truncated or corrupt, or larger than MAX_PIXELS.
    """
    return load_picture(source, name).image


def load_picture(source: str | Path | bytes, name: str = "upload") -> Framed:
    """`load_image`, with the framing's cues about the picture (None for a 28x28 Fashion-MNIST-style image)."""
    if isinstance(source, bytes):
        image = _decode(source, name)
    else:
        name = str(source)
        image = _decode(Path(source), name)
    return frame_picture(image, name)


def frame_picture(image: Image.Image, name: str = "image") -> Framed:
    """A decoded Pillow image framed as `load_picture` frames a file (the Python API's PIL input; the caller
    has applied any EXIF orientation). Raises FmnistError, naming `name`, for more than MAX_PIXELS pixels
    or a mode that has no grayscale."""
    _check_size(name, image)
    own = _already_fashion_mnist(image)
    if own is not None:
        # Re-framing would only resample it; this keeps `predict --save-inputs` images and
        # exported test images exactly what the model sees.
        return Framed(own, None)
    return _framed(image, name)


def _framed(image: Image.Image, name: str, marked: bool = False) -> Framed:
    """`frame_picture` of a picture not in the dataset's own format; `marked`: cut out of a larger one round a
    picture found in a drawn frame among marks (which the cut may have left out)."""
    try:
        gray, alpha, step = _planes(image)
    except ValueError as exc:  # modes Pillow cannot convert, such as LAB
        raise FmnistError(f"{name}: cannot convert a {image.mode} image to grayscale") from exc
    if alpha is not None:
        transparent = _in_alpha(gray, alpha)
        if transparent is None:
            transparent = _on_black(gray, alpha)
        if transparent is not None:
            return Framed(transparent, None)
    inner = _inner_picture(gray, alpha, marked)
    if inner is not None:  # read the picture on the canvas, not the canvas
        across, down = image.width / gray.shape[1], image.height / gray.shape[0]

        def scaled(found: tuple[int, int, int, int]) -> tuple[int, int, int, int]:  # (left, top, right, bottom)
            top, bottom, left, right = found
            return round(left * across), round(top * down), round(right * across), round(bottom * down)

        box = scaled(inner.box)
        if (across, down) != (1.0, 1.0):
            # Found on the work planes of a larger picture: when it fits them, cut it out with two work pixels of
            # canvas round it (and round its frame) and look again at its own size (its 28x28 bytes are then the
            # dataset's).
            outer = scaled(inner.outer)
            wider = (
                max(0, round(outer[0] - 2 * across - 1)),
                max(0, round(outer[1] - 2 * down - 1)),
                min(image.width, round(outer[2] + 2 * across + 1)),
                min(image.height, round(outer[3] + 2 * down + 1)),
            )
            if max(wider[2] - wider[0], wider[3] - wider[1]) <= WORK_SIDE:
                return _framed(image.crop(wider), name, inner.in_frame)
        gray, alpha, image = inner.plane, None, image.crop(box)
    digital = digital_view(gray, alpha, inner is None)
    if digital is not None:
        return Framed(digital, None)
    framed, cues = frame_with_cues(gray, alpha, step, lambda: _colour(image, gray))
    return Framed(framed, cues)


class InnerPicture(NamedTuple):
    """A digital picture inside a larger one (`_inner_picture`)."""

    box: tuple[int, int, int, int]  # (top, bottom, left, right), in the pixels of the plane it was found on
    plane: np.ndarray  # the larger one's levels in the box, its rim set to the picture's background level
    in_frame: bool  # found in a drawn frame (see FRAME_FLAT), not on a plain canvas
    outer: tuple[int, int, int, int]  # the box with the frame's lines round it (the box itself on a canvas)


def _inner_picture(gray: np.ndarray, alpha: np.ndarray | None, marked: bool = False) -> InnerPicture | None:
    """The box, in `gray`'s pixels, of an opaque digital picture set on a plain canvas (see CANVAS_FLAT) or in a
    drawn frame on a page (see FRAME_FLAT), and its plane: `gray` in that box. On a canvas, a rim that a smooth
    upscale of the whole blurred (the pixels outside the ring inward found as its background, among the first
    INNER_RIM or a tenth of the box's side) is set to that background's level; in a frame, the rings outside it are
    the frame's and are cut off. `marked`: `gray` was cut round a picture found in a frame among marks, which the
    frame need not show again. None for any other picture."""
    if alpha is not None and float(alpha.min()) < 0.99:
        return None
    height, width = gray.shape
    border = gray[_border_coordinates(height, width)]
    level = _mode_level(border)
    if not _flat(border, level, FRAME_FLAT):
        return None
    canvas = _canvas_box(gray, level) if _flat(border, level, CANVAS_FLAT) else None
    found_frame = _frame_box(gray, level, marked) if canvas is None else None
    box = canvas if found_frame is None else found_frame[0]
    if box is None:
        return None
    in_frame = found_frame is not None
    top, bottom, left, right = box
    plane = gray[top:bottom, left:right].copy()
    short = min(plane.shape)
    found = _frame_background(plane, short) if in_frame else _canvas_background(plane, short, level)
    if found is None:
        return None
    rim, inner = found
    outer = box
    if in_frame:
        box = _inside_frame(box, rim)
        top, bottom, left, right = box
        plane = gray[top:bottom, left:right].copy()
    difference = np.abs(plane - inner)
    if float(difference.max()) < DIGITAL_CONTRAST:
        return None
    shown = _object_box(difference > DIGITAL_OBJECT)
    span = 0 if shown is None else max(shown[1] - shown[0], shown[3] - shown[2])
    if span < INNER_SPAN * max(plane.shape):
        return None
    # A block whose own colour reaches its edge, with no ticks, among marks is an object (a black bag above a caption,
    # its logo), unless it is square and its object spans it as a dataset image's spans its 28 pixels (a screenshot of
    # one, captioned).
    dataset_like = plane.shape[0] == plane.shape[1] and span >= MARGIN_SPAN * plane.shape[0]
    if found_frame is not None and rim == 0 and not (found_frame[1] or marked or dataset_like):
        return None
    if rim and not in_frame:
        core = plane[rim:-rim, rim:-rim].copy()
        plane[:] = inner
        plane[rim:-rim, rim:-rim] = core
    return InnerPicture(box, plane, in_frame, outer)


def _inside_frame(box: tuple[int, int, int, int], rim: int) -> tuple[int, int, int, int]:
    """The part of a frame's `box` inside its `rim` rings of lines, cut square when it is FRAME_SQUARE pixels or
    less from square (a figure's axes drawn round a square image), an odd pixel cut at the bottom or the right."""
    top, bottom, left, right = box[0] + rim, box[1] - rim, box[2] + rim, box[3] - rim
    short, long = sorted((bottom - top, right - left))
    if 0 < long - short <= FRAME_SQUARE:
        top, left = top + (bottom - top - short) // 2, left + (right - left - short) // 2
        bottom, right = top + short, left + short
    return top, bottom, left, right


def _canvas_box(gray: np.ndarray, level: float) -> tuple[int, int, int, int] | None:
    """The box of a picture on a plain canvas at `level` (see CANVAS_FLAT), or None."""
    far = np.abs(gray - level) >= CANVAS_STEP
    if not far.any():
        return None
    box = _object_box(np.abs(gray - level) > abs(_mode_level(gray[far]) - level) / 2)
    if box is None or not _inner_size(box, gray.shape):
        return None
    top, bottom, left, right = box
    apart = np.abs(gray - level) > CANVAS_STEP / 2
    edge = apart[top:bottom, left:right][_border_coordinates(bottom - top, right - left)]
    corners = apart[[top, top, bottom - 1, bottom - 1], [left, right - 1, left, right - 1]]
    return box if corners.all() and edge.mean() >= INNER_EDGE else None


def _frame_box(gray: np.ndarray, level: float, marked: bool = False) -> tuple[tuple[int, int, int, int], bool] | None:
    """The box of a picture in a drawn frame on a page at `level` (see FRAME_FLAT) in `gray` (float [H, W], 0..255),
    and whether the frame has ticks (FRAME_MARKS pixels or more of its piece beyond FRAME_GAP out of it, at most
    FRAME_TICKS per pixel of its perimeter), or None; `marked`: the page's other marks were seen on a larger picture
    this one was cut from."""
    far = np.abs(gray - level) >= CANVAS_STEP
    labels, count = ndimage.label(far, structure=np.ones((3, 3), bool))
    if count == 0:
        return None
    pieces = ndimage.find_objects(labels)
    areas = [(rows.stop - rows.start) * (cols.stop - cols.start) for rows, cols in pieces]
    widest = int(np.argmax(areas))  # the first on a tie, as it is numbered in raster order
    rows, cols = pieces[widest]
    frame = labels == widest + 1
    piece = frame[rows, cols]
    full_rows, full_cols = np.flatnonzero(piece.mean(1) >= INNER_EDGE), np.flatnonzero(piece.mean(0) >= INNER_EDGE)
    if full_rows.size == 0 or full_cols.size == 0:
        return None
    top, bottom = rows.start + int(full_rows[0]), rows.start + int(full_rows[-1]) + 1
    left, right = cols.start + int(full_cols[0]), cols.start + int(full_cols[-1]) + 1
    box = (top, bottom, left, right)
    if not _inner_size(box, gray.shape):
        return None
    # Each corner within a pixel of one CANVAS_STEP from the page: a thin line's corner is antialiased lighter.
    corners = [far[y : y + 2, x : x + 2] for y in (top, bottom - 2) for x in (left, right - 2)]
    if not all(corner.any() for corner in corners):
        return None
    # Drawn on the page: round it, FRAME_GAP pixels out, the page (but where a tick crosses), not more of an object.
    outer = (top - FRAME_GAP, bottom + FRAME_GAP, left - FRAME_GAP, right + FRAME_GAP)
    if outer[0] < 0 or outer[2] < 0 or outer[1] > gray.shape[0] or outer[3] > gray.shape[1]:
        return None
    ring = gray[outer[0] : outer[1], outer[2] : outer[3]][_border_coordinates(outer[1] - outer[0], outer[3] - outer[2])]
    if (np.abs(ring - level) < CANVAS_STEP).mean() < INNER_EDGE:
        return None
    beyond = np.ones(far.shape, bool)
    beyond[outer[0] : outer[1], outer[2] : outer[3]] = False
    if not marked and int((far & ~frame & beyond).sum()) < FRAME_MARKS:  # no other marks: a canvas or a backdrop
        return None
    reach = int((frame & beyond).sum())  # ticks are short: a handle or a sleeve reaching out is an object's
    return box, FRAME_MARKS <= reach <= FRAME_TICKS * 2 * (bottom - top + right - left)


def _inner_size(box: tuple[int, int, int, int], shape: tuple[int, ...]) -> bool:
    """Whether `box` could hold a digital picture inside a picture of `shape`: not all of it, at least INNER_SIDE
    pixels on a side and at most INNER_ASPECT times as long as wide."""
    top, bottom, left, right = box
    short, long = sorted((bottom - top, right - left))
    whole = (bottom - top, right - left) == tuple(shape[:2])
    return not whole and short >= INNER_SIDE and long <= INNER_ASPECT * short


def _rings(plane: np.ndarray, short: int) -> Iterator[tuple[int, np.ndarray, float]]:
    """(rim, the ring's pixels, their most common level) of the rings of `plane` going inward: the first
    INNER_RIM, or a tenth of its `short` side."""
    for rim in range(max(INNER_RIM, short // 10)):
        ring = plane[rim : plane.shape[0] - rim, rim : plane.shape[1] - rim]
        ring = ring[_border_coordinates(*ring.shape)]
        yield rim, ring, _mode_level(ring)


def _background_ring(plane: np.ndarray, ring: np.ndarray, inner: float, band: float) -> bool:
    """Whether a `ring` of `plane` at level `inner` is a digital image's background: flat, at least
    INNER_BACKGROUND of the plane at its level, within `band` of black or white."""
    background = (np.abs(plane - inner) <= FLAT_BAND).mean() >= INNER_BACKGROUND
    return _flat(ring, inner, 0.5) and background and min(inner, 255 - inner) <= band


def _canvas_background(plane: np.ndarray, short: int, level: float) -> tuple[int, float] | None:
    """(rim, level) of the background of a picture on a canvas at `level` (see CANVAS_FLAT), or None. Rings near
    black or white first; then, on a page far from the ring's level, a colour map's darkest (a figure saved without
    its axes), further from black."""
    for band, distance in ((INNER_BAND, 0.0), (BACKGROUND_BAND, CANVAS_APART)):
        for rim, ring, inner in _rings(plane, short):
            if _background_ring(plane, ring, inner, band) and abs(inner - level) >= distance:
                return (rim, inner) if abs(inner - level) >= CANVAS_STEP else None
    return None


def _frame_background(plane: np.ndarray, short: int) -> tuple[int, float] | None:
    """(rim, level) of the background of a picture in a drawn frame (see FRAME_FLAT), or None."""
    rings = list(_rings(plane, short))
    for rim, ring, inner in rings:
        further = rings[rim + 2] if rim + 2 < len(rings) else None
        line = further is not None and _flat(further[1], further[2], 0.5) and abs(further[2] - inner) >= CANVAS_STEP
        if not line and _background_ring(plane, ring, inner, BACKGROUND_BAND):
            return rim, inner
    return None


def _flat(values: np.ndarray, level: float, share: float) -> bool:
    """Whether at least `share` of `values` lie within FLAT_BAND of `level` with at most DIGITAL_NOISE levels of
    noise (1.4826 times their median absolute deviation): a digital image's flat background."""
    near = np.abs(values - level) <= FLAT_BAND
    return bool(near.mean() >= share) and 1.4826 * float(np.median(np.abs(values[near] - level))) <= DIGITAL_NOISE


def digital_view(gray: np.ndarray, alpha: np.ndarray | None = None, whole: bool = True) -> np.ndarray | None:
    """The uint8 [28, 28] view of a digital Fashion-MNIST-style image in any container, or None for a photo: a square
    picture, or one of another shape whose object spans 26 to 28 of its pixels (`_at_own_size`: a dataset image
    padded to another shape at its own size).

    A digital image has an opaque, flat black or white background (at least half of its border within
    FLAT_BAND levels of one level near black or white, or of any grey for a 28x28 grid whose object lies on one side
    of it: see ONE_SIDE; their noise at most DIGITAL_NOISE levels: no sensor
    noise, no uneven light, no gradient where its light clipped, no pattern along it: see DIGITAL_PIECES): a
    dataset image saved in another mode, format, size or polarity, with margins or not.
    Its view is the background-subtracted picture (a light background is negated, an object with less than
    FULL_PEAK contrast is stretched to 255), sampled at 28x28 (see `_sampled`): the whole picture, or the
    square around its object when margins were added (`_digital_crop`). A 28x28 picture keeps its placement, and so
    does one that is a 28x28 picture enlarged.
    `gray`: float luminance [H, W] on 0..255 (see `frame`); `alpha`: opacity 0..1 or None; `whole`: `gray` is the
    whole picture, not one found on a canvas or in a frame (whose edge is the picture's own, never a pattern's).
    """
    if alpha is not None and float(alpha.min()) < 0.99:
        return None
    border = gray[_border_coordinates(*gray.shape)]
    level = _mode_level(border)
    if not _flat(border, level, 0.5):
        return None
    light = level > 127
    grey = BACKGROUND_BAND < level < 255 - BACKGROUND_BAND
    if grey:
        darker, lighter = int((gray < level - ONE_SIDE_BAND).sum()), int((gray > level + ONE_SIDE_BAND).sum())
        if min(darker, lighter) > ONE_SIDE * max(darker, lighter):
            return None
        light = darker > lighter
    # A pattern printed in flat colours (a white-and-red gingham) may put half of the border on a colour near white or
    # black, under SURFACE_FIT of it, its other colours falling into DIGITAL_PIECES pieces or more along it: a photo
    # on a textured surface (on_texture).
    near = np.abs(border - level) <= FLAT_BAND
    if whole and near.mean() < SURFACE_FIT and _border_pieces(near) >= DIGITAL_PIECES:
        return None
    # A photo's backdrop lit past white (or black) is flat where it clipped; where its light comes into range
    # it follows a gradient, which a digital image's background never has (looked for when CENSORED_GAIN of the
    # border or more is off the level: less cannot make a censored fit).
    if np.mean(np.abs(border - level) > FLAT_BAND) >= CENSORED_GAIN:
        lit = np.clip(_border_surface(gray, Levels(0.0, 255.0, 1.0)).fitted, 0, 255)
        if float(np.abs(lit - level).max()) > FLAT_BAND:
            return None
    full = max(level if light else 255 - level, 1.0)  # the background's distance from the far end of the range
    contrast = np.clip((level - gray) if light else (gray - level), 0, None) * (255 / full)
    if contrast.shape[0] != contrast.shape[1] and not _at_own_size(contrast):
        return None
    if grey and (min(contrast.shape) < SIDE or not _grid_picture(contrast)):
        return None
    whole_contrast = contrast
    if contrast.shape != (SIDE, SIDE):
        crop, contrast = _digital_crop(contrast, whole)
        contrast = _sampled(contrast, crop)
    peak = float(contrast.max())
    # A faint scan, grey text or a faint drawing on paper: a photo's framing stretches its levels, and its cues are
    # judged; a tinted dataset image is a 28x28 grid.
    if peak < GRID_CONTRAST or (peak < DIGITAL_CONTRAST and not _grid_picture(whole_contrast)):
        return None
    if peak < FULL_PEAK:  # a dim object (a grey product on white) gets Fashion-MNIST's full range
        contrast = contrast * (255 / peak)
    return np.clip(np.rint(contrast), 0, 255).astype(np.uint8)


def _grid_picture(contrast: np.ndarray) -> bool:
    """Whether a digital picture is a 28x28 grid: 28x28, or square and a 28x28 picture enlarged (`_enlarged`)."""
    height, width = contrast.shape
    return (height, width) == (SIDE, SIDE) or (height == width and _enlarged(contrast))


def _at_own_size(contrast: np.ndarray) -> bool:
    """Whether a digital picture's object spans 26 to 28 pixels on its longer side (that of the pixels above
    DIGITAL_OBJECT, or of `_faint_box`'s): a dataset image at its own size, padded (to any shape)."""
    box = _object_box(contrast > DIGITAL_OBJECT)
    if box is None:
        return False
    top, bottom, left, right = _faint_box(contrast, box)
    return SIDE * MARGIN_SPAN <= max(bottom - top, right - left) <= SIDE


def _digital_crop(contrast: np.ndarray, whole: bool) -> tuple[tuple[int, int, int], np.ndarray]:
    """(top, left, side) of the square a digital picture is sampled from, and the contrast to sample: the whole picture,
    unless margins were added (its object spans less than MARGIN_SPAN of it, or more with thin margins all round: see
    below) and it is no 28x28 picture enlarged (GRID_ERROR): then the square around the object's box, centred as
    Fashion-MNIST centres (`_centred`), and in a picture GRID_FACTOR times 28 pixels or more, the contrast without the
    drop shadow the object casts, if any (a product photo on a flat backdrop: see fmnist.shadows). The box is that of
    the pixels above DIGITAL_OBJECT (`_digital_object`), or of fainter ones (`_faint_box`). A smaller picture with
    margins enlarged by a whole factor (`_reduction`: a dataset image on a larger canvas, then upscaled) is cut so at
    its own pixels, so that the 28x28 view samples the centres of those. `whole`: the picture is the whole file (see
    `digital_view`), so its edge may be a thin margin's."""
    height, width = contrast.shape
    whole_picture = (0, 0, max(height, width)), contrast
    shown = _digital_object(contrast)
    box = _object_box(shown)
    if box is None:
        return whole_picture
    top, bottom, left, right = box
    side = max(bottom - top, right - left)
    # An object spanning 26 to 28 of the view's 28 pixels is the whole picture's, unless the picture is a whole file
    # larger than 28 pixels whose faint pixels (above FAINT) reach none of its edges and it is no 28x28 picture
    # enlarged: thin margins were added (a figure saved with a little padding round a dark-on-white image, whose white
    # background meets the page's).
    if height == width and side >= MARGIN_SPAN * height:
        faint = _object_box(contrast > FAINT) or box
        margined = faint[0] > 0 and faint[2] > 0 and faint[1] < height and faint[3] < width
        if not (whole and height != SIDE and margined and not _enlarged(contrast)):
            return whole_picture
    if height == width >= GRID_FACTOR * SIDE and side * SIDE >= GRID_SPAN * height and _enlarged(contrast):
        return whole_picture
    if (reduced := _reduction(contrast, side)) is not None and (own := _object_box(_digital_object(reduced[1]))):
        scale = reduced[0]  # cut at the picture's own pixels, sampled on the enlargement's
        top, left, side = _centred(_faint_box(reduced[1], own))
        return (top * scale, left * scale, side * scale), contrast
    if min(height, width) >= GRID_FACTOR * SIDE and (lifted := shadows.without_shadow(contrast, shown)) is not None:
        contrast = lifted
        box = _object_box(_digital_object(contrast)) or box
    return _centred(_faint_box(contrast, box)), contrast


def _faint_box(contrast: np.ndarray, box: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
    """The box of a digital picture's object at its own pixels: `box` (of the pixels above DIGITAL_OBJECT), or when
    its longer side spans 26 to 28 pixels, the box of every pixel above FAINT if that spans 28 pixels at most (see
    FAINT)."""
    top, bottom, left, right = box
    if not SIDE * MARGIN_SPAN <= max(bottom - top, right - left) <= SIDE:
        return box
    faint = _object_box(contrast > FAINT)
    if faint is None or max(faint[1] - faint[0], faint[3] - faint[2]) > SIDE:
        return box
    return faint


def _centred(box: tuple[int, int, int, int]) -> tuple[int, int, int]:
    """(top, left, side) of the square around an object's `box` (top, bottom, left, right), centred as Fashion-MNIST
    centres: an odd leftover pixel of the 28x28 view above and to the left."""
    top, bottom, left, right = box
    side = max(bottom - top, right - left, 1)
    step = side / SIDE  # the pixels of the picture per pixel of the view: the padding is centred on the view's grid
    pad_top = (SIDE - round((bottom - top) / step) + 1) // 2
    pad_left = (SIDE - round((right - left) / step) + 1) // 2
    return top - round(pad_top * step), left - round(pad_left * step), side


def _digital_object(contrast: np.ndarray) -> np.ndarray:
    """bool [H, W]: the pixels of a digital picture's object, those above DIGITAL_OBJECT; in a picture GRID_FACTOR
    times 28 pixels or more, but for specks of fewer than SPECK of them."""
    shown = contrast > DIGITAL_OBJECT
    if min(contrast.shape) >= GRID_FACTOR * SIDE:
        # A speck of such pixels (8-connected) is noise, a photo's on a flat backdrop whose few levels of sensor
        # noise reach DIGITAL_OBJECT here and there, and would stretch the object's box to the whole picture.
        # Enlarged three times by nearest neighbour, a pixel of a 28x28 picture is a block of 9; a faint lone pixel
        # (under about 16 levels) enlarged smoothly may be a speck and fall out of the box.
        labels, _ = ndimage.label(shown, structure=np.ones((3, 3), bool))
        large = np.bincount(labels.ravel()) >= SPECK
        large[0] = False
        shown = large[labels]
    return shown


def _reduction(contrast: np.ndarray, side: int) -> tuple[int, np.ndarray] | None:
    """(scale, its samples [G, G]) of a square picture's contrast [S, S] whose object spans `side` pixels when it is a
    G x G picture with margins (G > 28) enlarged by a whole `scale` of 2 or more (S = G * scale), its object spanning
    about 26 to 30 of its own pixels (a Fashion-MNIST image's 28 or fewer, a smooth enlargement's blur round them):
    `_enlarged` on that grid. None for any other picture."""
    height, width = contrast.shape
    if height != width:
        return None
    for scale in range(max(2, side // (SIDE + 1)), side // (SIDE - 2) + 1):
        grid = height // scale
        if height % scale == 0 and grid > SIDE and _enlarged(contrast, grid):
            return scale, _sampled(contrast, (0, 0, height), grid)
    return None


def _enlarged(contrast: np.ndarray, grid: int = SIDE) -> bool:
    """Whether a square picture's contrast [S, S] is a `grid` x `grid` picture enlarged: rebuilt from its samples at the
    grid's centres (`_sampled`) by nearest neighbour or by cubic convolution (Keys 1981, a = -0.5, the kernel of
    Pillow's bicubic resize; clamped at the edges), the closer of the two lies within GRID_ERROR of it, as a mean
    absolute difference in units of the sum of its mean absolute steps between neighbouring pixels across and down."""
    size = contrast.shape[0]
    samples = _sampled(contrast, (0, 0, size), grid).astype(np.float64)
    contrast = contrast.astype(np.float64)
    step = size / grid
    centres = (np.arange(size) + 0.5) / step - 0.5  # each pixel's position on the grid, in grid pixels
    nearest = np.clip(np.floor((np.arange(size) + 0.5) / step), 0, grid - 1).astype(np.int64)
    base = np.floor(centres).astype(np.int64)
    weights = _keys(centres[:, None] - (base[:, None] + np.arange(-1, 3)))  # [S, 4]
    spread = np.zeros((size, grid))  # [S, grid]: a row of the picture from the grid's rows, likewise for columns
    np.add.at(spread, (np.arange(size)[:, None], np.clip(base[:, None] + np.arange(-1, 3), 0, grid - 1)), weights)
    rebuilt = (samples[np.ix_(nearest, nearest)], np.clip(spread @ samples @ spread.T, 0, None))
    steps = float(np.abs(np.diff(contrast, axis=0)).mean() + np.abs(np.diff(contrast, axis=1)).mean())
    error = min(float(np.abs(r - contrast).mean()) for r in rebuilt)
    return error <= GRID_ERROR * steps


def _keys(x: np.ndarray, a: float = -0.5) -> np.ndarray:
    """Keys' cubic convolution kernel at offsets `x` (pixels)."""
    x = np.abs(x)
    near = ((a + 2) * x - (a + 3)) * x * x + 1
    far = ((a * x - 5 * a) * x + 8 * a) * x - 4 * a
    return np.where(x <= 1, near, np.where(x < 2, far, 0.0))


def _sampled(contrast: np.ndarray, crop: tuple[int, int, int], grid: int = SIDE) -> np.ndarray:
    """The `crop` square of `contrast` (zero outside the picture) sampled at the centres of a `grid` x `grid` grid,
    bilinearly: an image that was upscaled (nearest, bilinear or bicubic: all interpolate) is sampled back at
    its own pixels' centres, so a dataset image upscaled by any factor comes back as it was (an averaging
    filter would blur it)."""
    top, left, side = crop
    step = side / grid
    centres = (np.arange(grid) + 0.5) * step - 0.5
    rows, cols = np.meshgrid(top + centres, left + centres, indexing="ij")
    return ndimage.map_coordinates(contrast, [rows, cols], order=1, mode="constant", cval=0.0)


# What the Python API's predict takes as one picture.
Picture: TypeAlias = "str | PathLike[str] | bytes | Image.Image | np.ndarray | torch.Tensor"

_ARRAY_MODES = {1: "L", 3: "RGB", 4: "RGBA"}  # channels -> Pillow mode


def picture_of(item: Picture, name: str = "image") -> Framed:
    """Any one picture the Python API takes, framed as a file would be (`load_picture`):

    - a path (str or os.PathLike) or a file's bytes;
    - a Pillow image, as decoded (apply `ImageOps.exif_transpose` first to a camera photo);
    - a uint8 array (numpy) [H, W], [H, W, 3] RGB or [H, W, 4] RGBA, or a uint8 tensor [H, W] or
      [C, H, W] with C = 1, 3 or 4 (torchvision's layout). A 28x28 grayscale image with a dark border, black in it
      and its brightest pixel at FULL_PEAK or more (the dataset's own images) is taken as it is.

    Raises FmnistError naming `name` (a path names itself) for another type, dtype or shape, and for a
    file or picture `load_picture` cannot read.
    """
    if isinstance(item, (str, PathLike)):
        return load_picture(Path(item))
    if isinstance(item, bytes):
        return load_picture(item, name)
    if isinstance(item, Image.Image):
        _check_size(name, item)  # from the header, before a lazily opened file's pixels are decoded
        try:
            item.load()  # opened lazily from a file that may be truncated or closed: read now, as load_picture does
        except (OSError, ValueError, SyntaxError, EOFError) as exc:
            raise FmnistError(f"{name}: image is truncated or corrupt ({_one_line(exc)})") from exc
        return frame_picture(item, name)
    if type(item).__module__.startswith("torch") and hasattr(item, "detach"):  # a tensor (torch may be unloaded)
        channels_first = item.ndim == 3 and item.shape[0] in _ARRAY_MODES
        if item.ndim in (2, 3):  # before a copy off the GPU
            _check_pixels(name, *(item.shape[1:3] if channels_first else item.shape[:2]))
        pixels = item.detach().cpu()
        if channels_first:
            pixels = pixels.permute(1, 2, 0)  # [C, H, W] -> [H, W, C]
        return frame_picture(_image_of_array(pixels.numpy(), name), name)
    if isinstance(item, np.ndarray):
        return frame_picture(_image_of_array(item, name), name)
    raise FmnistError(f"{name}: {type(item).__name__} is not a picture (a path, bytes, PIL image, array or tensor)")


def _image_of_array(pixels: np.ndarray, name: str) -> Image.Image:
    if pixels.dtype != np.uint8:
        raise FmnistError(
            f"{name}: {pixels.dtype} pixels; give uint8 values 0-255 (a float image in [0, 1]: (x * 255).round() "
            "as uint8)"
        )
    if pixels.ndim in (2, 3):
        _check_pixels(name, *pixels.shape[:2])  # before the copy Pillow makes of them
    if pixels.ndim == 3 and pixels.shape[2] == 1:  # [H, W, 1]: one channel, grey
        pixels = pixels[..., 0]
    if pixels.ndim == 3 and pixels.shape[2] in _ARRAY_MODES:
        return Image.fromarray(np.ascontiguousarray(pixels), _ARRAY_MODES[pixels.shape[2]])
    if pixels.ndim == 2:
        return Image.fromarray(np.ascontiguousarray(pixels), "L")
    raise FmnistError(
        f"{name}: shape {tuple(pixels.shape)} is not an image ([H, W], [H, W, 1], [H, W, 3] or [H, W, 4])"
    )


def frame(gray: np.ndarray, alpha: np.ndarray | None = None, step: float = 1.0) -> np.ndarray:
    """Fashion-MNIST framing of a picture: uint8 [28, 28], background 0, object's longer side 28 pixels, centred.

    `gray`: float luminance [H, W] on a 0..255 scale, of which the picture may use any part (a 10-bit
    scan in a 16-bit file, a low-contrast 8-bit scan); `step`: one level of the file's own format on
    that scale (1 for 8-bit, 255/65535 for 16-bit); `alpha`: opacity in 0..1 or None. An opaque
    picture is first stretched so that its measured range spans 0..255 (see `_stretch`), so the
    thresholds below are relative to the levels the picture actually uses. A picture where no object
    stands out of the noise gives an all-zero image.
    """
    return frame_with_cues(gray, alpha, step)[0]


def frame_with_cues(
    gray: np.ndarray,
    alpha: np.ndarray | None = None,
    step: float = 1.0,
    colour: Callable[[], np.ndarray] | None = None,
) -> tuple[np.ndarray, Cues]:
    """`frame`, and the Cues measured on the way. `colour`: gives the picture's colour planes float [h, w, C]
    (any size of `gray`'s aspect), asked for only when the object lies on a textured surface; without it
    `gray` stands for them."""
    border_fit, noise, textured, on_surface = 1.0, 0.0, False, False
    colour = functools.cache(colour) if colour is not None else None  # read once at most
    if alpha is not None and (alpha < 0.5).any():
        contrast = _cutout_contrast(gray, alpha)
        smooth: np.ndarray | None = _smooth(contrast)
        mask = _smooth(alpha) > 0.5
    else:
        if alpha is not None:  # opaque but for a few pixels: those show the white page behind
            gray = gray * alpha + 255 * (1 - alpha)
        gray, smooth = _without_light_edges(gray, colour)
        contrast, noise, border_fit, pieces, off_surface = _background_contrast(*_stretch(gray, smooth, step))
        textured = on_texture(border_fit, noise, pieces, off_surface)
        smooth = _smooth(contrast)
        threshold = _threshold(smooth, noise)
        mask = _standing_out(contrast, smooth, threshold)
        # On a textured surface an object may stand out by its colour or texture alone, below the surface's
        # noise in brightness (a dark shoe on grass): it is looked for there before the picture is called empty.
        found = None
        if textured:
            found = segmentation.object_mask(colour() if colour is not None else gray[..., None], gray.shape)
        if found is not None:
            contrast, mask, smooth, on_surface = _on_surface(contrast, found), found, None, True
        elif smooth.max() <= _noise_floor(noise):
            mask[:] = False
        elif (lifted := shadows.without_shadow(contrast, mask)) is not None:  # a drop shadow is no part of the object
            contrast = lifted
            smooth = _smooth(contrast)
            mask = _standing_out(contrast, smooth, threshold)
    judged = _one_of_a_pair(mask)  # the cues judge what was found, its caption too (evidence against a garment)
    mask = _without_thin_parts(_without_caption(judged))
    box = _object_box(mask)
    empty = np.zeros((SIDE, SIDE), dtype=np.uint8), Cues(border_fit, noise, 0.0, 0.0, 0.0, textured)
    if box is None:
        return empty
    cues = _object_cues(judged, _object_box(judged) or box, border_fit, noise, textured)
    top, bottom, left, right = box
    contrast = contrast[top:bottom, left:right]
    turned = _upright(contrast, mask[top:bottom, left:right], on_surface)
    if turned is not None:
        contrast, smooth = turned, None
    # The object's strongest contrast becomes 255, as in Fashion-MNIST. Taken before resizing and
    # smoothed: resizing blurs a dark detail, and a single noisy pixel must not set the scale.
    peak = float((smooth[top:bottom, left:right] if smooth is not None else _smooth(contrast)).max())
    if peak <= 0:
        return empty
    framed = _fit(contrast, 0.0) * (255 / peak)
    # Resizing may leave the view's brightest pixel under FULL_PEAK (a bright detail averaged with its surroundings):
    # it then gets the full range every dataset image has, and read again (--save-inputs) it is taken as it is.
    strongest = float(framed.max())
    if 0 < strongest < FULL_PEAK:
        framed = framed * (255 / strongest)
    return _facing_left(np.clip(np.rint(framed), 0, 255).astype(np.uint8)), cues


def _facing_left(view: np.ndarray) -> np.ndarray:
    """The uint8 [28, 28] `view` mirrored, its box kept where it was, when it shows a shoe facing right (see FACING);
    else `view` itself."""
    found = _facing(view)
    if found is None or found[0] > -FACING:
        return view
    _, left, right = found
    return np.roll(view[:, ::-1], left - (SIDE - right), axis=1)


def facing_offset(view: np.ndarray) -> float | None:
    """The facing offset of a uint8 [28, 28] view (see FACING): the intensity centroid of the top half of its
    object's rows (pixels above FACING_LEVEL), in widths of the object's box from its middle, -0.5..0.5; None for a
    blank view."""
    found = _facing(view)
    return None if found is None else found[0]


def _facing(view: np.ndarray) -> tuple[float, int, int] | None:
    """(facing offset, first column, column past the last) of a uint8 [28, 28] view's object; None for a blank view."""
    rows, cols = np.flatnonzero((view > FACING_LEVEL).any(1)), np.flatnonzero((view > FACING_LEVEL).any(0))
    if rows.size == 0:
        return None
    top, left, right = int(rows[0]), int(cols[0]), int(cols[-1]) + 1
    upper = view[top : (top + int(rows[-1]) + 1) // 2, left:right].astype(np.float64).sum(0)
    if upper.sum() <= 0:
        return None
    return float((upper * (np.arange(right - left) + 0.5)).sum() / upper.sum()) / (right - left) - 0.5, left, right


def _without_light_edges(
    gray: np.ndarray, colour: Callable[[], np.ndarray] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """`gray` with up to shading.EDGES straight edges of light taken out (fmnist.shading), one after the other, and
    its box mean (`_smooth`). `colour`: as frame_with_cues's."""
    border, smooth = _border_coordinates(*gray.shape), _smooth(gray)
    for _ in range(shading.EDGES):
        lifted = shading.without_light_edge(gray, smooth, border, colour)
        if lifted is None:
            break
        gray, smooth = lifted, _smooth(lifted)
    return gray, smooth


def _standing_out(contrast: np.ndarray, smooth: np.ndarray, threshold: float) -> np.ndarray:
    """bool [H, W]: the object's pixels, where the smoothed contrast exceeds `threshold`; smoothing spreads the
    object by its radius, so the pixels themselves must also stand out (by half of it)."""
    return (smooth > threshold) & (contrast > threshold / 2)


def _without_caption(mask: np.ndarray) -> np.ndarray:
    """bool [H, W] `mask` without its lines of caption (see CAPTION_HEIGHT): the bands of rows holding something at its
    bottom (then at its top), each short beside the tallest band (the object) and made of CAPTION_PIECES marks or more
    (8-connected), apart from the band beyond them by empty rows, CAPTION_GAP or more and at least half as many as the
    nearest one's own (a line of text under a picture; a shoe's faint sole a row or two under it is no caption). Text
    alone, lines of one height, is left as it is."""
    rows = np.concatenate([[0], mask.any(1).astype(np.int8), [0]])
    edges = np.flatnonzero(np.diff(rows))
    bands = list(zip(edges[::2].tolist(), edges[1::2].tolist(), strict=True))
    if len(bands) < 2:
        return mask
    tallest = max(bottom - top for top, bottom in bands)

    def lettered(top: int, bottom: int) -> bool:
        if bottom - top > CAPTION_HEIGHT * tallest:
            return False
        return ndimage.label(mask[top:bottom], structure=np.ones((3, 3), bool))[1] >= CAPTION_PIECES

    kept = mask.copy()
    for ends in (bands[::-1], bands):
        run = 0
        while run < len(ends) - 1 and lettered(*ends[run]):
            run += 1
        if run == 0:
            continue
        (top, bottom), (beyond_top, beyond_bottom) = ends[run - 1], ends[run]
        gap = top - beyond_bottom if top > beyond_top else beyond_top - bottom
        if gap >= max(CAPTION_GAP, (bottom - top) / 2):
            for first, last in ends[:run]:
                kept[first:last] = False
    return kept


def _one_of_a_pair(mask: np.ndarray) -> np.ndarray:
    """bool [H, W] `mask`, or its larger piece when it shows a pair side by side (see PAIR_SHARE); of two pieces of one
    size, the first in raster order (scipy.ndimage.label's)."""
    labels, count = ndimage.label(mask, structure=np.ones((3, 3), bool))
    if count < 2:
        return mask
    sizes = np.bincount(labels.ravel())[1:]
    first, second = np.argsort(-sizes, kind="stable")[:2]
    if sizes[first] + sizes[second] < PAIR_SHARE * sizes.sum() or sizes[second] < PAIR_BALANCE * sizes[first]:
        return mask
    boxes = ndimage.find_objects(labels)
    pair = boxes[first], boxes[second]
    (rows_a, cols_a), (rows_b, cols_b) = pair
    side_by_side = cols_a.stop <= cols_b.start or cols_b.stop <= cols_a.start
    shared = min(rows_a.stop, rows_b.stop) - max(rows_a.start, rows_b.start)
    level = shared >= PAIR_OVERLAP * min(rows_a.stop - rows_a.start, rows_b.stop - rows_b.start)
    wide = all(cols.stop - cols.start >= PAIR_ASPECT * (rows.stop - rows.start) for rows, cols in pair)
    return labels == first + 1 if side_by_side and level and wide else mask


def _without_thin_parts(mask: np.ndarray) -> np.ndarray:
    """bool [H, W] `mask` cut to the box of what survives its opening (an erosion, then a dilation) by a square of
    side 2r+1, r = floor(THIN_PART x the longer side of its box / 2), outside the box counted as background: a part
    thinner than the square that sticks out above or to a side by more than 2r (see THIN_PART) is cut off. `mask` as
    it is when r < 1, or when the opening keeps less than THIN_KEEP of its pixels."""
    box = _object_box(mask)
    if box is None:
        return mask
    top, bottom, left, right = box
    reach = int(max(bottom - top, right - left) * THIN_PART / 2)
    if reach < 1:
        return mask
    inside = mask[top:bottom, left:right]
    opened = inside
    for operation in (ndimage.minimum_filter1d, ndimage.maximum_filter1d):
        for axis in (0, 1):
            opened = operation(opened, 2 * reach + 1, axis=axis, mode="constant", cval=False)
    if opened.sum() < THIN_KEEP * inside.sum():
        return mask
    core = _object_box(opened)
    assert core is not None  # the opening kept half of the pixels or more
    # The top and the two sides move in to what the opening keeps when they move by more than 2r (about half a pixel of
    # the view: a ragged rim or a sleeve's narrowing tip is no part sticking out); the bottom stays.
    height, width = bottom - top, right - left
    sides = [0, height, 0, width]
    for side in (0, 2, 3):
        if abs(core[side] - sides[side]) > 2 * reach:
            sides[side] = core[side]
    if sides == [0, height, 0, width]:
        return mask
    cut = np.zeros_like(mask)
    rows, cols = slice(top + sides[0], top + sides[1]), slice(left + sides[2], left + sides[3])
    cut[rows, cols] = mask[rows, cols]
    return cut


def on_texture(border_fit: float, noise: float, pieces: int, off_surface: float) -> bool:
    """Whether the picture's surface is textured or shaded (see SURFACE_NOISE), from the plain method's fit: the
    share of the border on the surface, the surface's noise (grey levels), the number of pieces the rest of the
    border falls into (`_border_pieces`) and how far that rest lies from the surface (grey levels, the median)."""
    if border_fit >= SURFACE_FIT:
        return noise > SURFACE_NOISE
    return noise >= SURFACE_MIN_NOISE or pieces >= SURFACE_PIECES or (noise >= SHADED_NOISE and off_surface < SHADING)


def _on_surface(contrast: np.ndarray, found: np.ndarray) -> np.ndarray:
    """The contrast of an object found on a textured surface (segmentation.object_mask): its polarity taken
    from the object's own pixels (a light garment on a dark table), zero off the object."""
    sign = 1.0 if float(contrast[found].mean()) >= 0 else -1.0
    return np.where(found, sign * contrast, 0.0).astype(np.float32)


def _upright(contrast: np.ndarray, mask: np.ndarray, on_surface: bool) -> np.ndarray | None:
    """The object's contrast (cut to its box, as its boolean `mask`) turned upright (segmentation.tilt, told
    whether the object was separated from a textured surface) and cut to its new box; None when it stands
    upright already."""
    angle = segmentation.tilt(mask, on_surface)
    if angle == 0.0:
        return None
    turned = [
        np.asarray(Image.fromarray(plane.astype(np.float32), "F").rotate(angle, Image.Resampling.BILINEAR, expand=True))
        for plane in (contrast, mask)
    ]
    box = _object_box(turned[1] > 0.5)
    if box is None:
        return None
    top, bottom, left, right = box
    return turned[0][top:bottom, left:right]


def _object_cues(
    mask: np.ndarray, box: tuple[int, int, int, int], border_fit: float, noise: float, textured: bool
) -> Cues:
    top, bottom, left, right = box
    inside = mask[top:bottom, left:right]
    pixels = int(inside.sum())
    labels, count = ndimage.label(inside)
    largest = int(np.bincount(labels.ravel())[1:].max()) if count else 0
    return Cues(
        border_fit,
        noise,
        (bottom - top) * (right - left) / mask.size,
        pixels / inside.size,
        largest / max(pixels, 1),
        textured,
    )


def export_png(image: np.ndarray | torch.Tensor, path: str | Path) -> None:
    """Write a uint8 [H, W] array or CPU tensor (e.g. a 28x28 Fashion-MNIST image) as a grayscale PNG, atomically."""
    pixels = np.asarray(image)
    if pixels.dtype != np.uint8 or pixels.ndim != 2:
        raise ValueError(f"expected a 2-D uint8 array, got {pixels.dtype} of shape {tuple(pixels.shape)}")
    with atomic_path(path) as tmp:
        Image.fromarray(pixels).save(tmp, format="PNG")


def _decode(source: Path | bytes, name: str) -> Image.Image:
    """Open and fully decode `source`, upright per its EXIF tag, turning each failure into an FmnistError."""
    if isinstance(source, bytes):
        if not source:
            raise FmnistError(f"{name}: empty, not an image")
        opened = io.BytesIO(source)
    else:
        _check_file(source, name)
    try:
        with warnings.catch_warnings():
            # Pillow warns about large images at open; MAX_PIXELS below is our own, stricter limit.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(opened if isinstance(source, bytes) else source) as image:
                _reduce(image)
                _check_size(name, image)
                image.load()  # decode now, so that a truncated file fails here and not later
                return ImageOps.exif_transpose(image)
    except Image.DecompressionBombError as exc:
        raise FmnistError(f"{name}: image is larger than the {MAX_PIXELS:,} pixels allowed") from exc
    except UnidentifiedImageError as exc:
        raise FmnistError(f"{name}: not an image file that Pillow can read") from exc
    except PermissionError as exc:  # an OSError, but the file's access, not its content
        raise FmnistError(f"{name}: cannot read: permission denied") from exc
    # Pillow's decoders report damaged data with any of these, depending on the format.
    except (OSError, ValueError, EOFError, SyntaxError) as exc:
        raise FmnistError(f"{name}: image is truncated or corrupt ({_one_line(exc)})") from exc


def _check_file(path: Path, name: str) -> None:
    """FmnistError unless `path` is a file with something in it, saying why: no such file (or a link to none), a
    loop of symbolic links, a file where a folder should be, a directory, a FIFO or device, an empty file."""
    try:
        status = path.stat()
    except FileNotFoundError:
        link = " (a symbolic link to none)" if path.is_symlink() else ""
        raise FmnistError(f"{name}: no such file{link}") from None
    except OSError as e:  # ELOOP, ENOTDIR ("a.png/b"), ENAMETOOLONG: the system's own words
        raise FmnistError(f"{name}: {(e.strerror or str(e)).lower()}") from None
    if stat.S_ISDIR(status.st_mode):
        raise FmnistError(f"{name}: is a directory, not an image")
    if not stat.S_ISREG(status.st_mode):  # a FIFO or a device would block the read, or never end it
        raise FmnistError(f"{name}: not a regular file, not an image")
    if status.st_size == 0:
        raise FmnistError(f"{name}: empty, not an image")


def _reduce(image: Image.Image) -> None:
    """Have a JPEG decode at 1/2, 1/4 or 1/8 scale (Pillow's `draft`, libjpeg's DCT scaling) when its longer
    side stays at least DECODE_SIDE: less memory and time, and the same 28x28 result. Other formats: no-op."""
    if image.format not in ("JPEG", "MPO"):  # MPO: a phone's multi-picture JPEG
        return
    ratio = DECODE_SIDE / max(image.size)
    if ratio < 1:
        image.draft(None, (max(1, int(image.width * ratio)), max(1, int(image.height * ratio))))


def _check_size(name: str, image: Image.Image) -> None:
    # The size comes from the header (reduced by _reduce), so this runs before any pixel is decoded.
    jpeg = image.format in ("JPEG", "MPO")
    hint = " even at 1/8 scale" if jpeg else ""
    advice = "" if jpeg else ", or save it as JPEG, which is decoded at reduced size"
    _check_pixels(name, image.height, image.width, "image decodes to ", hint, advice)


def _check_pixels(name: str, height: int, width: int, what: str = "", hint: str = "", advice: str = "") -> None:
    """FmnistError for a picture of no pixels or of more than MAX_PIXELS (an array's or a decoded file's)."""
    if width == 0 or height == 0:
        raise FmnistError(f"{name}: an empty picture ({width}x{height} pixels)")
    if width * height > MAX_PIXELS:
        raise FmnistError(
            f"{name}: {what}{width}x{height} = {width * height:,} pixels{hint}, more than the {MAX_PIXELS:,} "
            f"allowed; scale it down{advice}"
        )


def _already_fashion_mnist(image: Image.Image) -> np.ndarray | None:
    """The uint8 [28, 28] pixels of a picture in the dataset's own format, else None: 28x28 8-bit grey (L, or RGB or
    opaque RGBA with R = G = B, as a dataset image saved in colour decodes, a JPEG's too) with a dark border, black
    in it (see DATASET_BLACK) and an object at FULL_PEAK (one with its contrast lowered is stretched back by
    `digital_view`)."""
    if image.size != (SIDE, SIDE) or image.mode not in ("L", "RGB", "RGBA"):
        return None
    # Checked on every upload, so kept to a few array operations: most border pixels dark, one pixel black.
    pixels = np.asarray(image)
    if pixels.ndim == 3:
        grey = (pixels[..., 1] == pixels[..., 0]).all() and (pixels[..., 2] == pixels[..., 0]).all()
        if not grey or (image.mode == "RGBA" and (pixels[..., 3] != 255).any()):
            return None
        pixels = pixels[..., 0]
    border = np.concatenate([pixels[0], pixels[-1], pixels[1:-1, 0], pixels[1:-1, -1]])
    dark = np.count_nonzero(border < 32) * 2 > border.size
    own = dark and int(pixels.min()) < DATASET_BLACK and int(pixels.max()) >= FULL_PEAK
    return np.array(pixels, dtype=np.uint8) if own else None


def _planes(image: Image.Image) -> tuple[np.ndarray, np.ndarray | None, float]:
    """Luminance (float32 on a 0..255 scale) and opacity (0..1, or None when opaque) at most WORK_SIDE pixels
    on a side, and one level of the image's format on that scale."""
    scale = min(1.0, WORK_SIDE / max(image.size))
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    if image.mode.startswith("I") or image.mode == "F":
        levels, step = _high_depth_levels(image)
        gray = Image.fromarray(levels, "F")
        return np.asarray(_resize(gray, size), dtype=np.float32), None, step
    if image.mode in _ALPHA_MODES or "transparency" in image.info:
        la = image.convert("RGBA").convert("LA")  # via RGBA: P with a transparent index, La, PA
        la = _resize(la, size)  # Pillow resizes LA with premultiplied alpha: no dark fringes
        values = np.asarray(la, dtype=np.float32)
        return values[..., 0], values[..., 1] / 255, 1.0
    return np.asarray(_resize(image.convert("L"), size), dtype=np.float32), None, 1.0


def _colour(image: Image.Image, gray: np.ndarray) -> np.ndarray:
    """The picture's colour planes for segmentation.object_mask, float32 [h, w, C]: its RGB planes at most
    segmentation.SEGMENT_SIDE pixels on the longer side, or for a mode without colour its working luminance
    `gray` [H, W] (C = 1)."""
    scale = min(1.0, segmentation.SEGMENT_SIDE / max(image.size))
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    colourless = image.mode.startswith("I") or image.mode in ("F", "1", "L", "LA", "La")
    planes = gray[..., None] if colourless else _resize(image.convert("RGB"), size)
    return np.asarray(planes, dtype=np.float32)


def _high_depth_levels(image: Image.Image) -> tuple[np.ndarray, float]:
    """16/32-bit integer and float pixels as float32 on a 0..255 scale, keeping their precision; and one level
    of the data on that scale (a float image counts as 16-bit: its precision is not a level of its values). Integer
    pixels are scaled by the range of the data's own depth (DATA_BITS), not the container's."""
    values = np.nan_to_num(np.asarray(image, dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    if image.mode == "F":
        low, high = float(values.min()), float(values.max())
        if low >= 0 and high <= 1:  # the usual convention for float images
            return values * 255, 255 / 65535
        if low >= 0 and high <= 255:
            return values, 255 / 65535
        return (values - low) * (255 / max(high - low, 1e-12)), 255 / 65535
    values = values.clip(min=0)
    # The data's own depth: the fewest of DATA_BITS that hold its largest value (a 12-bit sensor's levels in a 16-bit
    # file, 8-bit levels stored unscaled in a 16- or 32-bit array); "I" is 32-bit but may hold more.
    largest = float(values.max())
    full_scale = next((2.0**bits - 1 for bits in DATA_BITS if largest <= 2**bits - 1), largest)
    return values * (255 / full_scale), 255 / full_scale


class Levels(NamedTuple):
    """The file format's black and white and one of its levels, on the scale of a working plane: where light too
    dark or too bright was clipped, and how finely."""

    black: float
    white: float
    step: float


def _stretch(gray: np.ndarray, smooth: np.ndarray, step: float) -> tuple[np.ndarray, Levels]:
    """`gray` mapped linearly so that its measured range (its box mean `smooth`: single noisy pixels do not count) spans
    0..255, the gain capped so that one level of the file's format becomes at most MIN_CONTRAST levels:
    contrast finer than the format can hold is never taken for an object. Also the format's Levels on the new
    scale.

    Scanners, cameras and microscopes often write 10 or 12 bits of data in a 16-bit file; at its
    nominal range such a picture would be nearly flat and fall below every threshold.
    """
    low, high = float(smooth.min()), float(smooth.max())
    # At most MIN_CONTRAST, with 1 % to spare for the rounding of float32 planes (a level near white in 16 bits is
    # held to a few parts in a thousand): one level of the format never stands out as an object.
    gain = np.float32(max(min(255 / max(high - low, 1e-12), MIN_CONTRAST / step * 0.99), 1.0))
    return (gray - low) * gain, Levels(-low * float(gain), (255 - low) * float(gain), step * float(gain))


def _resize(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    if image.size == size:
        return image
    return image.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)


def _on_black(gray: np.ndarray, alpha: np.ndarray) -> np.ndarray | None:
    """The digital view (`digital_view`) of a picture with a transparent background composited over black, when the
    own levels of its opaque part (alpha 0.5 or more) fade toward black at its edge: its rim (the opaque pixels next
    to transparent ones) darker on average than FADE of the mean inside it, its alpha aside (a feathered edge fades
    any cut-out once composited). A dataset image saved with its black made transparent; not a cut-out product, whose
    own colour reaches its edge or fades into the light backdrop it was cut from (framed as a cut-out:
    `_cutout_contrast`). None when it does not fade so, or composited it is no digital picture. `gray`: luminance
    [H, W] on 0..255; `alpha`: opacity 0..1."""
    inside = alpha >= 0.5
    if inside.all():
        return None
    rim = inside & ~ndimage.binary_erosion(inside, border_value=1)
    core = inside & ~rim
    if not core.any() or float(gray[rim].mean()) >= FADE * float(gray[core].mean()):
        return None
    return digital_view(gray * alpha)


def _in_alpha(gray: np.ndarray, alpha: np.ndarray) -> np.ndarray | None:
    """The digital view (`digital_view`) of a picture in white or black whose levels are all in its alpha (a dataset
    image saved as a white picture, the image its opacity), composited over black when the colour is white, else over
    white: its luminance within DIGITAL_NOISE levels of one level, within BACKGROUND_BAND of white or black, wherever
    it shows (a cut-out in a mid grey is no such picture: negated, it is a darker garment), and at least GRADED of its
    shown pixels neither transparent nor opaque (between 0.05 and 0.95; a cut-out's alpha is mostly opaque), its
    opacity reaching FULL_PEAK as every dataset image's levels do (a translucent overlay's does not). None for any
    other picture. `gray`: luminance [H, W] on 0..255; `alpha`: opacity 0..1."""
    shown = alpha > 0.05
    if not shown.any():
        return None
    levels = gray[shown]
    level = float(levels.mean())
    if float(levels.max() - levels.min()) > DIGITAL_NOISE or BACKGROUND_BAND < level < 255 - BACKGROUND_BAND:
        return None
    if float(np.mean(alpha[shown] < 0.95)) < GRADED or float(alpha.max()) < FULL_PEAK / 255:
        return None
    far = 0.0 if level > 127 else 255.0
    return digital_view(gray * alpha + far * (1 - alpha))


def _cutout_contrast(gray: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Contrast of a cut-out on transparency, with alpha as the object mask.

    Fashion-MNIST's products were photographed on white, so the cut-out is negated as if on
    white; but a light product (a white sneaker) would then all but vanish, so every object pixel
    keeps at least SILHOUETTE_FLOOR of the object's strongest contrast: its silhouette stays.
    """
    inside = alpha >= 0.5
    if not inside.any():  # fully transparent: no object
        return np.zeros_like(gray)
    negated = 255 - gray
    strongest = max(float(np.percentile(negated[inside], 99)), 1.0)
    return np.maximum(negated, SILHOUETTE_FLOOR * strongest) * alpha


def _background_contrast(gray: np.ndarray, levels: Levels) -> tuple[np.ndarray, float, float, int, float]:
    """Contrast with the background (background 0, object positive), the noise level of the smoothed contrast,
    the share of border pixels on the background surface, the pieces the others fall into (`_border_pieces`) and
    their median distance from it. `levels`: the format's, on `gray`'s scale."""
    smooth = _smooth(gray)
    background, noise, border_fit, pieces, off_surface = _background_surface(smooth, levels)
    difference = smooth - background
    threshold = _threshold(difference, noise)
    standing_out = difference[np.abs(difference) > threshold]
    # The object is darker (a product photo) or lighter (a sketch, a dark studio) than the
    # background: whichever carries more contrast. Edges do not matter, so an object that
    # touches or crosses the border gets the same answer.
    sign = -1.0 if standing_out.sum() < 0 else 1.0
    return sign * (gray - background), noise, border_fit, pieces, off_surface


def _background_surface(smooth: np.ndarray, levels: Levels) -> tuple[np.ndarray, float, float, int, float]:
    """Background level, a quadratic surface in x and y (a gradient of light, vignetting), fitted to the
    border pixels that belong to it (`_border_surface`; clipped to the format's black and white where the fit
    took clipped light as censored); the noise of the border pixels on it in range; their share of the
    border; the pieces the others fall into (`_border_pieces`); and the median distance of those others from it
    (0 when there are none)."""
    height, width = smooth.shape
    fit = _border_surface(smooth, levels)
    in_range = fit.inliers & ~fit.free
    noise = 1.4826 * float(np.median(np.abs(fit.residual[in_range]))) if in_range.any() else 0.0
    gx = np.arange(width, dtype=np.float32) / max(width - 1, 1) - 0.5
    gy = np.arange(height, dtype=np.float32) / max(height - 1, 1) - 0.5
    surface = _surface_terms(gx[None, :], gy[:, None]) @ fit.coef
    if fit.censored:
        surface = np.clip(surface, levels.black, levels.white)
    share = float(fit.inliers.mean()) if fit.inliers.size else 0.0
    off = ~fit.inliers
    off_surface = float(np.median(np.abs(fit.residual[off]))) if off.any() else 0.0
    return surface.astype(np.float32), noise, share, _border_pieces(fit.inliers), off_surface


def _border_pieces(inliers: np.ndarray, run: int = PIECE_RUN) -> int:
    """How many runs of `run` or more border pixels off the surface there are, going round the border (bool [n]
    `inliers`, in `_border_coordinates` order, the last pixel next to the first); 1 when none is on it."""
    if inliers.all():
        return 0
    if not inliers.any():
        return 1
    off = np.roll(~inliers, -int(np.argmax(inliers)))  # starts on the surface, so no run wraps round
    edges = np.diff(np.concatenate(([0], off.view(np.int8), [0])))
    return int(((np.flatnonzero(edges == -1) - np.flatnonzero(edges == 1)) >= run).sum())


class BorderFit(NamedTuple):
    """A background surface fitted to a picture's border pixels (`_border_surface`), n of them."""

    coef: np.ndarray  # [6], of `_surface_terms`
    fitted: np.ndarray  # [n]: the surface's level at each border pixel, in `_border_coordinates` order
    residual: np.ndarray  # [n]: the pixel's level less the surface's; 0 where clipped light lies beyond it
    inliers: np.ndarray  # [n] bool: on the surface
    free: np.ndarray  # [n] bool: clipped light beyond the surface (none in a plain fit)
    censored: bool  # whether clipped light was taken as censored


def _border_surface(smooth: np.ndarray, levels: Levels) -> BorderFit:
    """The background's quadratic surface fitted to the border of `smooth` [H, W].

    Starts at the most common border level (not the median: an object may cover more than half
    of the border) and grows the set of background pixels along a gradient of light (`_grown`). Where the
    picture clipped light at its black or white (`levels`, the format's on `smooth`'s scale), a backdrop lit
    past white is white up to where its gradient comes into range: a second fit takes a clipped pixel as
    censored, agreeing with any surface beyond its limit (the censored regression of Tobin, 1958), and is
    chosen when it puts CENSORED_GAIN more of the border on the surface. A black background with an object
    touching the border is clipped too: there the censored fit may bend to the object's faint edge pixels, which
    rarely make CENSORED_GAIN of the border (tests/test_realdata.py: of the first 2,000 test images and their
    negatives, as many are refused as digital images as with the plain fit alone).
    """
    height, width = smooth.shape
    ys, xs = _border_coordinates(height, width)
    x, y = xs / max(width - 1, 1) - 0.5, ys / max(height - 1, 1) - 0.5
    values = smooth[ys, xs]
    design = _surface_terms(x, y)
    start = np.zeros(design.shape[1])
    start[0] = _mode_level(values)
    # Noise from neighbour-to-neighbour steps along the border: an object or a gradient adds few.
    steps = np.abs(np.diff(values))
    tolerance = max(4 * 1.4826 * float(np.median(steps)) if steps.size else 0.0, 4.0)
    unclipped = np.zeros(values.shape, bool)
    plain = _grown(values, design, start, tolerance, (unclipped, unclipped), PLAIN_ROUNDS, 0.0)
    band = CLIPPED_BAND * levels.step
    clipped = values <= np.float64(levels.black + band), values >= np.float64(levels.white - band)
    if not (clipped[0].any() or clipped[1].any()) or (~plain.inliers).mean() < CENSORED_GAIN:
        return plain  # nothing clipped, or too little off the plain surface for the censored fit to gain
    # The first levels in range beyond the clipped band must be within reach of a fit at its limit.
    censored = _grown(values, design, start, max(tolerance, 2 * band), clipped, FIT_ROUNDS, SETTLED)
    return censored if censored.inliers.mean() >= plain.inliers.mean() + CENSORED_GAIN else plain


def _grown(
    values: np.ndarray,
    design: np.ndarray,
    start: np.ndarray,
    tolerance: float,
    clipped: tuple[np.ndarray, np.ndarray],
    rounds: int,
    settled: float,
) -> BorderFit:
    """Least squares of `values` [n] on `design` [n, 6] over the pixels within `tolerance` of the fit, from the
    coefficients `start`, for `rounds` rounds or until no fitted level moves by `settled`; the pixels `clipped`
    (dark, bright) beyond the fit are imputed at its level with the small weight CLIPPED_WEIGHT (a proximal step:
    the fit moves freely along the light in range, and where only clipped pixels hold it, it stays). Solved
    about the starting level, so that a border holding too few kinds of pixel to pin down every term leaves the
    rest at that level, not at 0."""
    dark, bright = clipped

    def free_of(fitted: np.ndarray) -> np.ndarray:
        return (bright & (fitted >= values)) | (dark & (fitted <= values))

    coef, offset = start, float(start[0])
    fitted = design @ coef
    for _ in range(rounds):
        free = free_of(fitted)
        seen = np.where(free, fitted, values)
        inliers = np.abs(seen - fitted) <= tolerance
        if inliers.sum() < 3:
            break
        weight = np.where(free, np.sqrt(CLIPPED_WEIGHT), 1.0)[inliers, None]
        coef = np.linalg.lstsq(design[inliers] * weight, (seen[inliers] - offset) * weight[:, 0], rcond=None)[0]
        coef[0] += offset
        before, fitted = fitted, design @ coef
        if np.abs(fitted - before).max() < settled:
            break
    free = free_of(fitted)
    residual = np.where(free, 0.0, values - fitted)
    return BorderFit(coef, fitted, residual, np.abs(residual) <= tolerance, free, bool(dark.any() or bright.any()))


def _surface_terms(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """[..., 6]: 1, x, y, x^2, y^2, xy. All six are pinned down by the four sides of a picture."""
    x, y = np.broadcast_arrays(x, y)
    return np.stack([np.ones_like(x), x, y, x * x, y * y, x * y], axis=-1)


def _mode_level(values: np.ndarray) -> float:
    """The most common level, on a histogram smoothed over +-3 levels so that noise does not split the peak."""
    counts = np.bincount(np.clip(np.rint(values), 0, 255).astype(np.int64), minlength=256).astype(np.float64)
    counts = np.convolve(counts, np.ones(7), mode="same")
    peak = int(counts.argmax())
    near = values[np.abs(values - peak) <= 3]
    return float(np.median(near)) if near.size else float(peak)


def _noise_floor(noise: float) -> float:
    return max(NOISE_SIGMAS * noise, MIN_CONTRAST)


def _threshold(contrast: np.ndarray, noise: float) -> float:
    peak = float(np.percentile(np.abs(contrast), 99.9)) if contrast.size else 0.0
    return max(_noise_floor(noise), PEAK_FRACTION * peak)


def _object_box(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """(top, bottom, left, right) of the object pixels in `mask`, or None when there are none."""
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    if rows.size == 0:
        return None
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def _smooth(values: np.ndarray, radius: int = SMOOTH_RADIUS) -> np.ndarray:
    """Box mean over (2*radius+1)^2 pixels, the edges padded by replication; via an integral image."""
    size = 2 * radius + 1
    padded = np.pad(values.astype(np.float64), radius, mode="edge")
    integral = np.pad(padded.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    height, width = values.shape
    total = (
        integral[size : size + height, size : size + width]
        - integral[:height, size : size + width]
        - integral[size : size + height, :width]
        + integral[:height, :width]
    )
    return (total / size**2).astype(np.float32)


def _border_coordinates(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Row and column indices of the outermost pixels, once each, going round the picture."""
    if height < 3 or width < 3:
        ys, xs = np.indices((height, width))
        return ys.ravel(), xs.ravel()
    top = (np.zeros(width, int), np.arange(width))
    right = (np.arange(1, height - 1), np.full(height - 2, width - 1))
    bottom = (np.full(width, height - 1), np.arange(width)[::-1])
    left = (np.arange(1, height - 1)[::-1], np.zeros(height - 2, int))
    sides = (top, right, bottom, left)
    return np.concatenate([s[0] for s in sides]), np.concatenate([s[1] for s in sides])


def _fit(gray: np.ndarray, background: float) -> np.ndarray:
    """Scale so that the longer side spans SIDE pixels, keeping the aspect ratio; pad to SIDE x SIDE, centred."""
    height, width = gray.shape
    scale = SIDE / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    small = np.asarray(_resize(Image.fromarray(gray.astype(np.float32), "F"), size))
    framed = np.full((SIDE, SIDE), background, dtype=np.float32)
    # An odd leftover pixel goes above and to the left, as in 99 % of Fashion-MNIST's images.
    top, left = (SIDE - small.shape[0] + 1) // 2, (SIDE - small.shape[1] + 1) // 2
    framed[top : top + small.shape[0], left : left + small.shape[1]] = small
    return framed


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__
