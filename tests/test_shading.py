import io

import numpy as np
import pytest
from PIL import Image
from support import lit_across, noisy_product_photo, product_photo

from fmnist import images, shading
from fmnist.images import load_picture
from fmnist.testing import outliers, surfaces
from fmnist.trust import references


def difference(a: bytes, b: bytes) -> float:
    return float(np.abs(load_picture(a).pixels.astype(int) - load_picture(b).pixels.astype(int)).mean())


@pytest.mark.parametrize(
    ("kind", "angle", "offset", "factors"),
    [
        ("shirt", 20.0, -0.1, (0.55,)),  # a hard shadow across the garment
        ("shirt", 10.0, 0.1, (0.7,)),
        ("trouser", 100.0, 0.15, (0.6,)),  # beside it
        ("shirt", 200.0, 0.0, (1.25,)),  # a window's light
        ("shirt", 70.0, -0.05, (0.5, 1.0)),  # the shadow of a window's bar: two edges
    ],
)
def test_an_edge_of_light_across_a_photo_is_framed_as_without_it(kind, angle, offset, factors):
    plain = noisy_product_photo(kind, 3.0, 1, backdrop=200.0)
    crossed = lit_across(plain, angle, offset, factors)
    assert difference(plain, crossed) < 10  # 59-83 levels with the edge's side taken for part of the object


def test_a_half_plane_of_shadow_is_taken_out_whole():
    gray = np.full((200, 300), 180.0)
    gray[:, 140:] *= 0.6
    gray[:, 139] = 180.0 * 0.8  # the edge falls within a pixel
    lifted = images._without_light_edges(gray)[0]
    assert float(lifted.max() - lifted.min()) < 2
    assert shading.without_light_edge(lifted, images._smooth(lifted), images._border_coordinates(200, 300)) is None


def test_light_that_is_no_straight_edge_is_left_as_it_is():
    y, x = np.mgrid[0:200, 0:300]
    border = images._border_coordinates(200, 300)
    ramp = 120.0 + 0.4 * x  # a gradient of light: the background surface's
    circle = np.where(np.hypot(y - 100, x - 150) < 70, 90.0, 200.0)  # a round object, its two sides at one level
    stripes = np.where((x // 25) % 2 == 0, 200.0, 120.0)  # a striped tablecloth: many steps on the border
    arc = np.where(np.hypot(y, x) < 180, 120.0, 200.0)  # light beyond a curved edge: two steps, no straight chord
    for gray in (ramp, circle, stripes, arc):
        assert shading.without_light_edge(gray, images._smooth(gray), border) is None


def test_photos_without_an_edge_of_light_are_framed_as_before(monkeypatch):
    """Product photos (each kind the detector is fitted on, cut at an edge included), noisy ones with a drop
    shadow and garments on textured surfaces: nothing is taken out."""
    taken = []
    without_light_edge = shading.without_light_edge
    monkeypatch.setattr(shading, "without_light_edge", lambda *a: taken.append(without_light_edge(*a)) or taken[-1])
    rng = np.random.default_rng(3)
    shirt = np.asarray(Image.open(io.BytesIO(product_photo("shirt"))).convert("L").resize((28, 28)))
    shirt = np.uint8(255 - shirt)
    for kind in references.KINDS:
        load_picture(references.render(shirt, kind, rng)[0])
    for kind in ("shirt", "trouser"):
        for seed in range(3):
            load_picture(noisy_product_photo(kind, 4.0, seed, shadow=True))
    for kind in ("wood", "cloth", "tile", "check", "gravel"):
        load_picture(surfaces.render(shirt, kind, rng))
    assert taken and all(lifted is None for lifted in taken)


def test_screenshots_with_a_title_bar_are_framed():
    """A title bar steps on the border, but across the chord between the steps the page may be one colour on
    either side a little way off: the profile shows no step (a picture that crashed the framing)."""
    for picture in outliers.build(20, "holdout", 100, kinds=("screenshot",)):
        assert load_picture(picture.data).pixels.shape == (28, 28)


def test_the_edge_is_placed_where_the_light_steps():
    """With sensor noise the border's step is as strong anywhere along a plateau as wide as the transition tried;
    the edge's ends are the border's steepest pixels, so no sliver of shadow is left along it."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:400, 0:480]
    for lit in (x < 240.5, x + 0.6 * y < 330):  # upright, and at an angle
        gray = np.where(lit, 180.0, 108.0) + rng.normal(0, 2, (400, 480))
        lifted = images._without_light_edges(gray)[0]
        assert (np.abs(lifted - 108.0) > 12).sum() < 50  # 6 noise deviations


def test_a_garment_crossed_by_a_clean_diagonal_shadow():
    """Without noise, many steps of equal strength lie along each end's plateau: one place each is tried."""
    y, x = np.mgrid[0:300, 0:300]
    gray = np.where(np.hypot(y - 150, x - 150) < 80, 60.0, 220.0) * np.where(x + y < 280, 1.0, 0.6)
    lifted = images._without_light_edges(gray)[0]
    outside = np.hypot(y - 150, x - 150) > 90
    assert float(lifted[outside].max() - lifted[outside].min()) < 12  # 88 levels with no edge found


def test_a_band_of_colour_is_no_edge_of_light_but_a_shadow_of_one_colour_is():
    """A title bar (red on a grey page) steps in luminance as a shadow does, but not by one factor in each channel."""
    page = np.full((300, 400, 3), 235.0)
    for bar, lifted in (((200.0, 30.0, 40.0), False), ((117.5, 117.5, 117.5), True)):
        picture = page.copy()
        picture[:60] = bar
        gray = picture @ np.array([0.299, 0.587, 0.114])
        smooth, border = images._smooth(gray), images._border_coordinates(300, 400)
        assert shading.without_light_edge(gray, smooth, border) is not None  # by its luminance alone, an edge
        found = shading.without_light_edge(gray, smooth, border, lambda picture=picture: picture)
        assert (found is not None) == lifted
