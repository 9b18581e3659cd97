import pytest
import torch

from fmnist import config, models
from fmnist.config import Config


def test_reference_mlp_has_669706_parameters():
    model = models.build(Config())
    assert models.parameter_count(model) == 784 * 512 + 512 + 512 * 512 + 512 + 512 * 10 + 10 == 669_706


def test_registry_matches_config_choices():
    assert set(models.MODELS) == set(config.MODELS)
    assert set(models.ACTIVATIONS) == set(config.ACTIVATIONS)


@pytest.mark.parametrize(
    "cfg",
    [
        Config(),
        Config(hidden=(64, 32, 16), activation="gelu", dropout=0.2, batch_norm=True),
        Config(model="cnn", hidden=(8, 16), batch_norm=True, dropout=0.1),
    ],
)
def test_models_map_images_to_ten_logits(cfg):
    model = models.build(cfg)
    x = torch.rand(5, 1, 28, 28)
    assert model(x).shape == (5, 10)


def test_mlp_options_change_the_layers():
    plain = models.build(Config(hidden=(32,)))
    rich = models.build(Config(hidden=(32,), batch_norm=True, dropout=0.5, activation="tanh"))
    kinds = [type(m).__name__ for m in rich]
    assert kinds == ["Flatten", "Linear", "BatchNorm1d", "Tanh", "Dropout", "Linear"]
    assert len(plain) == 4


def test_one_batch_overfits():
    torch.manual_seed(0)
    model = models.build(Config(hidden=(64,)))
    x, y = torch.rand(32, 1, 28, 28), torch.randint(0, 10, (32,))
    opt = torch.optim.Adam(model.parameters(), 1e-2)
    for _ in range(100):
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert (model(x).argmax(1) == y).all()
