"""Model registry. Every model maps float images [B, 1, 28, 28] in [0, 1] to logits [B, 10]."""

from __future__ import annotations

from typing import Callable

from torch import nn

from fmnist.config import Config
from fmnist.data import CLASSES, SIDE

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
    """Conv blocks (two 3x3 convs, each with BatchNorm when asked, then 2x2 max-pool), global pool, linear."""
    layers: list[nn.Module] = []
    channels = 1
    for c in cfg.hidden:
        for i in range(2):
            layers.append(nn.Conv2d(channels if i == 0 else c, c, 3, padding=1, bias=not cfg.batch_norm))
            if cfg.batch_norm:
                layers.append(nn.BatchNorm2d(c))
            layers.append(ACTIVATIONS[cfg.activation]())
        layers.append(nn.MaxPool2d(2))
        if cfg.dropout:
            layers.append(nn.Dropout(cfg.dropout))
        channels = c
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, NUM_CLASSES)]
    return nn.Sequential(*layers)


MODELS: dict[str, Callable[[Config], nn.Module]] = {"mlp": mlp, "cnn": cnn}


def build(cfg: Config) -> nn.Module:
    return MODELS[cfg.model](cfg)


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
