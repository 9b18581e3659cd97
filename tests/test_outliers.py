import io

import pytest
from PIL import Image

pytest.importorskip("skimage")
pytest.importorskip("sklearn")

from fmnist.testing import forms, outliers  # noqa: E402 - after the skips: it needs scikit-image and scikit-learn


def test_every_kind_is_built_and_decodes_as_a_picture():
    pictures = outliers.build(1, "tune", seed=3)
    assert [p.kind for p in pictures] == list(outliers.KINDS)
    formats = {suffix: fmt for fmt, suffix in forms.SUFFIX.items()}
    for p in pictures:
        with Image.open(io.BytesIO(p.data)) as image:
            assert min(image.size) >= 20 and image.format == formats[p.suffix]


def test_mnist_style_digits_come_in_the_file_forms_of_a_dataset_image():
    from fmnist.images import load_picture

    pictures = outliers.build(30, "holdout", seed=1, kinds=("mnist-form",))
    assert len({p.suffix for p in pictures}) >= 3
    sizes = set()
    for p in pictures:
        with Image.open(io.BytesIO(p.data)) as image:
            sizes.add(image.size)
        assert load_picture(p.data, p.kind).pixels.shape == (28, 28)
    assert len(sizes) >= 5 and (28, 28) in sizes  # as the dataset's size, enlarged, padded, on a figure


def test_small_digits_come_enlarged_as_grayscale_pngs_light_on_black_or_inverted():
    import numpy as np

    pictures = outliers.build(40, "tune", seed=2, kinds=("digit8",))
    sizes, corners = set(), set()
    for p in pictures:
        with Image.open(io.BytesIO(p.data)) as image:
            assert image.format == "PNG" and image.mode == "L"
            sizes.add(image.size)
            corners.add(int(np.asarray(image)[0, 0]) > 128)  # scikit-learn's digits leave their corners blank
    assert (28, 28) in sizes and sizes <= {(28, 28), (56, 56), (112, 112)} and len(sizes) >= 2
    assert corners == {False, True}


def test_parts_differ_and_a_seed_repeats():
    tune = outliers.build(2, "tune", kinds=("face", "digit"))
    holdout = outliers.build(2, "holdout", kinds=("face", "digit"))
    assert {p.data for p in tune}.isdisjoint(p.data for p in holdout)
    assert [p.data for p in tune] == [p.data for p in outliers.build(2, "tune", kinds=("face", "digit"))]


@pytest.mark.parametrize(
    "args, message",
    [((1, "test"), "part must be"), ((0, "tune"), "count_per_kind"), ((1, "tune", 0, ("cat",)), "unknown kinds")],
)
def test_bad_arguments_are_refused(args, message):
    with pytest.raises(ValueError, match=message):
        outliers.build(*args)
