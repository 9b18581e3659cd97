from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage
from support import noisy_product_photo, product_photo

from fmnist import shadows
from fmnist.images import load_picture


def garment(side: int = 300) -> np.ndarray:
    """float [side, side]: a shirt-like object of contrast 200, its edge softened by a pixel, on a backdrop of 0."""
    plane = np.zeros((side, side))
    plane[90:210, 100:200] = 200.0  # body
    plane[90:130, 60:240] = 200.0  # sleeves
    return ndimage.gaussian_filter(plane, 1.0)


def cast(plane: np.ndarray, dy: int, dx: int, blur: float, level: float) -> np.ndarray:
    """`plane` with the drop shadow of its object: its silhouette moved by (dy, dx), blurred, at `level`."""
    silhouette = (plane > 100).astype(float)
    shadow = level * ndimage.gaussian_filter(np.roll(silhouette, (dy, dx), (0, 1)), blur)
    return np.where(silhouette > 0, plane, np.maximum(plane, shadow))


def box(mask: np.ndarray) -> tuple[int, int, int, int]:
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    return int(rows[0]), int(rows[-1]), int(cols[0]), int(cols[-1])


@pytest.mark.parametrize(("dy", "dx", "blur"), [(12, 12, 6.0), (15, 0, 8.0), (6, -10, 8.0)])
def test_a_drop_shadow_is_taken_out_and_the_box_is_the_objects(dy, dx, blur):
    plain = garment()
    shadowed = cast(plain, dy, dx, blur, 50.0)
    assert box(shadowed > 12) != box(plain > 12)  # the shadow widens the object's box
    lifted = shadows.without_shadow(shadowed, shadowed > 12)
    assert lifted is not None
    assert box(lifted > 12) == pytest.approx(box(plain > 12), abs=2)
    beside = plain < 1
    assert (lifted[beside] > 12).sum() < 0.05 * (shadowed[beside] > 12).sum()  # what stood out of it is gone


def test_an_object_without_a_shadow_is_left_as_it_is():
    plain = garment()
    assert shadows.without_shadow(plain, plain > 12) is None  # its soft rim lies all round it: no drop shadow
    for height in (15, 25):  # a light sole under a dark shoe: sharp-edged, the shoe's own
        shoe = np.zeros((300, 300))
        shoe[100:160, 60:240], shoe[160 : 160 + height, 60:240] = 200.0, 45.0
        assert shadows.without_shadow(shoe, shoe > 12) is None
    assert shadows.without_shadow(plain, np.zeros_like(plain, bool)) is None
    small = ndimage.zoom(cast(plain, 12, 12, 6.0, 50.0), 0.15)  # too few pixels to tell a shadow from a rim
    assert shadows.without_shadow(small, small > 12) is None


@pytest.mark.parametrize(("kind", "noise", "seed"), [("trouser", 0.0, 2), ("shirt", 0.0, 2), ("trouser", 4.0, 5)])
def test_a_shadowed_product_photo_is_framed_as_without_its_shadow(kind, noise, seed):
    """On a flat backdrop (a digital picture's path) and with sensor noise (a photo's path) alike."""
    plain = load_picture(noisy_product_photo(kind, noise, seed))
    shadowed = load_picture(noisy_product_photo(kind, noise, seed, shadow=True))
    assert (shadowed.cues is None) == (noise == 0)  # both paths are taken
    difference = np.abs(plain.pixels.astype(int) - shadowed.pixels.astype(int)).mean()
    assert difference < 10  # 27 to 33 levels with the shadow framed in


def test_photos_without_a_shadow_are_framed_as_before(monkeypatch):
    lifted = []
    without_shadow = shadows.without_shadow
    monkeypatch.setattr(shadows, "without_shadow", lambda *a: lifted.append(without_shadow(*a)) or lifted[-1])
    for kind in ("shirt", "trouser"):
        for noise in (0.0, 4.0):
            for seed in range(4):
                load_picture(noisy_product_photo(kind, noise, seed))
    for kind in ("shirt", "trouser", "bag"):
        load_picture(product_photo(kind))
    assert lifted and all(contrast is None for contrast in lifted)


def test_the_correlations_are_the_sums_over_every_translation():
    rng = np.random.default_rng(0)
    weighted, moved = rng.random((20, 30)), rng.random((2, 20, 30))
    found = shadows._correlations(weighted, moved)
    span = range(-shadows.MAX_SHIFT, shadows.MAX_SHIFT + 1)
    for n in range(2):
        direct = [[(weighted * shadows._translated(moved[n], dy, dx)).sum() for dx in span] for dy in span]
        assert found[n] == pytest.approx(np.array(direct), abs=1e-9)


def test_a_shadow_cast_past_the_edge_of_the_picture():
    shadowed = cast(garment(), 12, 12, 6.0, 50.0)[60:240, 30:215]  # the object and its shadow touch the edges
    lifted = shadows.without_shadow(shadowed, shadowed > 12)
    assert lifted is not None and lifted.shape == shadowed.shape and lifted.min() >= min(shadowed.min(), 0)


def test_a_shadow_that_overlaps_nothing_beside_the_core_is_no_fit():
    # An analysis plane recorded from a garment photographed on a folded sheet, its object filling nearly all of it. A
    # shadow translated almost wholly under the core has an energy beside it of FFT rounding noise, and its
    # least-squares remainder came out below 0: a "shadow" explaining everything was taken out, where the page, which
    # sums directly, found none.
    plane = np.load(Path(__file__).parent / "data" / "shadow_plane_fft_noise.npz")["plane"].astype(np.float64)
    assert shadows._shadow(plane) is None
