"""Test-time augmentation (TTA): a prediction averaged over transformed views of each image.

As fastai's `Learner.tta` and timm's `--tta` do, the views' outputs are averaged (here the logits,
which the temperature then scales);
the model is called once on all views of a batch together. Horizontal flip is the one view used:
it is the augmentation Fashion-MNIST training uses (clothes are left-right symmetric in kind),
and the others the training set knows (crops, shifts) would move the centred product.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from fmnist.errors import FmnistError

if TYPE_CHECKING:
    import numpy as np
    import torch

# Each view maps uint8 images [N, 28, 28] to the same shape.
VIEWS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "identity": lambda images: images,
    "hflip": lambda images: images.flip(-1),
}
MODES: dict[str, tuple[str, ...]] = {"none": ("identity",), "flip": ("identity", "hflip")}


class TTAPredictor:
    """A inference.Predictor whose logits are the mean of `inner`'s over the views of `mode` (float32 [N, 10]
    on the CPU), which `inner`'s temperature then scales (fmnist.trust): the
    out-of-distribution score reads the averaged logits as it reads any model's. Costs len(views) times the
    images per model call.
    """

    def __init__(self, inner: Any, mode: str):
        if mode not in MODES:
            raise FmnistError(f"unknown TTA mode {mode!r}; choose from {', '.join(MODES)}")
        self.inner, self.mode, self.views = inner, mode, MODES[mode]
        self.trust = inner.trust

    def logits(self, images: torch.Tensor | np.ndarray) -> torch.Tensor:
        import torch

        images = torch.as_tensor(images)
        n = len(images)
        stacked = torch.cat([VIEWS[view](images) for view in self.views])
        return self.inner.logits(stacked).view(len(self.views), n, -1).mean(0)

    def describe(self) -> dict[str, Any]:
        return {**self.inner.describe(), "tta": self.mode, "tta_views": list(self.views)}


def with_tta(predictor: Any, mode: str) -> Any:
    """`predictor` itself for mode "none", else wrapped in a TTAPredictor."""
    if mode == "none":
        return predictor
    return TTAPredictor(predictor, mode)
