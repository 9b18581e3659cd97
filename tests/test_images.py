"""fmnist.images: turning user pictures into Fashion-MNIST-like 28x28 tensors."""

from __future__ import annotations

import io
import os
import struct
import warnings
import zlib

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw, features
from scipy import ndimage
from support import garment_mask

from fmnist import images
from fmnist.errors import FmnistError
from fmnist.images import export_png, load_image
from fmnist.testing import photos

DARK, LIGHT = 30, 230  # an object clearly darker / lighter than the other


def _garment() -> np.ndarray:
    """A trouser-like object framed as Fashion-MNIST frames its images: 28 pixels tall, 16 wide from
    column 6 (the odd pixel goes left), darkest photo pixel 255, shaded so that levels matter."""
    x = np.zeros((28, 28), np.float32)
    x[:, 6:22] = np.linspace(255, 120, 28)[:, None]
    x[12:, 13:15] = 0  # between the legs
    return np.rint(x).astype(np.uint8)


GARMENT = _garment()


def _mad(out: torch.Tensor, expected: np.ndarray = GARMENT) -> float:
    return float(np.abs(out.numpy().astype(np.float32) - expected).mean())


def _box(out: torch.Tensor, level: int = 40) -> tuple[int, int, int, int]:
    rows, cols = np.flatnonzero((out > level).any(1).numpy()), np.flatnonzero((out > level).any(0).numpy())
    return int(rows[0]), int(rows[-1]), int(cols[0]), int(cols[-1])


def _assert_framed_like_fashion_mnist(out: torch.Tensor) -> None:
    """Longer side spans the 28 pixels, centred, background 0, strongest pixel 255."""
    assert out.shape == (28, 28) and out.dtype == torch.uint8
    top, bottom, left, right = _box(out)
    height, width = bottom - top + 1, right - left + 1
    assert max(height, width) >= 27, (height, width)
    assert abs((top + bottom) / 2 - 13.5) <= 1 and abs((left + right) / 2 - 13.5) <= 1, (top, bottom, left, right)
    assert int(out.max()) >= 245
    outside = np.ones((28, 28), bool)
    outside[max(top - 1, 0) : bottom + 2, max(left - 1, 0) : right + 2] = False
    if outside.any():
        assert out.numpy()[outside].mean() < 3, "background should map to 0"


def _photo(ink: np.ndarray, background, colour, size: tuple[int, int], origin: tuple[int, int]) -> np.ndarray:
    """RGB float photo: `ink` (0..255, object darkness) upsampled to `size` at `origin` (x, y) on a canvas."""
    canvas = np.zeros((*size[::-1], 3), np.float32)
    canvas[:] = background
    width, height = ink.shape[1] * 10, ink.shape[0] * 10
    # Crisp edges (nearest): the object's true extent is then exactly 10x the 28x28 one.
    big = np.asarray(Image.fromarray(ink).resize((width, height), Image.Resampling.NEAREST), np.float32)
    big = big[..., None] / 255
    x, y = origin
    region = canvas[y : y + height, x : x + width]
    canvas[y : y + height, x : x + width] = region * (1 - big) + np.asarray(colour, np.float32) * big
    return canvas


def _save(array: np.ndarray, path, mode: str = "RGB", **options) -> None:
    Image.fromarray(np.clip(np.rint(array), 0, 255).astype(np.uint8), "RGB").convert(mode).save(path, **options)


def test_dark_garment_on_off_white_off_centre_jpeg(tmp_path):
    # Wide uneven margins: 40 px left, 250 px right of a 160-px-wide object.
    path = tmp_path / "photo.jpg"
    _save(_photo(GARMENT, (245, 242, 235), (25, 25, 40), (520, 400), (40, 60)), path, quality=85)
    out = load_image(path)
    _assert_framed_like_fashion_mnist(out)
    assert _mad(out) < 8


def test_light_object_on_dark_background_is_not_inverted(tmp_path):
    path = tmp_path / "studio.png"
    _save(_photo(GARMENT, (20, 20, 25), (235, 235, 235), (400, 420), (30, 90)), path)
    out = load_image(path)
    _assert_framed_like_fashion_mnist(out)
    assert _mad(out) < 8


def test_tinted_background_and_coloured_object(tmp_path):
    path = tmp_path / "tinted.jpg"
    _save(_photo(GARMENT, (180, 215, 240), (120, 20, 40), (500, 380), (200, 50)), path, quality=90)
    out = load_image(path)
    _assert_framed_like_fashion_mnist(out)
    assert _mad(out) < 8


@pytest.mark.parametrize("kind", photos.KINDS)
def test_a_shoe_facing_right_is_seen_facing_left_as_fashion_mnists_do(kind):
    # The model reads an ankle boot facing right as one 0 % of the time: the view is mirrored to face left.
    shoe = _shoe()
    left, right = (
        images.load_picture(photos.render(np.ascontiguousarray(image), kind, np.random.default_rng(3))[0]).pixels
        for image in (shoe, shoe[:, ::-1])
    )
    assert _mad(torch.from_numpy(right), left) < 6
    assert _mad(torch.from_numpy(left), shoe) < 25  # facing left, as the shoe was drawn (a photo's framing of it)


@pytest.mark.parametrize("kind", photos.KINDS)
def test_a_pair_of_shoes_side_by_side_is_seen_as_one_shoe(kind):
    # A pair, framed whole, is a wide low strip (a sandal, to the model); the larger shoe alone is framed as one shoe.
    shoe = _shoe()
    one, pair = (
        images.load_picture(photos.render(image, kind, np.random.default_rng(3), (600, 800))[0]).pixels
        for image in (shoe, photos.pair_of(shoe, np.random.default_rng(4)))
    )
    assert _mad(torch.from_numpy(pair), one) < 12  # framed whole: 58-65


def _blobs(*boxes: tuple[int, int, int, int]) -> np.ndarray:
    mask = np.zeros((200, 400), bool)
    for top, bottom, left, right in boxes:
        mask[top:bottom, left:right] = True
    return mask


def test_two_pieces_are_one_of_a_pair_only_side_by_side_balanced_and_wide():
    pair = _blobs((50, 100, 20, 150), (60, 105, 200, 320))  # the first the larger
    assert np.array_equal(images._one_of_a_pair(pair), _blobs((50, 100, 20, 150)))
    assert np.array_equal(images._one_of_a_pair(pair[:, ::-1]), _blobs((50, 100, 20, 150))[:, ::-1])
    for mask in (
        _blobs((10, 60, 20, 150), (120, 170, 20, 150)),  # one above the other
        _blobs((50, 150, 20, 60), (110, 150, 60, 200), (50, 100, 100, 200)),  # a block in the crook of an L
        _blobs((10, 60, 20, 150), (80, 130, 200, 330)),  # side by side, sharing no row
        _blobs((10, 190, 20, 100), (10, 190, 110, 190)),  # the halves of a coat, taller than wide
        _blobs((50, 100, 20, 150), (60, 80, 200, 250)),  # a shoe and something smaller
        _blobs((50, 100, 20, 150), (60, 105, 200, 320), (150, 190, 20, 150)),  # three pieces
        _blobs((50, 100, 20, 150)),
    ):
        assert images._one_of_a_pair(mask) is mask


def test_a_view_with_no_facing_is_left_as_it_is():
    lit = GARMENT.copy()
    lit[:14, 14:22] = lit[:14, 14:22] * 0.6  # lit from the left: its top half's offset -0.06
    for view in (GARMENT, lit, np.zeros((28, 28), np.uint8)):
        assert images._facing_left(view) is view


