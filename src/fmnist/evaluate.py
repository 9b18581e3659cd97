"""Metrics of a model on a labelled image set: loss, accuracy, confusion matrix, per-class figures."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from fmnist.data import CLASSES, as_input
from fmnist.errors import FmnistError


@dataclass
class Evaluation:
    loss: float
    accuracy: float
    probabilities: torch.Tensor  # float32 [N, 10], on the CPU
    labels: torch.Tensor  # int64 [N], on the CPU

    @property
    def predictions(self) -> torch.Tensor:
        return self.probabilities.argmax(1)

    def confusion_matrix(self) -> torch.Tensor:
        """Counts [10, 10]: rows are true classes, columns predicted ones."""
        n = len(CLASSES)
        return torch.bincount(self.labels * n + self.predictions, minlength=n * n).view(n, n)

    def per_class(self) -> list[dict]:
        cm = self.confusion_matrix().double()
        tp, true, predicted = cm.diag(), cm.sum(1), cm.sum(0)
        recall = tp / true.clamp(min=1)
        precision = tp / predicted.clamp(min=1)
        return [
            {"class": name, "precision": p, "recall": r, "accuracy": r, "support": int(s)}
            for name, p, r, s in zip(CLASSES, precision.tolist(), recall.tolist(), true.tolist(), strict=True)
        ]


@torch.inference_mode()
def evaluate(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 1000) -> Evaluation:
    """Evaluate in eval mode without gradients; `images` uint8 [N, 28, 28] on the model's device."""
    was_training = model.training
    model.eval()
    try:
        return evaluate_logits(lambda x: model(as_input(x)), images, labels, batch_size)
    finally:
        model.train(was_training)


@torch.inference_mode()
def evaluate_logits(
    logits_of: Callable[[torch.Tensor], torch.Tensor],
    images: torch.Tensor,
    labels: torch.Tensor,
    batch_size: int = 1000,
) -> Evaluation:
    """Metrics of any classifier given as uint8 images [B, 28, 28] -> logits [B, 10] (a PyTorch model,
    an onnxruntime session), called on `batch_size` images at a time; logits on the labels' device."""
    if not len(images):
        raise FmnistError("no images to evaluate: loss and accuracy of an empty set are undefined")
    loss_sum = torch.zeros((), device=labels.device)
    probabilities = []
    for start in range(0, len(images), batch_size):
        logits = logits_of(images[start : start + batch_size]).float()
        loss_sum += F.cross_entropy(logits, labels[start : start + batch_size], reduction="sum")
        probabilities.append(logits.softmax(1))
    probs = torch.cat(probabilities).cpu()
    cpu_labels = labels.cpu()
    return Evaluation(
        loss=loss_sum.item() / len(images),
        accuracy=(probs.argmax(1) == cpu_labels).float().mean().item(),
        probabilities=probs,
        labels=cpu_labels,
    )
