from torch import nn

from fmnist.bench.flops import flops_per_image


def test_flops_are_counted_from_the_layers():
    forward, training = flops_per_image(nn.Sequential(nn.Flatten(), nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 10)))
    assert forward == 2 * (784 * 512 + 512 * 10)
    assert training == 2 * forward + 2 * 512 * 10  # no input gradient for the first layer
    conv_forward, _ = flops_per_image(nn.Sequential(nn.Conv2d(1, 4, 3, padding=1)))
    assert conv_forward == 2 * 4 * 28 * 28 * 9
