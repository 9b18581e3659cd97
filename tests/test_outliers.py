import io

import pytest
from PIL import Image

pytest.importorskip("skimage")
pytest.importorskip("sklearn")

from fmnist.testing import outliers  # noqa: E402 - after the skips: it needs scikit-image and scikit-learn


def test_every_kind_is_built_and_decodes_as_a_picture():
    pictures = outliers.build(1, "tune", seed=3)
    assert [p.kind for p in pictures] == list(outliers.KINDS)
    for p in pictures:
        with Image.open(io.BytesIO(p.data)) as image:
            assert min(image.size) >= 20 and image.format == ("PNG" if p.suffix == ".png" else "JPEG")


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
