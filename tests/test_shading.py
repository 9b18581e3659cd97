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
    for gray in (ramp, circle, stripes):
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


def test_a_screenshots_title_bar_is_no_edge_of_light():
    """Its border steps where the bar meets it, but across the chord between them the page is one colour on either
    side a little way off: the profile shows no step (a picture that crashed the framing)."""
    for picture in outliers.build(20, "holdout", 100, kinds=("screenshot",)):
        load_picture(picture.data)


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
