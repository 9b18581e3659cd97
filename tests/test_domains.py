import io

import numpy as np
import pytest
from PIL import Image
from support import synthetic_arrays

from fmnist.images import load_picture
from fmnist.testing import domains


@pytest.mark.parametrize("domain", domains.DOMAINS)
def test_each_domain_renders_a_seeded_photo_that_frames(domain):
    images = synthetic_arrays()["train_images"][:2]
    first, again = domains.render_many(images, domain, 0), domains.render_many(images, domain, 0)
    assert first == again and first != domains.render_many(images, domain, 1)
    with Image.open(io.BytesIO(first[0])) as photo:
        assert photo.format == "JPEG" and max(photo.size) >= domains.LONGER_SIDE[0] * 0.8
    assert load_picture(first[0]).image.shape == (28, 28)


def test_an_unknown_domain_is_refused():
    with pytest.raises(ValueError, match="unknown domain 'beach'"):
        domains.render(np.zeros((28, 28), np.uint8), "beach", np.random.default_rng(0))
