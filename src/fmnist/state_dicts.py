"""Bare state dicts users bring (`torch.save(model.state_dict())`): which known network they hold, as a config.

Two layouts are known, recognised by their keys and tensor shapes alone:

- the network of the PyTorch "Quickstart" tutorial (pytorch.org/tutorials/beginner/basics/quickstart_tutorial):
  `flatten` then `linear_relu_stack` = Linear(784, 512), ReLU, Linear(512, 512), ReLU, Linear(512, 10); any
  number and width of hidden layers is accepted. It was trained on `ToTensor()` pixels: [0, 1], no
  normalisation, which is exactly what fmnist feeds every model (`data.as_input`), so it loads unchanged.
- fmnist's own models (`models.mlp`, `models.cnn`, the keys `models.build` gives, also with the `module.`
  prefix of DistributedDataParallel or the `_orig_mod.` of torch.compile): widths, batch norm, conv blocks
  and head are read from the shapes. The activation is not in a state dict: ReLU, as in every preset,
  is assumed and said. Dropout does not act at inference; only its place in the layer numbering shows.

Either becomes an fmnist Config whose model (`models.build`) holds the same tensors in the same order;
the match is checked tensor by tensor, name and shape.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TypeGuard

import torch

from fmnist import models
from fmnist.config import Config
from fmnist.data import SIDE
from fmnist.errors import FmnistError

QUICKSTART_PREFIX = "linear_relu_stack."
WRAPPER_PREFIXES = ("module.", "_orig_mod.")
# What a bare state dict trained on is not known, so no training image counts as unseen: nothing may be
# fitted on a "validation split" of it (fmnist calibrate refuses).
UNKNOWN_SPLIT = 0
# What `load_model` accepts, said in full in every refusal.
LOADABLE = (
    "fmnist loads its own checkpoints (fmnist train: a .pt file or the run directory), its ONNX exports "
    "(fmnist export), and state dicts saved with torch.save(model.state_dict()), alone or as the "
    "model_state_dict of a training checkpoint, of the PyTorch Quickstart network (linear_relu_stack) or "
    "of an fmnist mlp or cnn"
)
PIXELS = "input pixels in [0, 1] (ToTensor(), no normalisation), as fmnist feeds them"


@dataclass(frozen=True)
class Recognised:
    """A bare state dict as fmnist sees it: `config` builds the network, `weights` are its state dict
    (renamed to that network's keys), `description` says what was found for the user."""

    config: Config
    weights: dict[str, torch.Tensor]
    description: str


# Where PyTorch's "Saving and loading a general checkpoint" recipe, and the training scripts that follow it
# or Lightning, put the model's state dict beside the optimizer's, the epoch and the loss.
CHECKPOINT_KEYS = ("model_state_dict", "state_dict", "model")


def is_state_dict(value: object) -> TypeGuard[dict[str, torch.Tensor]]:
    """A non-empty dict of tensors by name: what `model.state_dict()` gives."""
    return (
        isinstance(value, dict)
        and bool(value)
        and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in value.items())
    )


def find_state_dict(value: object) -> tuple[dict[str, torch.Tensor], str] | None:
    """The model's state dict in what torch.load returned: the whole of it, or its entry under one of
    CHECKPOINT_KEYS in a training checkpoint of the general-checkpoint recipe; with where it was found
    ("" for the whole). None when there is none."""
    if is_state_dict(value):
        return value, ""
    if isinstance(value, dict):
        for key in CHECKPOINT_KEYS:
            entry = value.get(key)
            if is_state_dict(entry):
                return entry, key
    return None


def recognise(weights: dict[str, torch.Tensor], path: str | Path) -> Recognised:
    """The known network `weights` (a state dict) belongs to. Raises FmnistError, in one line, when it is none."""
    weights = _unwrapped(weights)
    if all(k.startswith(QUICKSTART_PREFIX) for k in weights):
        cfg, what, activation = _quickstart_config(weights), "the PyTorch Quickstart network", "ReLU"
    else:
        cfg, what = _fmnist_config(weights), "an fmnist network"
        activation = "ReLU assumed (a state dict does not record it)"
    renamed = _renamed(weights, models.build(cfg).state_dict()) if cfg is not None else None
    if cfg is None or renamed is None:
        first = next(iter(weights.items()))
        raise FmnistError(
            f"{path}: a state dict of {len(weights)} tensors (first {first[0]} "
            f"{list(first[1].shape)}) that matches no network fmnist knows; {LOADABLE}"
        )
    shape = (
        "-".join(map(str, [SIDE * SIDE, *cfg.hidden, 10]))
        if cfg.model == "mlp"
        else f"channels {','.join(map(str, cfg.hidden))}, {cfg.convs} conv(s) per block, head {cfg.head or 'none'}"
    )
    norm = ", batch norm" if cfg.batch_norm else ""
    return Recognised(cfg, renamed, f"state dict of {what}: {cfg.model} {shape}{norm}, {activation}; {PIXELS}")