@pytest.mark.parametrize("width", [2, 3])
def test_a_hangers_hook_and_wire_do_not_set_the_box(tmp_path, width):
    # A shirt (322 pixels wide) hangs from a hook above it by a wire along its shoulders, both 2-3 pixels wide: under
    # half a pixel of the view (5.75 pixels). Framed with them, the shirt shrank by a sixth to make room for the hook.
    mask = np.asarray(garment_mask("shirt", (400, 480)), np.float32)[..., None] / 255
    photo = np.float32([236, 233, 228]) * (1 - mask) + np.float32([40, 42, 55]) * mask
    photo += np.random.default_rng(0).normal(0, 3, photo.shape)  # a camera's noise
    _save(photo, tmp_path / "flat.jpg", quality=90)
    hung = Image.fromarray(np.clip(np.rint(photo), 0, 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(hung)
    draw.arc((180, 30, 220, 70), 180, 90, fill=(90, 80, 60), width=width)  # the hook
    draw.line([(200, 70), (200, 80), (110, 100), (290, 100), (200, 80)], fill=(90, 80, 60), width=width)
    hung.save(tmp_path / "hung.jpg", quality=90)
    out = load_image(tmp_path / "hung.jpg")
    assert _mad(out, load_image(tmp_path / "flat.jpg").numpy()) < 6
    _assert_framed_like_fashion_mnist(out)


def test_a_drawing_of_thin_strokes_keeps_its_strokes():
    # A ring drawn with a 3-pixel line round a small filled disc: the opening would keep the disc alone (a fifth of the
    # object), so nothing is cut.
    mask = np.zeros((400, 400), bool)
    y, x = np.mgrid[:400, :400]
    radius = np.hypot(y - 200, x - 200)
    mask[(radius > 137) & (radius < 140)] = True
    mask[radius < 20] = True
    assert images._without_thin_parts(mask) is mask


def test_straps_half_a_view_pixel_wide_or_more_stay_in_the_box():
    # A sandal's sole 300 pixels long, three straps 6 pixels wide arching over it (2 % of its length): the dataset's
    # straps are a pixel wide, so the box keeps them. A heel 4 pixels wide under the sole stays too: the bottom never
    # moves.
    mask = np.zeros((200, 340), bool)
    mask[120:151, 20:320] = True
    y, x = np.mgrid[:200, :340]
    for centre in (90, 170, 250):
        mask[(np.hypot(y - 120, x - centre) > 44) & (np.hypot(y - 120, x - centre) < 50) & (y < 120)] = True
    mask[151:190, 280:284] = True
    assert images._object_box(images._without_thin_parts(mask)) == images._object_box(mask)


def test_sensor_noise_and_strong_jpeg(tmp_path):
    photo = _photo(GARMENT, (230, 230, 230), (30, 30, 30), (450, 450), (150, 80))
    photo += np.random.default_rng(0).normal(0, 12, photo.shape)
    path = tmp_path / "noisy.jpg"
    _save(photo, path, quality=40)
    out = load_image(path)
    _assert_framed_like_fashion_mnist(out)
    assert _mad(out) < 15


def test_uneven_light_across_the_background(tmp_path):
    # 1 on the background, 0 on the object: a dark object (30) on a backdrop lit unevenly.
    backdrop = _photo(GARMENT, (1, 1, 1), (0, 0, 0), (500, 400), (220, 60))[..., 0]
    y, x = np.mgrid[0:400, 0:500] / 400
    light = 245 - 35 * x - 25 * (y - 0.5) ** 2  # darker to the right and at the top and bottom
    path = tmp_path / "gradient.jpg"
    _save(np.repeat((light * backdrop + 30 * (1 - backdrop))[..., None], 3, axis=2), path, quality=90)
    out = load_image(path)
    _assert_framed_like_fashion_mnist(out)
    assert _mad(out) < 10


@pytest.mark.parametrize("width", [400, 520])
@pytest.mark.parametrize("backdrop", ["lit past white", "crushed to black"])
def test_a_backdrop_clipped_over_half_of_the_photo(tmp_path, backdrop, width):
    # Light ramps across the backdrop and clips (255, or 0 on a dark one) over more than half of the picture: the
    # clipped part is flat and noiseless, as a digital image's background (a square picture is tested for one),
    # and the background's fit must follow the gradient where the light comes into range, not take it for the
    # object.
    rng = np.random.default_rng(0)
    on_backdrop = _photo(GARMENT, (1, 1, 1), (0, 0, 0), (width, 400), (60, 60))[..., 0]
    ramp = np.linspace(-1, 1, width)[None, :]
    if backdrop == "lit past white":
        photo = (262 + 60 * ramp) * on_backdrop + DARK * (1 - on_backdrop)
    else:
        photo = (-7 - 60 * ramp) * on_backdrop + LIGHT * (1 - on_backdrop)
    photo = np.clip(photo + rng.normal(0, 2, photo.shape), 0, 255)
    path = tmp_path / "clipped.png"
    _save(np.repeat(photo[..., None], 3, axis=2), path)
    framed = images.load_picture(path)
    assert framed.cues is not None  # a photo, not a digital image
    _assert_framed_like_fashion_mnist(framed.image)
    assert _mad(framed.image) < 10


def test_a_white_digital_image_whose_object_spans_its_width_stays_digital():
    # Only the top and bottom rows are background: the background's fit must stay at their level (least squares
    # solved about it), not bend to a minimum-norm surface that calls the sides a gradient of light.
    picture = np.full((28, 28), 255, np.float32)
    picture[1:27, :] = np.linspace(40, 120, 28)[None, :]
    assert images.digital_view(picture) is not None


def test_object_covering_most_of_the_border_keeps_its_polarity(tmp_path):
    # A shaded dark object touches the top, left and bottom edges: more than half of the border is
    # object, so the border's median is the object's level; the background is still the common level.
    photo = np.full((300, 300), 240, np.float32)
    photo[:, :180] = np.linspace(20, 90, 300)[:, None]
    photo += np.random.default_rng(0).normal(0, 2, photo.shape)
    path = tmp_path / "edge.png"
    Image.fromarray(np.clip(photo, 0, 255).astype(np.uint8)).save(path)
    out = load_image(path)
    _assert_framed_like_fashion_mnist(out)  # the dark part, alone, trimmed and centred
    assert (out[:, 6:22] > 150).all(), "the object should be light"
    assert _box(out) == (0, 27, 6, 22)  # 180x300 -> 16.8x28: 17 columns from column 6


RUN = images.PIECE_RUN


@pytest.mark.parametrize(
    ("segments", "pieces"),
    [
        ([(1, 20)], 0),  # all on the surface
        ([(0, 20)], 1),  # none: one piece all round
        ([(1, 2), (0, RUN), (1, 3)], 1),
        ([(1, 2), (0, RUN - 1), (1, 4)], 0),  # narrower than a piece: a drawn line crossing the border
        ([(0, RUN - 1), (1, 5), (0, 1)], 1),  # one run across the seam where the border closes
        ([(1, 3), (0, RUN), (1, 3), (0, RUN + 2), (1, 3)], 2),
    ],
)
def test_the_border_off_the_surface_is_counted_in_pieces_going_round(segments, pieces):
    # segments: (on the surface, length) going round the border
    inliers = np.concatenate([np.full(length, bool(on)) for on, length in segments])
    assert images._border_pieces(inliers) == pieces


@pytest.mark.parametrize(
    ("border_fit", "noise", "pieces", "off_surface", "textured"),
    [
        (0.95, 3.0, 0, 0.0, False),  # a product photo: plain all round, some noise
        (0.95, 0.5, 30, 20.0, False),  # plain all round but for specks: the pieces only count where the fit is poor
        (images.SURFACE_FIT, 0.5, 30, 20.0, False),
        (0.95, images.SURFACE_NOISE + 1, 0, 0.0, True),  # grass: noisy all round
        (0.5, 1.5, 1, 120.0, True),  # a pattern or a shadow's edge across the border
        (0.45, 0.7, 1, 120.0, False),  # a dark object covering most of a plain backdrop's border
        (0.45, 0.7, 4, 120.0, False),  # a garment cut by the frame in four places
        (0.45, 0.7, images.SURFACE_PIECES, 120.0, True),  # a crisp check of two flat colours
        (0.45, 0.0, 30, 120.0, True),  # the same check in a lossless file: no noise at all
        (0.45, 0.0, 5, 120.0, False),  # a screenshot's flat colours and the object across its border
        (0.45, 0.7, 1, 20.0, True),  # a sheet's folds in a phone's denoised photo: shaded off the fit, no object
        (0.45, 0.7, 1, images.SHADING, False),  # as far off it as an object's own contrast
        (0.45, images.SHADED_NOISE, 1, 20.0, True),
        (0.45, images.SHADED_NOISE / 2, 1, 20.0, False),  # a digital picture's smooth gradient: no sensor noise
    ],
)
def test_a_surface_is_textured_by_its_noise_the_pieces_off_it_or_its_shading(
    border_fit, noise, pieces, off_surface, textured
):
    assert images.on_texture(border_fit, noise, pieces, off_surface) == textured


@pytest.mark.parametrize("edges", [("top",), ("left", "bottom")])
def test_object_touching_the_edge(tmp_path, edges):
    size, origin = [400, 380], [120, 60]
    if "top" in edges:
        origin[1] = 0
    if "left" in edges:
        origin[0] = 0
    if "bottom" in edges:
        size[1] = origin[1] + 280
    path = tmp_path / "edge.jpg"
    _save(_photo(GARMENT, (240, 240, 240), (30, 30, 30), tuple(size), tuple(origin)), path, quality=90)
    out = load_image(path)
    _assert_framed_like_fashion_mnist(out)
    assert _mad(out) < 8


@pytest.mark.parametrize("product", ["dark", "white"])
def test_cutout_on_transparency_keeps_its_silhouette(tmp_path, product):
    # Transparent pixels hold black (white would be the same): only alpha says where the object is.
    big = np.asarray(Image.fromarray(GARMENT).resize((280, 280), Image.Resampling.BICUBIC), np.float32) / 255
    alpha = np.clip((big - 0.03) * 15, 0, 1)
    canvas = np.zeros((400, 500, 4), np.float32)
    level = 40 if product == "dark" else 255  # a pure white product: nothing to negate
    canvas[60:340, 150:430, :3] = (255 - (255 - level) * big)[..., None] if product == "dark" else level
    canvas[60:340, 150:430, 3] = alpha * 255
    canvas[..., :3] *= canvas[..., 3:] > 0
    path = tmp_path / "cutout.png"
    Image.fromarray(np.rint(canvas).astype(np.uint8), "RGBA").save(path)
    out = load_image(path)
    _assert_framed_like_fashion_mnist(out)
    silhouette = GARMENT > 0
    seen = out.numpy() > 30
    assert (seen & silhouette).sum() / (seen | silhouette).sum() > 0.9, "the object should keep its shape"
    if product == "dark":
        assert _mad(out) < 12


def test_blank_picture_gives_an_empty_image(tmp_path):
    path = tmp_path / "blank.jpg"
    noise = np.random.default_rng(0).normal(200, 4, (300, 300, 3))
    _save(noise, path, quality=80)
    assert load_image(path).sum() == 0


def test_fashion_mnist_images_pass_unchanged(tmp_path):
    path = tmp_path / "sample.png"
    Image.fromarray(GARMENT).save(path)
    assert torch.equal(load_image(path), torch.from_numpy(GARMENT))


@pytest.mark.parametrize("kind", photos.KINDS)
def test_rendered_photos_convert_back_close_to_the_source(kind):
    rng = np.random.default_rng(0)
    mads = []
    for _ in range(4):
        data, suffix = photos.render(GARMENT, kind, rng)
        out = load_image(data, f"photo{suffix}")
        _assert_framed_like_fashion_mnist(out)
        mads.append(_mad(out))
    assert max(mads) < 18 and np.mean(mads) < 12, mads


def test_16_bit_png_keeps_its_levels(tmp_path):
    # Light object on black at 16 bits: 65535 maps to 255, a quarter of it to 64.
    values = np.zeros((300, 300), dtype=np.uint16)
    values[20:260, 40:140] = 65535
    values[20:260, 140:240] = 64 * 257
    path = tmp_path / "deep.png"
    Image.fromarray(values).save(path)
    assert _mode_on_disk(path).startswith("I")
    out = load_image(path)
    _assert_framed_like_fashion_mnist(out)
    assert out[14, 7] == 255 and abs(int(out[14, 20]) - 64) <= 2


def test_float_image(tmp_path):
    # A dark-on-light photo stored as 32-bit float in 0..1 (scientific cameras, image tools).
    photo = _photo(GARMENT, (0.95,) * 3, (0.1,) * 3, (400, 400), (100, 50))[..., 0]
    path = tmp_path / "float.tif"
    Image.fromarray(photo.astype(np.float32), "F").save(path)
    assert _mode_on_disk(path) == "F"
    out = load_image(path)
    _assert_framed_like_fashion_mnist(out)
    assert _mad(out) < 8


def test_heic_phone_photo(tmp_path):
    path = tmp_path / "IMG_0001.HEIC"
    _save(_photo(GARMENT, (240, 238, 232), (30, 30, 40), (400, 380), (80, 40)), path, format="HEIF", quality=90)
    out = load_image(path)
    _assert_framed_like_fashion_mnist(out)
    assert _mad(out) < 8


def test_cmyk_jpeg(tmp_path):
    path = tmp_path / "print.jpg"
    _save(_photo(GARMENT, (240, 240, 235), (40, 30, 30), (400, 350), (60, 30)), path, mode="CMYK", quality=92)
    assert _mode_on_disk(path) == "CMYK"
    out = load_image(path)
    _assert_framed_like_fashion_mnist(out)
    assert _mad(out) < 8


def test_palette_gif(tmp_path):
    path = tmp_path / "palette.gif"
    _save(_photo(GARMENT, (250, 250, 250), (20, 20, 20), (400, 350), (60, 30)), path, mode="P")
    assert _mode_on_disk(path) == "P"
    out = load_image(path)
    _assert_framed_like_fashion_mnist(out)
    assert _mad(out) < 15


def _mode_on_disk(path) -> str:
    with Image.open(path) as image:
        return image.mode


def _centred_box(mode: str, size: tuple[int, int], background, colour) -> Image.Image:
    image = Image.new(mode, size, background)
    w, h = size
    ImageDraw.Draw(image).rectangle((w // 4, h // 4, 3 * w // 4, 3 * h // 4), fill=colour)
    return image


@pytest.mark.parametrize("transparent", [False, True])
def test_palette_png_with_a_transparent_index(tmp_path, transparent):
    # Index 0 is the background: white, or black but transparent (which must read as background).
    image = _centred_box("P", (64, 48), 0, 1)
    background = (0, 0, 0) if transparent else (255, 255, 255)
    image.putpalette([*background, DARK, DARK, DARK])
    path = tmp_path / "palette.png"
    image.save(path, **({"transparency": 0} if transparent else {}))
    assert _mode_on_disk(path) == "P"
    out = load_image(path)
    assert out[14, 14] == 255 and out[1, 14] == 0  # a 33x25 box: framed 28 wide, 21 tall
    assert _box(out) == (4, 24, 0, 27)


@pytest.mark.parametrize("orientation", ["landscape", "portrait"])
def test_aspect_ratio_is_kept_by_padding(tmp_path, orientation):
    # A light 2:1 rectangle filling the picture apart from a thin dark frame.
    size = (280, 140) if orientation == "landscape" else (140, 280)
    image = Image.new("L", size, 0)
    ImageDraw.Draw(image).rectangle((5, 5, size[0] - 6, size[1] - 6), fill=LIGHT)
    path = tmp_path / "wide.png"
    image.save(path)
    out = load_image(path)
    if orientation == "portrait":
        out = out.T
    assert (out[:6] < 10).all() and (out[-6:] < 10).all()  # padding, not stretched content
    assert (out[8:20, :] > 240).all()  # the rectangle, trimmed to fill the width


def test_exif_orientation_is_applied(tmp_path):
    # Stored landscape, tagged "rotate 90° clockwise": phones save portrait photos like this.
    image = Image.new("L", (280, 140), 0)
    ImageDraw.Draw(image).rectangle((5, 5, 274, 134), fill=LIGHT)
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "phone.jpg"
    image.save(path, exif=exif, quality=95)
    out = load_image(path)
    assert (out[:, :6] < 20).all() and (out[:, -6:] < 20).all()
    assert (out[:, 8:20] > 200).all()


@pytest.mark.parametrize(
    "mode, suffix",
    [
        ("1", "png"),
        ("L", "png"),
        ("LA", "png"),
        ("RGB", "png"),
        ("RGBA", "png"),
        ("P", "gif"),
        ("CMYK", "jpg"),
        ("I;16", "tif"),
        ("I", "tif"),
        ("F", "tif"),
        ("YCbCr", "jpg"),
    ],
)
def test_any_mode_and_size_gives_uint8_28x28(tmp_path, mode, suffix):
    path = tmp_path / f"odd.{suffix}"
    Image.new(mode, (37, 101)).save(path)
    out = load_image(path)
    assert out.shape == (28, 28) and out.dtype == torch.uint8


def test_export_png_round_trip(tmp_path):
    generator = torch.Generator().manual_seed(0)
    image = torch.zeros(28, 28, dtype=torch.uint8)
    image[4:24, 6:22] = torch.randint(1, 256, (20, 16), dtype=torch.uint8, generator=generator)
    path = tmp_path / "sample.png"
    export_png(image, path)
    assert _mode_on_disk(path) == "L"
    assert torch.equal(load_image(path), image)
    assert [p.name for p in tmp_path.iterdir()] == ["sample.png"]


def test_export_png_rejects_wrong_dtype(tmp_path):
    with pytest.raises(ValueError, match="uint8"):
        export_png(torch.zeros(28, 28), tmp_path / "x.png")


# --- user-facing errors: each names the path ---------------------------------------------


def _load_fails(path, match: str) -> None:
    with pytest.raises(FmnistError, match=match) as info:
        load_image(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_missing_file(tmp_path):
    _load_fails(tmp_path / "nope.png", "no such file")


def test_directory(tmp_path):
    _load_fails(tmp_path, "directory")


def test_each_path_that_is_no_file_says_what_it_is(tmp_path):
    (tmp_path / "loop1").symlink_to("loop2")
    (tmp_path / "loop2").symlink_to("loop1")
    (tmp_path / "dangling").symlink_to("gone.png")
    (tmp_path / "a.png").write_bytes(b"x")
    os.mkfifo(tmp_path / "fifo")  # a read of it would block
    _load_fails(tmp_path / "loop1", "too many levels of symbolic links")
    _load_fails(tmp_path / "dangling", "no such file [(]a symbolic link to none[)]")
    _load_fails(tmp_path / "a.png" / "b.png", "not a directory")
    _load_fails(tmp_path / "fifo", "not a regular file")


@pytest.mark.parametrize(("content", "says"), [(b"", "empty, not an image"), (b"hello, I am text\n", "not an image")])
def test_not_an_image(tmp_path, content, says):
    path = tmp_path / "notes.png"
    path.write_bytes(content)
    _load_fails(path, says)
    with pytest.raises(FmnistError, match=f"upload: {says}"):  # the same words for the same bytes uploaded
        load_image(content)


def test_unconvertible_mode(tmp_path):
    path = tmp_path / "lab.tif"
    Image.new("LAB", (10, 10)).save(path)
    _load_fails(path, "cannot convert a LAB image")


def test_truncated_png(tmp_path):
    path = tmp_path / "cut.png"
    noise = np.random.default_rng(0).integers(0, 256, (64, 64), dtype=np.uint8)
    Image.fromarray(noise).save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    _load_fails(path, "truncated or corrupt")


def test_over_max_pixels(tmp_path, monkeypatch):
    path = tmp_path / "big.png"
    Image.new("L", (40, 30)).save(path)
    monkeypatch.setattr(images, "MAX_PIXELS", 40 * 30 - 1)
    _load_fails(path, "more than the 1,199 allowed")


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims to be width x height, without the pixel data to back it."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


# 10k x 10k is past Pillow's warning limit; 20k x 20k is past its error limit.
@pytest.mark.parametrize("side", [10_000, 20_000])
def test_decompression_bomb_header(tmp_path, side):
    path = tmp_path / "bomb.png"
    path.write_bytes(_png_header_only(side, side))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Pillow's DecompressionBombWarning must not escape
        _load_fails(path, "allowed")


@pytest.mark.parametrize("size", [(1, 1), (2, 5), (1, 100), (300, 2)])
def test_tiny_and_thin_pictures(tmp_path, size):
    path = tmp_path / "thin.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, size[::-1], dtype=np.uint8)).save(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no empty-slice warnings from the background fit
        out = load_image(path)
    assert out.shape == (28, 28) and out.dtype == torch.uint8


# --- pictures that use only part of their format's range -----------------------------------


def _partial_range_file(tmp_path, photo: np.ndarray, mode: str, low: float, high: float):
    """`photo` (0..255) written in `mode` with its levels mapped onto low..high of that format."""
    values = low + photo / 255 * (high - low)
    if mode == "F":
        image = Image.fromarray(values.astype(np.float32), "F")
    elif mode == "I":
        image = Image.fromarray(np.rint(values).astype(np.int32), "I")
    elif mode == "I;16":
        image = Image.fromarray(np.rint(values).astype(np.uint16))
    else:
        image = Image.fromarray(np.rint(values).astype(np.uint8), "L")
    path = tmp_path / ("partial.png" if mode in ("L", "I;16") else "partial.tif")
    image.save(path)
    assert _mode_on_disk(path).startswith(mode[0])
    return path


def _trouser_and_bag() -> list[np.ndarray]:
    """Two garments with shading, as 28x28 ink: the trouser above, and a bag with a handle."""
    bag = np.zeros((28, 28), np.float32)
    bag[10:27, 2:26] = np.linspace(140, 255, 24)[None, :]
    bag[3:11, 8:11] = bag[3:11, 17:20] = bag[3:5, 8:20] = 200
    return [GARMENT, np.rint(bag).astype(np.uint8)]


@pytest.mark.parametrize(
    ("mode", "low", "high", "tolerance"),
    [
        ("I;16", 0, 1023, 2.5),  # 10-bit data in a 16-bit PNG (cameras, scanners, microscopes)
        ("I;16", 64, 4095, 2.5),  # 12-bit, with a black level
        # A dark 16-bit exposure whose levels happen to fit 10 or 12 bits: taken as such data (DATA_BITS) and so
        # brightened, it must not read as light clipped at white.
        ("I;16", 0, 1000, 2.5),
        ("I;16", 100, 3000, 2.5),
        ("I;16", 2000, 40000, 2.5),  # 16-bit data using part of its range
        ("I", 0, 4095, 2.5),  # 12-bit data in a 32-bit integer TIFF
        ("F", 0.0, 0.01, 2.5),  # a float image in 0..1 using a hundredth of it
        ("F", 0.2, 0.25, 2.5),  # ... or a twentieth, on an offset
        # A faint 8-bit scan: 8 levels in all, the object's contrast 4 of them. Its own coarse levels
        # set the tolerance; unstretched, nothing in it stands out.
        ("L", 100, 108, 16),
    ],
)
def test_partial_range_is_framed_like_the_full_range(tmp_path, mode, low, high, tolerance):
    # A grey garment on a grey backdrop: the photo itself uses 60..200 of 0..255.
    for ink in _trouser_and_bag():
        photo = _photo(ink, (200,) * 3, (60,) * 3, (420, 380), (70, 40))[..., 0]
        photo += np.random.default_rng(0).normal(0, 1.5, photo.shape)  # sensor noise
        photo = np.clip(photo, 0, 255)
        full = tmp_path / "full.png"
        Image.fromarray(np.rint(photo).astype(np.uint8)).save(full)
        reference = load_image(full)
        out = load_image(_partial_range_file(tmp_path, photo, mode, low, high))
        _assert_framed_like_fashion_mnist(out)
        assert _mad(out, reference.numpy()) < tolerance, (mode, low, high)


def test_partial_range_blank_picture_stays_empty(tmp_path):
    # One level of difference in a 16-bit file is not an object, however the picture is stretched.
    values = np.full((300, 300), 1000, np.uint16)
    values[100:200, 100:200] = 1001
    path = tmp_path / "flat.png"
    Image.fromarray(values).save(path)
    assert load_image(path).sum() == 0


# --- very large photos ------------------------------------------------------------------------


def test_jpeg_over_the_pixel_limit_is_decoded_reduced(tmp_path):
    # 63 megapixels (a 64-MP panorama's size): mostly flat, so it encodes in a fraction of a second.
    width, height = 9000, 7000
    assert width * height > images.MAX_PIXELS
    picture = Image.new("L", (width, height), 235)
    ImageDraw.Draw(picture).rectangle((3000, 1000, 6000, 6000), fill=30)  # 3:5, as the 28x28 view shows
    path = tmp_path / "panorama.jpg"
    picture.save(path, quality=75)
    del picture
    out = load_image(path)
    _assert_framed_like_fashion_mnist(out)
    assert _box(out) == (0, 27, 6, 22)  # 3001x5001 -> 16.8x28: 17 columns from column 6


def _jpeg_claiming(width: int, height: int) -> bytes:
    """A small real JPEG whose frame header (SOF0) claims width x height."""
    buffer = io.BytesIO()
    Image.new("L", (16, 16), 128).save(buffer, format="JPEG")
    data = bytearray(buffer.getvalue())
    sof = data.index(b"\xff\xc0")  # marker, length (2), precision (1), height (2), width (2)
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def test_jpeg_too_large_even_at_one_eighth_is_refused_before_decoding(tmp_path):
    path = tmp_path / "bomb.jpg"
    path.write_bytes(_jpeg_claiming(65_000, 65_000))  # 1/8: 8125x8125 = 66 M pixels
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _load_fails(path, "8125x8125 = 66,015,625 pixels even at 1/8 scale, more than the 50,000,000 allowed")


def test_200_megapixel_jpeg_is_not_refused_at_open(tmp_path):
    # A 200-MP phone photo (16320x12240) is past Pillow's own open-time limit (179 M pixels); reduced
    # it is 2040x1530. (This one's few MCUs of data decode as a flat grey picture: an empty view.)
    path = tmp_path / "phone.jpg"
    path.write_bytes(_jpeg_claiming(16_320, 12_240))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = load_image(path)
    assert out.shape == (28, 28) and out.sum() == 0


# --- which files a directory or glob stands for -------------------------------------------------


APPLE_DOUBLE = b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        " + bytes(64)  # a "._name" resource fork


def _folder_of_everything(directory) -> list[str]:
    """Pictures under every name a JPEG/PNG/AVIF takes, and the files that travel with them; returns the
    names of the pictures, sorted."""
    directory.mkdir()
    picture = Image.fromarray(GARMENT)
    for name in ("a.jpg", "b.JPG", "c.jfif", "d.jpe", "e.jpeg"):
        picture.save(directory / name, format="JPEG")
    picture.save(directory / "f", format="PNG")  # no extension at all
    picture.save(directory / "g.webp", format="WEBP")
    picture.convert("RGB").save(directory / "i.HEIC", format="HEIF")  # an iPhone's photo
    pictures = ["a.jpg", "b.JPG", "c.jfif", "d.jpe", "e.jpeg", "f", "g.webp", "i.HEIC"]
    if features.check("avif"):  # Pillow built with libavif reads it
        picture.convert("RGB").save(directory / "h.avif", format="AVIF")
        pictures.append("h.avif")
    (directory / "._a.jpg").write_bytes(APPLE_DOUBLE)
    (directory / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1" + bytes(32))
    (directory / "Thumbs.db").write_bytes(bytes(512))
    (directory / "desktop.ini").write_text("[.ShellClassInfo]\n")
    picture.save(directory / ".hidden.png")  # a dot-file, even an image, is hidden
    (directory / "notes.txt").write_text("not a picture")
    (directory / "raw").mkdir()
    return sorted(pictures)


def test_collect_images_decides_by_content_and_skips_system_files(tmp_path):
    pictures = _folder_of_everything(tmp_path / "photos")
    found = images.collect_images([str(tmp_path / "photos")])
    assert [p.name for p in found.paths] == pictures
    assert found.skipped == {images.SKIP_HIDDEN: 5, images.SKIP_NOT_IMAGE: 1, images.SKIP_DIRECTORY: 1}
    assert found.skipped_summary() == (
        "skipped 7 files: hidden or system file: 5; not an image Pillow reads: 1; directory (not searched): 1"
    )
    for path in found.paths:  # and each of them loads
        assert load_image(path).shape == (28, 28)


def test_collect_images_glob_follows_the_same_rules(tmp_path):
    pictures = _folder_of_everything(tmp_path / "photos")
    found = images.collect_images([str(tmp_path / "photos" / "*")])  # as a shell that does not expand passes it
    assert [p.name for p in found.paths] == pictures
    # The glob matches no dot-file, as in a shell; the system files it does match are skipped.
    assert found.skipped == {images.SKIP_HIDDEN: 2, images.SKIP_NOT_IMAGE: 1, images.SKIP_DIRECTORY: 1}


def test_collect_images_named_files(tmp_path):
    _folder_of_everything(tmp_path / "photos")
    named = [tmp_path / "photos" / name for name in ("._a.jpg", "Thumbs.db", "notes.txt", "c.jfif", ".hidden.png")]
    found = images.collect_images([*map(str, named), str(tmp_path / "missing.png"), str(tmp_path / "none*.png")])
    # A system file is skipped; anything else named is the user's choice, reported by load_image if it fails.
    assert found.paths == [*named[2:], tmp_path / "missing.png", tmp_path / "none*.png"]
    assert found.skipped == {images.SKIP_HIDDEN: 2}


def test_collect_images_empty_directory(tmp_path):
    found = images.collect_images([str(tmp_path)])
    assert found.paths == [] and found.skipped == {} and found.skipped_summary() is None


def test_collect_images_unreadable_directory_is_one_line(tmp_path, monkeypatch):
    def refuse(self):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(type(tmp_path), "iterdir", refuse)  # as for a directory without read permission
    with pytest.raises(FmnistError, match=f"^{tmp_path}: cannot list the directory: Permission denied$"):
        images.collect_images([str(tmp_path)])


def test_framing_cues_tell_a_product_photo_from_clutter():
    from support import mosaic, product_photo

    from fmnist.images import load_picture

    product = load_picture(product_photo("shirt")).cues
    clutter = load_picture(mosaic()).cues
    assert product is not None and clutter is not None
    assert product.border_fit == 1.0 and product.largest_part > 0.99 and 0.1 < product.coverage < 0.9
    # Flat blocks of colour all along the border: a pattern printed in flat colours, framed as a surface.
    assert clutter.border_fit < 0.5 and clutter.textured and not product.textured


def test_a_fashion_mnist_image_has_no_framing_cues(tmp_path):
    from fmnist.images import load_picture

    image = torch.zeros(28, 28, dtype=torch.uint8)
    image[4:24, 8:20] = 200
    image[10, 10] = 255  # the dataset's images all reach 254 or 255
    export_png(image, tmp_path / "item.png")
    framed = load_picture(tmp_path / "item.png")
    assert framed.cues is None and torch.equal(framed.image, image)


def test_a_blank_picture_has_no_object_and_zero_coverage():
    from fmnist.images import frame_with_cues

    image, cues = frame_with_cues(np.full((100, 120), 200.0, dtype=np.float32))
    assert not image.any() and cues.coverage == 0.0 and cues.largest_part == 0.0


# --- a Fashion-MNIST image in any container -----------------------------------------------------

from fmnist.testing import forms  # noqa: E402 - grouped with the tests that use it


def _shoe() -> np.ndarray:
    """A sneaker-like object: wider than tall, spanning the 28 columns, shaded, its collar on the right (facing left, as
    Fashion-MNIST's shoes do)."""
    x = np.zeros((28, 28), np.float32)
    x[12:22, :] = np.linspace(110, 255, 28)[None, :]
    x[6:12, 16:28] = 180
    return np.rint(x).astype(np.uint8)


def _tolerance(form: forms.Form) -> float:
    """Mean absolute difference allowed between a form's view and the image: none for a lossless 28x28 or nearest
    upscale, with margins or not; JPEG/WebP loss or a smooth upscale's interpolation; a colour map's luminance, not
    linear in the levels it draws (gray is, to a level); 219 limited-range levels for 256, or fewer in a dimmed or
    tinted copy (one level)."""
    if form.colour_map and form.colour_map != "gray":
        return 16.0
    if form.margin and form.smooth:  # cut at its own pixels (a smaller picture enlarged), then a JPEG's loss
        return 6.0
    if form.fmt in ("JPEG", "WEBP") or form.smooth:
        return 4.0
    return 1.0 if form.limited or form.dim != 1 or form.tint or form.colour_map or form.backdrop is not None else 0.0


# On a captioned page, an object's edge at the page's own level leaves the picture's edge unseen there, and on a
# transparent background an object is told from a cut-out product by its edge fading toward black: those forms are
# tested with objects whose outermost pixels are faint (test_a_captioned_screenshot_..., test_a_transparent_...). A
# faint tint in a lossy enlargement may not rebuild as a 28x28 grid (images.GRID_CONTRAST) and is then framed as a
# photo (3 of 100 test images, benchmarks/forms.py).
@pytest.mark.parametrize(
    "form",
    [
        f
        for f in forms.all_forms()
        if f.figure not in forms.CAPTIONED and not f.transparent and not (f.tint == "pink" and f.fmt == "JPEG")
    ],
    ids=lambda f: f.name,
)
def test_every_form_of_a_dataset_image_gives_its_view_without_photo_cues(form):
    from fmnist.images import load_picture

    for image in (GARMENT, _shoe()):  # both span the 28 pixels, as Fashion-MNIST's objects do
        picture = load_picture(forms.save(image, form), form.name)
        assert picture.cues is None, "a dataset image in another container must not be judged as a photo"
        assert _mad(picture.image, image) <= _tolerance(form), (form.name, _mad(picture.image, image))


@pytest.mark.parametrize(
    "form",
    [
        forms.Form("RGB", "JPEG", inverted=True, backdrop=200),
        forms.Form("RGB", "JPEG", 4.0, smooth=True, inverted=True, backdrop=190),
        forms.Form("RGB", "JPEG", backdrop=80),
    ],
    ids=lambda f: f.name,
)
def test_a_dataset_image_on_a_grey_saved_as_a_jpeg_gives_its_view(form):
    # A JPEG's ringing overshoots the grey on the object's far side: beyond 6 levels on up to 14 % of a 28x28 grid's
    # pixels, which the one-side test took for a second object (a photo); beyond images.ONE_SIDE_BAND on none.
    from fmnist.images import load_picture

    for image in (GARMENT, _shoe()):
        picture = load_picture(forms.save(image, form), form.name)
        assert picture.cues is None, "a dataset image on a grey must not be judged as a photo"
        assert _mad(picture.image, image) <= _tolerance(form), (form.name, _mad(picture.image, image))


@pytest.mark.parametrize(
    "pad", [((0, 0), (6, 6)), ((7, 5), (0, 0)), ((3, 11), (5, 0)), ((0, 1), (0, 0)), ((0, 0), (1, 1))]
)
def test_a_dataset_image_padded_to_another_shape_gives_its_view(pad):
    # ImageOps.pad to 40x28, np.pad by odd amounts: a digital picture at its own size, framed as one. Before, a picture
    # that was not square was framed as a photo: the view stretched, and the detector judged photo cues it lacks.
    from fmnist.images import load_picture

    for image in (GARMENT, _shoe()):
        for inverted in (False, True):
            padded = np.pad(255 - image if inverted else image, pad, constant_values=255 if inverted else 0)
            picture = load_picture(_png_bytes(padded))
            assert picture.cues is None and torch.equal(picture.image, torch.from_numpy(image)), (pad, inverted)


@pytest.mark.parametrize("form", [f for f in forms.all_forms() if f.transparent], ids=lambda f: f.name)
def test_a_transparent_background_behind_a_dataset_image_gives_its_view(form):
    # Its black made transparent: the opaque part's rim fades toward black (as 98.6 % of Fashion-MNIST's do), so it
    # is composited over black and read as the image. Before, it was framed as a cut-out product on white: negated.
    from fmnist.images import load_picture

    for image in (GARMENT, _shoe()):
        soft = image.copy()
        rim = (soft > 0) & ~ndimage.binary_erosion(soft > 0, border_value=1)
        soft[rim] //= 3
        picture = load_picture(forms.save(soft, form), form.name)
        assert picture.cues is None and _mad(picture.image, soft) <= _tolerance(form), (
            form.name,
            _mad(picture.image, soft),
        )


@pytest.mark.parametrize("feather", [0.0, 1.5, 3.0])
def test_a_cut_out_product_is_still_framed_as_a_cut_out(feather):
    # A light grey shirt cut out of its photo onto transparency, square, its colour reaching its edge and its alpha
    # feathered: composited over black its edge fades (the alpha's), but its own levels do not, so it is no dataset
    # image on transparency (framed so, it would be a light shirt read as a dark one).
    from fmnist.images import load_picture

    shape = np.asarray(Image.fromarray(np.uint8(GARMENT > 0) * 255).resize((120, 120)), np.float32)
    alpha = ndimage.gaussian_filter(np.pad(shape, 20), feather) if feather else np.pad(shape, 20)
    rgba = np.dstack([np.full(alpha.shape, 180.0)] * 3 + [alpha])
    picture = load_picture(_png_bytes(np.rint(rgba).astype(np.uint8)))
    assert picture.cues is not None, feather


MARGINS = [f for f in forms.all_forms() if f.margin and f.fmt == "PNG" and not (f.colour_map or f.tint)]


@pytest.mark.parametrize("form", MARGINS, ids=lambda f: f.name)
def test_faint_edges_of_a_dataset_image_given_margins_stay_in_its_view(form):
    # Fashion-MNIST trimmed its pictures at a faint level: the rows or columns at the ends of an object's 28 may hold
    # levels of a few units alone. Cut at the brighter pixels, the object spanned 27 or 26 and was enlarged.
    from fmnist.images import load_picture

    tall, wide = GARMENT.copy(), _shoe()
    tall[0, 6:22], tall[-1, 6:22] = 5, 4
    wide[:, 0] = np.minimum(wide[:, 0], 6)
    for image in (tall, wide):
        picture = load_picture(forms.save(image, form), form.name)
        assert picture.cues is None and torch.equal(picture.image, torch.from_numpy(image)), form.name


def _digit() -> np.ndarray:
    """A "7" in MNIST's style: light strokes on black, in a 20-pixel box in the 28x28 picture."""
    from fmnist.testing.outliers import mnist_style

    canvas = Image.new("L", (160, 160), 0)
    ImageDraw.Draw(canvas).line([(40, 30), (120, 30), (70, 135)], fill=255, width=14)
    return mnist_style(np.asarray(canvas, np.float32) / 255)


ENLARGED = [f for f in forms.all_forms() if f.scale != 1 and not (f.margin or f.figure)]


@pytest.mark.parametrize("form", ENLARGED, ids=lambda f: f.name)
def test_an_enlarged_28x28_picture_keeps_its_placement(form):
    # A digit in its 20-pixel box, enlarged, is the 28x28 picture it was (its 20-pixel box tells a digit from a
    # garment), not a picture with margins whose object is cut out and made to span the 28 pixels.
    from fmnist.images import load_picture

    digit = _digit()
    picture = load_picture(forms.save(digit, form), form.name)
    assert picture.cues is None and _mad(picture.image, digit) <= _tolerance(form), _mad(picture.image, digit)


@pytest.mark.parametrize("resample", [Image.Resampling.NEAREST, Image.Resampling.BILINEAR, Image.Resampling.BICUBIC])
@pytest.mark.parametrize(("pad", "factor"), [(2, 3), (7, 4)])
def test_a_garment_given_margins_then_enlarged_is_cut_out_of_them(monkeypatch, resample, pad, factor):
    # Its object spans 16-26 of 28 pixels of a picture three or four times 28 (asked whether it is a 28x28 picture
    # enlarged); its own pixels are finer than the 28x28 grid's, so it is not, and it is cut to its box as before.
    from fmnist.images import load_picture

    asked = []
    enlarged = images._enlarged
    monkeypatch.setattr(images, "_enlarged", lambda c, grid=28: asked.append((grid, enlarged(c, grid))) or asked[-1][1])
    padded = Image.fromarray(np.pad(GARMENT, pad))
    data_ = io.BytesIO()
    padded.resize((padded.width * factor,) * 2, resample).save(data_, "PNG")
    view = load_picture(data_.getvalue()).image.numpy()
    rows = np.flatnonzero((view > 50).any(1))
    assert asked[0] == (28, False) and rows[-1] - rows[0] + 1 >= 27, (asked, rows)  # it spans the 28 rows again


@pytest.mark.parametrize("dpi", [72, 120, 200])
def test_a_grey_figure_at_any_dpi_is_read_as_the_image_it_shows(dpi):
    # At 72 dpi the page is read at its own size; at 120 the spine's corner is antialiased lighter than the rest of
    # the frame, and the picture is cut out of the reduced page with its frame and read again at its own size; at 200
    # its axes are over 512 pixels across and it is read on the reduced page.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from fmnist.images import load_picture

    figure = Figure(dpi=dpi)
    FigureCanvasAgg(figure)
    figure.add_subplot().imshow(GARMENT, cmap="gray")
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    picture = load_picture(buffer.getvalue())
    assert picture.cues is None and _mad(picture.image) <= 8.0, (dpi, _mad(picture.image))


def test_a_black_bag_above_a_caption_is_an_object_not_a_picture_in_a_frame():
    # The frame rule's ticks: a dark block whose own colour reaches its edge, among marks (a caption), with a handle
    # reaching far out of it, is not a framed picture whose background is that colour (its logo would be the object).
    from fmnist import images

    page = Image.new("RGB", (400, 400), "white")
    draw = ImageDraw.Draw(page)
    draw.rectangle((100, 110, 300, 330), fill=(15, 15, 15))
    draw.rectangle((170, 70, 230, 110), outline=(15, 15, 15), width=8)
    draw.ellipse((180, 240, 220, 280), fill=(230, 230, 230))
    draw.text((100, 360), "Tote bag, black", fill=0)
    gray, alpha, _ = images._planes(page)
    assert images._inner_picture(gray, alpha) is None


CAPTIONED = [f for f in forms.all_forms() if f.figure in forms.CAPTIONED]


@pytest.mark.parametrize("form", [f for f in CAPTIONED if not f.inverted], ids=lambda f: f.name)
def test_a_captioned_screenshot_of_a_dataset_image_is_read_as_the_image(form):
    # A web page showing the image enlarged, a caption under it: a dark square among marks with no ticks, but square
    # and spanned by its object as a dataset image's 28 pixels are. Before, it was taken for an object: "not a garment".
    from fmnist.images import load_picture

    tall, wide = GARMENT.copy(), _shoe()
    tall[[0, -1], 6:22], wide[12:22, -1] = 60, 60  # the object's outermost pixels faint, as Fashion-MNIST's mostly are
    for image in (tall, wide):  # (a light edge on a light page would leave the picture's edge there unseen)
        picture = load_picture(forms.save(image, form), form.name)
        assert picture.cues is None and _mad(picture.image, image) <= 1.0, (form.name, _mad(picture.image, image))


@pytest.mark.parametrize("form", [f for f in CAPTIONED if f.inverted], ids=lambda f: f.name)
def test_a_dark_garment_above_a_caption_on_a_white_page_is_framed_without_the_caption(form):
    # Dark on white on a white page, no edge of the picture is seen: a photo of the garment, whose mask took in the
    # line of caption under it, so the view was the garment and the text shrunk together.
    from fmnist.images import load_picture

    for image in (GARMENT, _shoe()):
        picture = load_picture(forms.save(image, form), form.name)
        assert picture.cues is not None and _mad(picture.image, image) <= 4.0, (form.name, _mad(picture.image, image))


def test_a_dim_digital_product_on_white_gets_the_full_range():
    from fmnist.images import load_picture

    picture = np.full((112, 112), 255, np.uint8)
    picture[:, 24:88] = 255 - 150  # a grey garment filling the height of a white square
    framed = load_picture(_png_bytes(picture))
    assert framed.cues is None and int(framed.image.max()) == 255 and framed.image[14, 14] == 255


@pytest.mark.parametrize("kind", ["shirt", "trouser"])
@pytest.mark.parametrize("seed", [0, 3])
def test_a_square_photo_on_a_backdrop_lit_past_white_fills_the_view_whatever_specks_of_noise_it_keeps(kind, seed):
    from support import noisy_product_photo

    # Lit past white, the backdrop clips half of its 4 levels of noise: its border is as flat as a digital image's,
    # and it is read as one; a few of its pixels still stand out by 8 levels, and they must not make the object's
    # box the whole picture.
    framed = images.load_picture(noisy_product_photo(kind, 4.0, seed, backdrop=255.0))
    ink = framed.pixels > 50
    assert framed.cues is None and max(ink.any(0).sum(), ink.any(1).sum()) >= 26


def test_a_line_one_pixel_wide_in_a_digital_picture_is_no_speck():
    drawing = np.full((300, 300), 255, np.uint8)
    drawing[100:200, 120:180] = 0  # 100 pixels tall, under a line 260 pixels long: 11 of the view's 28 rows
    drawing[40, 20:280] = 0
    framed = images.load_picture(_png_bytes(drawing))
    assert framed.cues is None and (framed.pixels > 50).any(1).sum() == 11


def test_a_noisy_or_shaded_square_photo_is_framed_as_a_photo():
    from fmnist.images import load_picture

    rng = np.random.default_rng(0)
    photo = _photo(GARMENT, (240,) * 3, (40,) * 3, (300, 300), (10, 10))
    noisy = np.clip(photo + rng.normal(0, 5, photo.shape), 0, 255)
    assert load_picture(_png_bytes(noisy.astype(np.uint8))).cues is not None


def _png_bytes(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def test_a_flat_box_on_white_is_an_object_not_a_picture_on_a_canvas():
    # A clutch photographed on a pure white backdrop: a dark rectangle with sharp corners and a faint seam. Its
    # border is flat near black, as a dataset image's, but nothing stands on it: it is framed as the object.
    from fmnist.images import load_picture

    picture = np.full((200, 240), 255, np.uint8)
    picture[40:160, 50:190] = 10
    picture[100, 50:190] = 60  # the seam
    framed = load_picture(_png_bytes(picture))
    assert framed.cues is not None and framed.cues.fill == pytest.approx(1.0)
    assert int(framed.image.max()) == 255 and (framed.image[8:20, 4:24] > 200).all()


def test_a_dark_clutch_with_a_bright_clasp_on_white_is_an_object_not_a_picture_on_a_canvas():
    # Its border is flat near black and something bright stands on it, but only a detail: the clasp spans a
    # sixth of the box. The view is the whole clutch, not the clasp.
    from fmnist.images import load_picture

    picture = np.full((300, 320), 255, np.uint8)
    picture[60:240, 70:250] = 12
    picture[70:100, 145:175] = 235  # the clasp
    framed = load_picture(_png_bytes(picture))
    assert framed.cues is not None and framed.cues.fill == pytest.approx(1.0)
    assert (framed.image.numpy() > 200).mean() > 0.8


def test_a_small_inverted_image_on_a_larger_black_page_is_read_at_its_own_size():
    # Found on the reduced planes of a 540-pixel page, cut out to 28x28 with a pixel of the page round it: the cut
    # is not the dataset's own format (a white background), so it is framed, not taken as it is.
    from fmnist.images import load_picture

    image = np.asarray(Image.fromarray(_shoe()).resize((26, 26), Image.Resampling.BILINEAR))
    page = np.zeros((540, 540), np.uint8)
    page[200:226, 300:326] = 255 - image
    alone = load_picture(_png_bytes(255 - image))
    framed = load_picture(_png_bytes(page))
    assert framed.cues is None and alone.cues is None
    assert np.array_equal(framed.image.numpy(), alone.image.numpy())


def test_a_dataset_image_on_a_page_is_read_as_its_bytes():
    # Pasted 1:1 at an off-centre place of a large light page: found on the reduced planes, read at full size.
    from fmnist.images import load_picture

    dark_border = GARMENT.copy()
    dark_border[:, 6:22][0] = 200  # a top row a little below the page's white
    page = np.full((700, 900), 250, np.uint8)
    page[311:339, 123:151] = dark_border
    framed = load_picture(_png_bytes(page))
    assert framed.cues is None and np.array_equal(framed.image.numpy(), dark_border)


@pytest.mark.parametrize("resample", [Image.Resampling.LANCZOS, Image.Resampling.HAMMING, Image.Resampling.BILINEAR])
def test_a_dataset_image_whose_object_spans_27_pixels_enlarged_is_taken_whole(resample):
    # Enlarged by a resampler _enlarged does not model, its object a row short of the 28: the object reaches one edge
    # of the picture, so no margins were added. Cut round the object, it was stretched to the 28 rows and moved.
    from fmnist.images import load_picture

    image = GARMENT.copy()
    image[0] = 0  # the object spans rows 1-27
    enlarged = Image.fromarray(image).resize((280, 280), resample)
    picture = load_picture(_png_bytes(np.asarray(enlarged)))
    assert picture.cues is None and _mad(picture.image, image) <= 5.0, _mad(picture.image, image)


@pytest.mark.parametrize("seed", range(6))
def test_a_framed_photo_saved_and_read_again_gives_the_same_view(seed):
    # --save-inputs writes the view; read again it must be taken as it is. A view whose brightest pixel resizing left
    # under FULL_PEAK was stretched again on reading (a grey picture under FULL_PEAK is a dimmed copy).
    from fmnist.images import load_picture
    from fmnist.testing import surfaces
    from fmnist.trust.references import KINDS, render

    rng = np.random.default_rng(seed)
    for kind in KINDS:
        view = load_picture(render(GARMENT, kind, rng)[0]).image
        assert view.max() >= images.FULL_PEAK and torch.equal(load_picture(_png_bytes(view.numpy())).image, view), kind
    for kind in surfaces.KINDS:
        view = load_picture(surfaces.render(_shoe(), kind, rng)).image
        assert view.max() >= images.FULL_PEAK and torch.equal(load_picture(_png_bytes(view.numpy())).image, view), kind


def _bands(*rows: tuple[int, int, int]) -> np.ndarray:
    """A mask [120, 100] with, per (top, bottom, pieces), that many separate blocks across those rows."""
    mask = np.zeros((120, 100), bool)
    for top, bottom, pieces in rows:
        for i in range(pieces):
            mask[top:bottom, 5 + 18 * i : 15 + 18 * i] = True
    return mask


def test_a_line_of_caption_apart_from_the_object_is_dropped_and_nothing_else():
    from fmnist.images import _without_caption

    caption = _bands((5, 85, 1), (100, 112, 5))  # an object, 15 empty rows, a line of five letters
    assert _without_caption(caption)[:90].sum() == caption[:90].sum() and not _without_caption(caption)[90:].any()
    above = _bands((5, 15, 4), (30, 110, 1))  # a title over the object
    assert not _without_caption(above)[:20].any()
    for kept in (
        _bands((5, 85, 1), (87, 94, 4)),  # a shoe's faint sole in pieces a row or two under it: no caption
        _bands((5, 17, 5), (25, 37, 5), (45, 57, 5)),  # text alone, lines of one height
        _bands((5, 85, 1), (87, 89, 4)),  # a thin sole two rows under it
        _bands((5, 50, 1), (62, 70, 5), (84, 115, 1)),  # a label between two objects: not at an end
        _bands((5, 85, 1), (100, 112, 2)),  # two marks are no line of text
    ):
        assert np.array_equal(_without_caption(kept), kept)


def test_a_translucent_overlay_is_no_picture_in_its_alpha():
    # A white box at half opacity (a watermark) is flat and graded, but a dataset image reaches full opacity.
    from fmnist.images import load_picture

    rgba = np.zeros((100, 100, 4), np.uint8)
    rgba[..., :3] = 255
    rgba[20:80, 30:70, 3] = 128
    assert load_picture(_png_bytes(rgba)).cues is not None


def test_light_grey_text_on_flat_paper_is_framed_as_a_photo():
    # Under DIGITAL_CONTRAST and no 28x28 grid: its photo cues are judged, not its view alone (a tint is read as a
    # digital picture only at 28x28 or enlarged from it).
    from fmnist.images import load_picture

    page = Image.new("L", (200, 200), 255)
    ImageDraw.Draw(page).text((40, 80), "Hi there", fill=190, font_size=40)
    assert load_picture(_png_bytes(np.asarray(page))).cues is not None


def test_a_thin_grey_drawing_on_flat_paper_is_framed_as_a_photo():
    # Its strongest pixel stands 195 levels above the page, but sampled at 28x28 its line keeps under DIGITAL_CONTRAST:
    # no 28x28 grid, so a photo whose cues are judged (the view alone passed for a garment).
    from fmnist.images import load_picture

    page = Image.new("L", (256, 256), 255)
    ImageDraw.Draw(page).ellipse((20, 20, 236, 236), outline=60, width=1)
    assert load_picture(_png_bytes(np.asarray(page))).cues is not None
