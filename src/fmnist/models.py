"""Model registry. Every model maps float images [B, 1, 28, 28] in [0, 1] to logits [B, 10]."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from fmnist.config import Config
from fmnist.data import CLASSES, SIDE
from fmnist.errors import FmnistError

NUM_CLASSES = len(CLASSES)
ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU, "tanh": nn.Tanh}


def mlp(cfg: Config) -> nn.Module:
    """Fully connected: flatten, then Linear (+BatchNorm) + activation (+Dropout) per hidden width."""
    layers: list[nn.Module] = [nn.Flatten()]
    width = SIDE * SIDE
    for h in cfg.hidden:
        layers.append(nn.Linear(width, h))
        if cfg.batch_norm:
            layers.append(nn.BatchNorm1d(h))
        layers.append(ACTIVATIONS[cfg.activation]())
        if cfg.dropout:
            layers.append(nn.Dropout(cfg.dropout))
        width = h
    layers.append(nn.Linear(width, NUM_CLASSES))
    return nn.Sequential(*layers)


def cnn(cfg: Config) -> nn.Module:
    """Conv blocks (cfg.convs 3x3 convs, each with BatchNorm when asked, then 2x2 max-pool), then
    either global average pooling or, with cfg.head, a fully connected layer on the flattened
    features; then the output layer.

    The weights are channels-last: oneDNN's convolutions then run without layout conversions
    (the speed-up per CPU kind: benchmarks/conv_layout.py, docs/PERFORMANCE.md). State dicts do
    not depend on it.
    """
    layers: list[nn.Module] = []
    channels, side = 1, SIDE
    for c in cfg.hidden:
        for i in range(cfg.convs):
            layers.append(nn.Conv2d(channels if i == 0 else c, c, 3, padding=1, bias=not cfg.batch_norm))
            if cfg.batch_norm:
                layers.append(nn.BatchNorm2d(c))
            layers.append(ACTIVATIONS[cfg.activation]())
        layers.append(nn.MaxPool2d(2))
        if cfg.dropout:
            layers.append(nn.Dropout(cfg.dropout))
        channels, side = c, side // 2
    if cfg.head:
        layers += [nn.Flatten(), nn.Linear(channels * side * side, cfg.head)]
        if cfg.batch_norm:
            layers.append(nn.BatchNorm1d(cfg.head))
        layers.append(ACTIVATIONS[cfg.activation]())
        if cfg.dropout:
            layers.append(nn.Dropout(cfg.dropout))
        channels = cfg.head
    else:
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    layers.append(nn.Linear(channels, NUM_CLASSES))
    # Module.to accepts memory_format at runtime; torch's stubs leave it out of the overloads.
    return nn.Sequential(*layers).to(memory_format=torch.channels_last)  # type: ignore[call-overload]


MODELS: dict[str, Callable[[Config], nn.Module]] = {"mlp": mlp, "cnn": cnn}


def build(cfg: Config) -> nn.Module:
    return MODELS[cfg.model](cfg)


def check_freeze(model: nn.Module, layers: int) -> None:
    """Raises FmnistError when freezing the first `layers` weight layers of `model` would leave its output layer
    none to train (see `freeze`)."""
    weights = sum(isinstance(m, (nn.Linear, nn.Conv2d)) for m in model.modules())
    if layers >= weights:
        raise FmnistError(
            f"freeze {layers}: this model has {weights} weight layers and the last (the output layer) must train; "
            f"freeze at most {weights - 1}"
        )


def freeze(model: nn.Module, layers: int) -> None:
    """Keep the first `layers` weight layers (Linear, Conv2d) of `model` as they are: their parameters, and those
    of the batch norm after each, stop taking gradients, and those batch norms stop updating their running
    statistics (momentum 0). The output layer cannot be frozen. Raises FmnistError when `layers` leaves it none
    (check_freeze)."""
    check_freeze(model, layers)
    modules = list(model.modules())
    weights = [i for i, m in enumerate(modules) if isinstance(m, (nn.Linear, nn.Conv2d))]
    if not layers:
        return
    for module in modules[: weights[layers]]:
        for p in module.parameters(recurse=False):
            p.requires_grad_(False)
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.momentum = 0.0


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
