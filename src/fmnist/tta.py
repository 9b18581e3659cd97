"""Test-time augmentation (TTA): a prediction averaged over transformed views of each image.

As fastai's `Learner.tta` and timm's `--tta` do, the class probabilities of the views are averaged;
the model is called once on all views of a batch together. Horizontal flip is the one view used:
it is the augmentation Fashion-MNIST training uses (clothes are left-right symmetric in kind),
and the others the training set knows (crops, shifts) would move the centred product.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from fmnist.errors import FmnistError

# Each view maps uint8 images [N, 28, 28] to the same shape.
VIEWS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "identity": lambda images: images,
    "hflip": lambda images: images.flip(-1),
}
MODES: dict[str, tuple[str, ...]] = {"none": ("identity",), "flip": ("identity", "hflip")}


class TTAPredictor:
    """A inference.Predictor whose probabilities are the mean of `inner`'s over the views of `mode`.

    `logits` returns the log of those mean probabilities (float32 [N, 10] on the CPU), so that
    softmax, cross-entropy and argmax read them as they read any logits. Costs len(views) times
    the images per model call.
    """

    def __init__(self, inner: Any, mode: str):
        if mode not in MODES:
            raise FmnistError(f"unknown TTA mode {mode!r}; choose from {', '.join(MODES)}")
        self.inner, self.mode, self.views = inner, mode, MODES[mode]

    def probabilities(self, images: torch.Tensor) -> torch.Tensor:
        n = len(images)
        stacked = torch.cat([VIEWS[view](images) for view in self.views])
        return self.inner.probabilities(stacked).view(len(self.views), n, -1).mean(0)

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        return self.probabilities(images).clamp_min(torch.finfo(torch.float32).tiny).log()

    def describe(self) -> dict[str, Any]:
        return {**self.inner.describe(), "tta": self.mode, "tta_views": list(self.views)}


def with_tta(predictor: Any, mode: str) -> Any:
    """`predictor` itself for mode "none", else wrapped in a TTAPredictor."""
    if mode == "none":
        return predictor
    return TTAPredictor(predictor, mode)
