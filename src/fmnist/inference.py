"""A trained model behind one interface, whatever file holds it: uint8 images in, class probabilities out.

`fmnist predict`, `fmnist eval` and `fmnist serve` use `load_predictor`, so they answer the same for a
checkpoint, a run directory or an exported model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import torch

from fmnist import checkpoint
from fmnist.data import as_input


class Predictor(Protocol):
    def probabilities(self, images: torch.Tensor) -> torch.Tensor:
        """float32 [N, 10] on the CPU for uint8 [N, 28, 28] images (any device)."""
        ...

    def describe(self) -> dict[str, Any]:
        """Plain facts about the model (kind, architecture, source file) for logs and health checks."""
        ...


class TorchPredictor:
    def __init__(self, path: str | Path, device: str | torch.device = "cpu"):
        self.device = torch.device(device)
        self.model, self.config, _ = checkpoint.load_model(path, self.device)
        self.path = Path(path)

    @torch.inference_mode()
    def probabilities(self, images: torch.Tensor) -> torch.Tensor:
        logits = self.model(as_input(images.to(self.device)))
        return logits.float().softmax(1).cpu()

    def describe(self) -> dict[str, Any]:
        return {"format": "pytorch", "model": self.config.model, "source": str(self.path), "device": str(self.device)}


def load_predictor(path: str | Path, device: str | torch.device = "cpu") -> Predictor:
    """A predictor for a checkpoint (.pt) or a run directory."""
    return TorchPredictor(path, device)
