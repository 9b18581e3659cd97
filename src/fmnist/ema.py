"""An exponential moving average (EMA) of a model's weights, updated after every optimizer step.

The averaging copy is torch's own `torch.optim.swa_utils.AveragedModel` (a deep copy of the model
whose state dict holds the weights and the update count `n_averaged`, so a checkpoint resumes it
exactly); this module only supplies the decay, warmed up as timm's `ModelEmaV3(use_warmup=True)`
does (Ross Wightman, pytorch-image-models, timm/utils/model_ema.py):

    decay(n) = min(max_decay, 1 - (1 + n) ** -WARMUP_POWER)

where n is the number of updates already averaged. The first update copies the weights
(decay 0), so early EMA weights follow the raw ones closely instead of being pinned to the random
initialisation, and the decay reaches `max_decay` after about (1 - max_decay) ** (-1 / WARMUP_POWER)
updates (0.999: about 31,600 steps; 0.99: 1,000). Floating-point buffers (batch-norm running
statistics) are averaged like the weights; integer buffers (num_batches_tracked) are copied, as
timm's ModelEmaV3 does.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.optim.swa_utils import AveragedModel

WARMUP_POWER = 2 / 3  # timm ModelEmaV3's warmup_power (warmup_gamma 1)


def decay_at(updates: int | Tensor, max_decay: float) -> Tensor:
    """The decay of the update that follows `updates` earlier ones: 0 for the first, then rising to `max_decay`."""
    return torch.clamp(1 - (1 + torch.as_tensor(updates, dtype=torch.float64)) ** -WARMUP_POWER, max=max_decay)


Tensors = list[Tensor] | tuple[Tensor, ...]


def _ema_update(max_decay: float) -> Callable[[Tensors, Tensors, Tensor | int], None]:
    """AveragedModel's multi_avg_fn: ema <- decay * ema + (1 - decay) * current, one foreach lerp per group."""

    def update(averaged: Tensors, current: Tensors, n_averaged: Tensor | int) -> None:
        if not averaged[0].is_floating_point():  # a group of integer buffers: keep the latest count
            torch._foreach_copy_(averaged, current)
            return
        # A 0-dim tensor weight: no host sync to read n_averaged on a GPU.
        weight = (1 - decay_at(n_averaged, max_decay)).to(averaged[0].dtype)
        torch._foreach_lerp_(averaged, current, [weight] * len(averaged))

    return update


class ModelEma(AveragedModel):
    """EMA weights of `model` (any nn.Module; keeps its memory format and device).

    Call `update(model)` after each optimizer step; evaluate `ema.module`. `state_dict()` and
    `load_state_dict()` carry the averaged weights (keys prefixed "module.") and `n_averaged`.
    """

    def __init__(self, model: nn.Module, max_decay: float):
        if not 0 < max_decay < 1:
            raise ValueError(f"EMA decay must be in (0, 1), got {max_decay}")
        super().__init__(model, multi_avg_fn=_ema_update(max_decay), use_buffers=True)
        self.max_decay = max_decay
        self.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.update_parameters(model)

    def weights(self) -> dict[str, Tensor]:
        """The averaged model's own state dict (the keys of `model.state_dict()`), for inference checkpoints."""
        return self.module.state_dict()
