import pytest
import torch

from fmnist import config, models
from fmnist.config import Config
from fmnist.errors import FmnistError


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


@pytest.mark.parametrize("model", ["mlp", "cnn"])
def test_dropout_and_batch_norm_act_in_training_only(model):
    torch.manual_seed(0)
    net = models.build(Config(model=model, hidden=(8, 16), batch_norm=True, dropout=0.5))
    x = torch.rand(6, 1, 28, 28)
    net.train()
    assert not torch.equal(net(x), net(x))  # dropout masks differ per call
    stats = {k: v.clone() for k, v in net.state_dict().items() if "running_mean" in k}
    net(x)
    assert stats and all(not torch.equal(v, net.state_dict()[k]) for k, v in stats.items())
    net.eval()
    frozen = {k: v.clone() for k, v in net.state_dict().items()}
    torch.testing.assert_close(net(x), net(x))
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in frozen.items())


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


def test_cnn_options_change_the_layers():
    def kinds(cfg):
        return [type(m).__name__ for m in models.build(cfg)]

    # `convs` 3x3 convolutions per block, one 2x2 pooling per block: the documented meaning of the options.
    assert kinds(Config(model="cnn", hidden=(8, 16, 32), convs=2)).count("Conv2d") == 6
    assert kinds(Config(model="cnn", hidden=(8, 16, 32), convs=1)).count("MaxPool2d") == 3
    # A head is a hidden Linear layer on the flattened 16 x 7 x 7 features, in place of global pooling.
    pooled = models.build(Config(model="cnn", hidden=(8, 16), convs=1))
    headed = models.build(Config(model="cnn", hidden=(8, 16), convs=1, head=32))
    assert models.parameter_count(headed) - models.parameter_count(pooled) == (16 * 7 * 7 + 1) * 32 + 32 * 10 - 16 * 10
    assert headed(torch.rand(3, 1, 28, 28)).shape == (3, 10)


def test_cnn_weights_are_channels_last_and_state_dicts_load_either_way():
    cfg = Config(model="cnn", hidden=(8, 16), head=16)
    model = models.build(cfg)
    conv = next(m for m in model if isinstance(m, torch.nn.Conv2d) and m.in_channels > 1)
    assert conv.weight.is_contiguous(memory_format=torch.channels_last) and not conv.weight.is_contiguous()
    contiguous = {k: v.contiguous() for k, v in model.state_dict().items()}
    torch.manual_seed(1)  # build() draws from torch's global generator: other weights
    other = models.build(cfg)
    x = torch.rand(4, 1, 28, 28)
    assert not torch.allclose(other.eval()(x), model.eval()(x))
    other.load_state_dict(contiguous)
    torch.testing.assert_close(other(x), model(x))


def test_cnn_depth_is_bounded_by_the_image_side():
    assert models.build(Config(model="cnn", hidden=(4, 4, 4, 4)))(torch.rand(2, 1, 28, 28)).shape == (2, 10)
    with pytest.raises(FmnistError, match="at most 4 blocks"):
        Config(model="cnn", hidden=(4, 4, 4, 4, 4))
