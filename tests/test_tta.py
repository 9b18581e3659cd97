import pytest
import torch
from torch import nn

from fmnist import trust as trust_lib
from fmnist.data import as_input
from fmnist.errors import FmnistError
from fmnist.inference import probabilities
from fmnist.tta import TTAPredictor, with_tta


class ModelPredictor:
    """The inference.Predictor interface over a bare model."""

    trust = trust_lib.UNFITTED  # no temperature: probabilities are the softmax of the logits

    def __init__(self, model: nn.Module):
        self.model = model.eval()

    @torch.inference_mode()
    def logits(self, images):
        return self.model(as_input(images))

    def describe(self):
        return {"format": "test"}


class Symmetrised(nn.Module):
    """f(x) + f(mirror x): a model whose output does not change when the image is mirrored."""

    def __init__(self):
        super().__init__()
        self.inner = nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 10))

    def forward(self, x):
        return self.inner(x) + self.inner(x.flip(-1))


IMAGES = torch.randint(0, 256, (7, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))


def test_flip_tta_of_a_mirror_symmetric_model_equals_its_plain_output():
    torch.manual_seed(0)
    plain = ModelPredictor(Symmetrised())
    tta = TTAPredictor(plain, "flip")
    assert torch.allclose(probabilities(tta, IMAGES), probabilities(plain, IMAGES), atol=1e-6)
    assert torch.equal(tta.logits(IMAGES).argmax(1), plain.logits(IMAGES).argmax(1))
    assert tta.describe() == {"format": "test", "tta": "flip", "tta_views": ["identity", "hflip"]}


def test_flip_tta_averages_the_two_views_of_an_asymmetric_model():
    torch.manual_seed(0)
    plain = ModelPredictor(nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 10)))
    tta = TTAPredictor(plain, "flip")
    expected = (plain.logits(IMAGES) + plain.logits(IMAGES.flip(-1))) / 2  # the views' logits averaged
    assert torch.allclose(tta.logits(IMAGES), expected, atol=1e-5)
    assert not torch.allclose(expected, plain.logits(IMAGES), atol=1e-3)
    assert torch.allclose(probabilities(tta, IMAGES), expected.softmax(1), atol=1e-6)


def test_mode_none_is_the_predictor_itself_and_unknown_modes_are_refused():
    plain = ModelPredictor(nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 10)))
    assert with_tta(plain, "none") is plain
    with pytest.raises(FmnistError, match="unknown TTA mode"):
        with_tta(plain, "rotate")