def _unwrapped(weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    for prefix in WRAPPER_PREFIXES:
        if all(k.startswith(prefix) for k in weights):
            weights = {k[len(prefix) :]: v for k, v in weights.items()}
    return weights


def _quickstart_config(weights: dict[str, torch.Tensor]) -> Config | None:
    """Linear layers only (the ReLUs hold no tensors): their output widths but the last are the hidden ones."""
    layers = _layers(weights)
    if any(names != {"weight", "bias"} or weights[f"{p}.weight"].dim() != 2 for p, names in layers):
        return None
    hidden = tuple(weights[f"{p}.weight"].shape[0] for p, _ in layers[:-1])
    return Config(model="mlp", hidden=hidden, activation="relu", val_size=UNKNOWN_SPLIT) if hidden else None


def _fmnist_config(weights: dict[str, torch.Tensor]) -> Config | None:
    """The config whose models.build has these tensors, read from the shapes; None when they fit neither model."""
    layers = _layers(weights)
    if not layers or not all(prefix.isdigit() for prefix, _ in layers):
        return None
    batch_norm = any("running_mean" in names for _, names in layers)
    kernels = [int(p) for p, names in layers if "weight" in names and weights[f"{p}.weight"].dim() == 4]
    linears = [p for p, names in layers if "weight" in names and weights[f"{p}.weight"].dim() == 2]
    if not kernels:
        hidden = tuple(weights[f"{p}.weight"].shape[0] for p in linears[:-1])
        return Config(model="mlp", hidden=hidden, batch_norm=batch_norm, val_size=UNKNOWN_SPLIT) if hidden else None
    # Conv, [BatchNorm], activation: the next conv of a block comes this many modules later; a
    # max-pool (and dropout) between blocks makes the gap larger.
    within = 3 if batch_norm else 2
    blocks: list[list[int]] = [[kernels[0]]]
    for previous, index in zip(kernels, kernels[1:], strict=False):
        if index - previous == within:
            blocks[-1].append(index)
        else:
            blocks.append([index])
    if len({len(b) for b in blocks}) != 1 or len(linears) not in (1, 2):
        return None
    hidden = tuple(weights[f"{b[0]}.weight"].shape[0] for b in blocks)
    head = weights[f"{linears[0]}.weight"].shape[0] if len(linears) == 2 else 0
    return Config(
        model="cnn", hidden=hidden, convs=len(blocks[0]), head=head, batch_norm=batch_norm, val_size=UNKNOWN_SPLIT
    )


def _layers(weights: dict[str, torch.Tensor]) -> list[tuple[str, set[str]]]:
    """(module name, its tensor names) in the module's order: "10" after "9", "stack.2" after "stack.0"."""
    groups: dict[str, set[str]] = {}
    for key in weights:
        prefix, _, name = key.rpartition(".")
        groups.setdefault(prefix, set()).add(name)

    def order(prefix: str) -> tuple[tuple[int, int | str], ...]:
        return tuple((0, int(p)) if p.isdigit() else (1, p) for p in prefix.split("."))

    return sorted(groups.items(), key=lambda item: order(item[0]))


def _renamed(source: dict[str, torch.Tensor], target: dict[str, torch.Tensor]) -> dict[str, torch.Tensor] | None:
    """`source`'s tensors under `target`'s keys, module by module in order, when every module has the same
    tensor names and shapes; else None."""
    ours, theirs = _layers(source), _layers(target)
    if len(ours) != len(theirs):
        return None
    renamed = {}
    for (prefix, names), (target_prefix, target_names) in zip(ours, theirs, strict=True):
        if names != target_names:
            return None
        for name in names:
            tensor, expected = source[f"{prefix}.{name}"], target[f"{target_prefix}.{name}"]
            if tensor.shape != expected.shape:
                return None
            renamed[f"{target_prefix}.{name}"] = tensor
    return renamed
