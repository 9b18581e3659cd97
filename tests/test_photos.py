"""fmnist.trust.references: the rendered product photos are what the detector and the benchmarks say they are."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

from fmnist.testing.photos import CLOSE_UP
from fmnist.trust import references as photos


def _object(seed: int) -> np.ndarray:
    """A Fashion-MNIST-like image: a random light blob framed 28 tall, 14 wide."""
    x = np.zeros((28, 28), np.uint8)
    x[:, 7:21] = np.random.default_rng(seed).integers(60, 256, (28, 14))
    return x


def _decode(data: bytes) -> tuple[Image.Image, str]:
    """The upright picture and its file format."""
    with Image.open(io.BytesIO(data)) as image:
        image.load()
        return ImageOps.exif_transpose(image), str(image.format)


def _object_box(image: Image.Image) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) of the pixels that differ clearly from the top-left-most background."""
    if image.mode == "RGBA":
        mask = np.asarray(image)[..., 3] > 127
    else:
        gray = np.asarray(image.convert("L"), np.float32)
        level = np.median(np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]]))
        mask = np.abs(gray - level) > 40
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def test_render_set_is_seeded_and_cycles_through_the_kinds():
    images = torch.from_numpy(np.stack([_object(i) for i in range(12)]))
    first, again, other = (photos.render_set(images, 10, seed) for seed in (0, 0, 1))
    assert [p.data for p in first] == [p.data for p in again]
    assert [p.data for p in first] != [p.data for p in other]
    assert [p.kind for p in first] == [*photos.KINDS, *photos.KINDS[:2]]
    assert len({p.index for p in first}) == 10  # distinct source images


def test_the_detector_references_are_rendered_small():
    images = torch.from_numpy(np.stack([_object(i) for i in range(8)]))
    low, high = photos.REFERENCE_SIDE
    for photo in photos.render_set(images, 8, 0, photos.REFERENCE_SIDE):
        image, _ = _decode(photo.data)
        assert low - 2 <= max(image.size) <= high + 2


@pytest.mark.parametrize("kind", photos.KINDS)
def test_each_kind_has_its_size_margins_and_format(kind):
    rng = np.random.default_rng(3)
    for _ in range(2):
        data, suffix = photos.render(_object(0), kind, rng)
        image, file_format = _decode(data)
        assert (file_format, suffix) == (("PNG", ".png") if kind == "cutout" else ("JPEG", ".jpg"))
        assert photos.LONGER_SIDE[0] - 2 <= max(image.size) <= photos.LONGER_SIDE[1] + 2
        top, bottom, left, right = _object_box(image)
        height, width = bottom - top, right - left
        margins = np.array(
            [top / height, (image.height - bottom) / height, left / width, (image.width - right) / width]
        )
        assert (margins <= photos.MARGINS[1] + 0.05).all(), margins
        if kind == "edge":
            assert (margins < 0.02).any(), "the object should touch an edge"
        else:
            assert (margins > photos.MARGINS[0] - 0.05).all(), margins


def test_a_close_up_has_the_margins_it_is_given():
    rng = np.random.default_rng(4)
    for _ in range(4):
        image, _ = _decode(photos.render(_object(0), "studio", rng, margins=CLOSE_UP)[0])
        top, bottom, left, right = _object_box(image)
        height, width = bottom - top, right - left
        margins = np.array(
            [top / height, (image.height - bottom) / height, left / width, (image.width - right) / width]
        )
        assert (margins <= CLOSE_UP[1] + 0.05).all() and (margins >= CLOSE_UP[0] - 0.02).all(), margins


def _tilt(image: Image.Image) -> float:
    """The object's angle from upright, degrees: its pixels' principal axis against the image's vertical."""
    gray = np.asarray(image.convert("L"), np.float32)
    ys, xs = np.nonzero(gray < 128)  # the dark object on a light backdrop
    vals, vecs = np.linalg.eigh(np.cov(np.stack([xs, ys])))
    x, y = vecs[:, np.argmax(vals)]
    return float(np.degrees(np.arctan2(abs(x), abs(y))))


def test_the_detector_references_are_turned_as_often_as_reference_turned_says():
    # The tall blob of _object stands upright (its speckle tilts the measured axis by up to 3 degrees) unless
    # turned, by a uniform angle within MAX_TURN either way; "edge" photos are never turned.
    images = torch.from_numpy(np.stack([_object(i) for i in range(160)]))
    upright = photos.render_set(images, 160, 0)
    turned = list(photos.rendered(images, 160, 0, turned=1.0))
    assert max(_tilt(_decode(p.data)[0]) for p in upright if p.kind == "studio") < 4
    tilts = [_tilt(_decode(p.data)[0]) for p in turned if p.kind == "studio"]
    assert np.mean(tilts) > 8 and max(tilts) < photos.MAX_TURN + 4, tilts
    half = list(photos.rendered(images, 160, 0, turned=photos.REFERENCE_TURNED))
    share = np.mean([_tilt(_decode(p.data)[0]) > 4 for p in half if p.kind == "studio"])
    assert abs(share - photos.REFERENCE_TURNED * (1 - 4 / photos.MAX_TURN)) < 0.25, share


def test_cutouts_are_transparent_around_the_object():
    data, _ = photos.render(_object(0), "cutout", np.random.default_rng(0))
    rgba = np.asarray(_decode(data)[0])
    assert rgba.shape[2] == 4 and rgba[0, 0, 3] == 0 and rgba[..., 3].max() == 255


def test_phone_photos_are_stored_sideways_with_an_orientation_tag():
    rng = np.random.default_rng(0)
    tags = set()
    for _ in range(8):
        data, _ = photos.render(_object(0), "phone", rng)
        with Image.open(io.BytesIO(data)) as stored:
            tag = stored.getexif().get(0x0112)
            tags.add(tag)
            upright = ImageOps.exif_transpose(stored)
            if tag in (6, 8):
                assert stored.size == upright.size[::-1]
    assert tags <= {3, 6, 8} and len(tags) >= 2


def test_unknown_kind_and_bad_count():
    with pytest.raises(ValueError, match="unknown kind"):
        photos.render(_object(0), "watercolour", np.random.default_rng(0))
    with pytest.raises(ValueError, match="count"):
        photos.render_set(torch.zeros(3, 28, 28, dtype=torch.uint8), 4, 0)


@pytest.mark.parametrize("kind", ["studio", "dark", "cutout"])
def test_on_a_hanger_is_the_same_photo_with_a_hook_above_the_garment(kind):
    from fmnist.testing.photos import on_hanger

    alone, _ = _decode(photos.render(_object(3), kind, np.random.default_rng(5))[0])
    hung, _ = _decode(on_hanger(_object(3), kind, np.random.default_rng(5), np.random.default_rng(6))[0])
    top, bottom, left, right = _object_box(alone)
    assert hung.size == alone.size
    assert _object_box(hung)[0] < top  # the hook, above the garment
    below = (slice(top + (bottom - top) // 3, None), slice(None))  # under the hanger: the garment as it was
    difference = np.abs(np.asarray(hung, np.float32)[below] - np.asarray(alone, np.float32)[below])
    assert difference.mean() < 1.0
    with pytest.raises(ValueError, match="a hanger needs room above the garment"):
        on_hanger(_object(3), "edge", np.random.default_rng(5), np.random.default_rng(6))
