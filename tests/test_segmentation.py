"""fmnist.segmentation and its use by the photo framing: an object on a textured surface, turned."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageDraw
from support import garment_mask, square_gingham

from fmnist import images, segmentation
from fmnist.images import load_picture
from fmnist.testing import surfaces

SIZE = (180, 240)  # height, width


def _grain(shape: tuple[int, int] = SIZE, level: float = 90.0) -> np.ndarray:
    """A dark wood-like surface: stripes of +-30 levels every 8 pixels, RGB float [H, W, 3]."""
    y, x = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float32)
    grain = level + 30 * np.sin(x / 1.3 + 2 * np.sin(y / 20))
    return np.stack([grain * 1.2, grain, grain * 0.7], axis=-1)


def _turned_rectangle(shape: tuple[int, int], size: tuple[int, int], angle: float) -> np.ndarray:
    """Boolean [H, W]: a `size` (height, width) rectangle at the centre, turned by `angle` degrees."""
    canvas = np.zeros(shape, np.uint8)
    top, left = (shape[0] - size[0]) // 2, (shape[1] - size[1]) // 2
    canvas[top : top + size[0], left : left + size[1]] = 255
    return np.asarray(Image.fromarray(canvas).rotate(angle, Image.Resampling.BILINEAR)) > 127


def _on_grain(mask: np.ndarray, tone: float = 220.0) -> np.ndarray:
    picture = _grain(mask.shape)
    picture[mask] = tone
    return picture


def test_a_light_object_on_wood_grain_is_separated_from_it():
    truth = _turned_rectangle(SIZE, (90, 50), 0)
    found = segmentation.object_mask(_on_grain(truth), SIZE)
    assert found is not None and found.shape == SIZE
    overlap = (found & truth).sum() / (found | truth).sum()
    assert overlap > 0.85


def test_a_surface_with_no_object_gives_none():
    assert segmentation.object_mask(_grain(), SIZE) is None


def test_an_upright_or_round_object_is_not_turned():
    assert segmentation.tilt(_turned_rectangle(SIZE, (90, 50), 0)) == 0.0
    y, x = np.mgrid[0 : SIZE[0], 0 : SIZE[1]]
    assert segmentation.tilt((y - 90) ** 2 + (x - 120) ** 2 < 60**2) == 0.0


@pytest.mark.parametrize("angle", [-25.0, -12.0, 18.0, 28.0])
def test_a_turned_object_is_turned_back_by_its_angle(angle):
    turned = _turned_rectangle(SIZE, (110, 50), angle)
    assert segmentation.tilt(turned) == pytest.approx(-angle, abs=1.5)


# Silhouettes in a 100 x 100 box, (x, y) with y down: a T-shirt (mirror-symmetric, its box no longer than its
# turned box for small angles) and a sneaker seen from the side (no mirror symmetry).
T_SHIRT = ((30, 0), (70, 0), (100, 25), (88, 40), (75, 30), (75, 100), (25, 100), (25, 30), (12, 40), (0, 25))
SNEAKER = ((0, 100), (100, 100), (100, 80), (70, 60), (45, 30), (20, 35), (5, 45), (0, 70))


def _turned_shape(points: tuple[tuple[int, int], ...], angle: float) -> np.ndarray:
    """Boolean [200, 200]: the silhouette at the centre, scaled by 1.2, turned by `angle` degrees."""
    canvas = Image.new("L", (200, 200), 0)
    ImageDraw.Draw(canvas).polygon([(40 + 1.2 * x, 40 + 1.2 * y) for x, y in points], fill=255)
    return np.asarray(canvas.rotate(angle, Image.Resampling.BILINEAR)) > 127


@pytest.mark.parametrize("on_surface", [False, True], ids=["backdrop", "surface"])
@pytest.mark.parametrize("shape", [T_SHIRT, SNEAKER], ids=["symmetric", "shoe"])
@pytest.mark.parametrize("angle", [-27.0, -14.0, -6.0, 9.0, 21.0, 29.0])
def test_a_turned_garment_or_shoe_is_turned_back_by_its_angle(shape, angle, on_surface):
    # a shoe: by its minimum-area box on a plain backdrop, by its sole on a textured surface
    assert segmentation.tilt(_turned_shape(shape, angle), on_surface) == pytest.approx(-angle, abs=2.0)


@pytest.mark.parametrize("on_surface", [False, True], ids=["backdrop", "surface"])
@pytest.mark.parametrize("shape", [T_SHIRT, SNEAKER], ids=["symmetric", "shoe"])
def test_an_upright_garment_or_shoe_is_left_upright(shape, on_surface):
    assert segmentation.tilt(_turned_shape(shape, 0.0), on_surface) == 0.0


@pytest.mark.parametrize("angle", [-24.0, -18.0, -9.0, 12.0])
def test_a_shoe_on_a_surface_is_set_on_its_sole_where_its_box_is_no_guide(angle):
    # A flat sole under a shaft rising to a point: its minimum-area box lies 7-30 degrees away from the sole at
    # these angles (what a plain backdrop's rule answers), the sole rule finds it.
    boot = ((0, 100), (100, 100), (73, 58), (71, 9), (41, 75))
    turned = _turned_shape(boot, angle)
    assert segmentation.tilt(turned, on_surface=True) == pytest.approx(-angle, abs=2.0)
    assert segmentation.tilt(turned) != pytest.approx(-angle, abs=2.0)


def _jpeg(picture: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.clip(np.rint(picture), 0, 255).astype(np.uint8), "RGB").save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def test_a_turned_garment_on_wood_is_framed_alone_and_upright():
    # A trouser-like object 110 x 40 turned by 20 degrees: upright, it spans 28 rows and about 10 columns.
    framed = load_picture(_jpeg(_on_grain(_turned_rectangle(SIZE, (110, 40), 20.0))), "table.jpg")
    view = framed.image.numpy()
    columns = np.flatnonzero((view > 60).any(0))
    assert columns.size <= 14  # turned, its box would be about 20 columns wide
    assert view[:, : columns[0] - 2].max(initial=0) < 40 and view[:, columns[-1] + 3 :].max(initial=0) < 40
    assert framed.cues is not None and framed.cues.coverage < 0.5  # the grain is not part of the object


def test_a_dark_shoe_on_grass_that_stands_out_by_colour_alone_is_found():
    # Grass's noise sets a brightness floor that a navy shoe's contrast does not reach; its colour and texture
    # set it apart, so the framing must look for it on the surface before calling the picture empty.
    from skimage import data as sk

    side = 400
    grass = np.asarray(Image.fromarray(sk.grass()).convert("RGB").resize((side, side)), np.float32)
    grass *= np.array([0.6, 1.0, 0.5], np.float32)
    shoe = Image.new("L", (side, side), 0)
    ImageDraw.Draw(shoe).polygon([(80 + 2.4 * x, 80 + 2.4 * y) for x, y in SNEAKER], fill=255)
    alpha = np.asarray(shoe, np.float32)[..., None] / 255
    picture = grass * (1 - alpha) + np.array([35, 40, 70], np.float32) * alpha
    framed = load_picture(_jpeg(picture), "shoe-on-grass.jpg")
    view = framed.image.numpy()
    assert framed.cues is not None and 0.2 < framed.cues.coverage < 0.6  # the shoe's box, not the whole lawn
    assert (view > 60).sum() > 150  # a shoe's silhouette, not an empty view


def test_a_garment_on_a_crisp_check_is_framed_without_it():
    # A gingham of two flat colours with little noise: a fifth of the border on either colour, too little noise for
    # a textured surface by the noise alone; framed as on a plain backdrop, the other colour's squares were the object.
    height, width = 300, 260
    y, x = np.mgrid[0:height, 0:width]
    check = ((x // 24 + y // 24) % 2)[..., None]
    cloth = np.where(check, np.array([200, 60, 80], np.float32), np.array([90, 170, 200], np.float32))
    mask = _turned_rectangle((height, width), (150, 70), 0.0)[..., None].astype(np.float32)
    picture = cloth * (1 - mask) + np.float32(245) * mask
    picture += np.random.default_rng(0).normal(0, 2.0, picture.shape)
    framed = load_picture(_jpeg(picture), "on-gingham.jpg")
    assert framed.cues is not None and framed.cues.textured and framed.cues.coverage < 0.25, framed.cues
    view = framed.image.numpy()
    assert (view[:, :4] < 40).all() and (view[:, -4:] < 40).all()  # no squares beside it


@pytest.mark.parametrize("seed", [52, 225, 236])
def test_a_garment_on_a_sheet_shaded_by_its_folds_is_framed_without_them(seed):
    # A phone's denoised photo of a sheet: its folds keep much of the border off the smooth background fit, with under
    # a level of noise. Framed as on a plain backdrop, the folds' light and shade were the object, the shirt a corner.
    # (Seeds whose folds, not their noise or the pieces of the border, decide the path: 5 of the first 300.)
    shirt = np.asarray(garment_mask("shirt", (28, 28)))
    alone = load_picture(surfaces.render(shirt, "flat", np.random.default_rng(seed), max_angle=0)).pixels > 60
    framed = load_picture(surfaces.render(shirt, "sheet", np.random.default_rng(seed), max_angle=0))
    cues = framed.cues
    assert cues is not None and cues.border_fit < images.SURFACE_FIT and cues.noise < images.SURFACE_MIN_NOISE, cues
    assert cues.textured
    view = framed.pixels > 60
    assert (view & alone).sum() / (view | alone).sum() > 0.8


def test_a_square_gingham_with_white_squares_along_its_edges_is_no_digital_picture():
    # Half of its border is white and flat, as a dataset image saved on white: read as one, the squares were the view.
    framed = load_picture(square_gingham(), "gingham.png")
    assert framed.cues is not None and framed.cues.textured, framed.cues
    view = framed.image.numpy()
    assert (view[:, :4] < 40).all() and (view[:, -4:] < 40).all()  # the garment alone, no squares beside it


@pytest.mark.parametrize("kind", surfaces.KINDS)
def test_each_surface_renders_a_seeded_photo(kind):
    image = np.zeros((28, 28), np.uint8)
    image[2:26, 8:20] = 200
    first = surfaces.render_many(image[None], kind, 0)
    assert first == surfaces.render_many(image[None], kind, 0) != surfaces.render_many(image[None], kind, 1)
    with Image.open(io.BytesIO(first[0])) as photo:
        assert photo.format in ("JPEG", "PNG") and max(photo.size) >= surfaces.LONGER_SIDE[0]


def test_a_printed_check_is_photographed_or_saved_losslessly_and_framed_as_a_surface_either_way():
    image = np.zeros((28, 28), np.uint8)
    image[2:26, 8:20] = 200
    files = surfaces.render_many(np.repeat(image[None], 8, 0), "check", 0)
    formats = {Image.open(io.BytesIO(f)).format for f in files}
    assert formats == {"JPEG", "PNG"}
    lossless = [f for f in files if f.startswith(b"\x89PNG")]
    assert all(load_picture(f, "check.png").cues.textured for f in lossless)


def test_an_unknown_surface_is_refused():
    with pytest.raises(ValueError, match="unknown surface 'sand'"):
        surfaces.render(np.zeros((28, 28), np.uint8), "sand", np.random.default_rng(0))
