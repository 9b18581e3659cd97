"""Metrics of a model on a labelled image set: loss, accuracy, confusion matrix, per-class figures, and the
error analysis of fastai's ClassificationInterpretation (top losses, most-confused pairs); `Report` holds
all of it for one model and one image set."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

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

    @property
    def losses(self) -> torch.Tensor:
        """Cross-entropy of each image, float32 [N] in nats: -log p(true class). A probability that
        underflowed to 0 counts as the smallest normal float32, so a loss is at most about 87."""
        true = self.probabilities.gather(1, self.labels[:, None])[:, 0]
        return -true.clamp(min=torch.finfo(torch.float32).tiny).log()

    def top_losses(self, k: int) -> torch.Tensor:
        """Indices (int64 [min(k, N)]) of the k images with the highest loss, highest first: fastai's
        `ClassificationInterpretation.top_losses`. Ties keep image order."""
        order = self.losses.argsort(descending=True, stable=True)
        return order[: max(k, 0)]

    def most_confused(self, min_count: int = 1) -> list[Confusion]:
        """Off-diagonal cells of the confusion matrix with at least `min_count` images, most first (ties:
        the larger share of the true class first, then class order): fastai's
        `ClassificationInterpretation.most_confused`, plus each pair's share of its true class."""
        cm = self.confusion_matrix()
        support = cm.sum(1).clamp(min=1)
        pairs = [
            Confusion(true, predicted, int(cm[true, predicted]), float(cm[true, predicted] / support[true]))
            for true in range(len(CLASSES))
            for predicted in range(len(CLASSES))
            if true != predicted and cm[true, predicted] >= max(min_count, 1)
        ]
        return sorted(pairs, key=lambda c: (-c.count, -c.share))


@dataclass(frozen=True)
class Confusion:
    """`count` images of class `true` predicted as `predicted`: `share` (0..1) of the true class's images."""

    true: int
    predicted: int
    count: int
    share: float

    def describe(self) -> str:
        true = CLASSES[self.true]
        return f"{true} -> {CLASSES[self.predicted]}: {self.count} ({self.share:.1%} of {true})"


@dataclass
class Report:
    """What `fmnist eval` says about one model on one labelled image set, printed as text or JSON and
    drawn by plots.write_evaluation_plots. Each figure of the evaluation is one entry of `as_dict` and
    one block of `text`; a new one (calibration, say) is added in both."""

    model: str  # the checkpoint, run directory or export evaluated
    data: str  # "test set", or the folder of labelled pictures
    evaluation: Evaluation
    images: torch.Tensor  # uint8 [N, 28, 28]: what the model saw, for the top-losses plot
    names: list[str] | None = None  # a file name per image, or None for the test set
    problems: list[str] = field(default_factory=list)  # files left out (unreadable, not images), one line each
    skipped: dict[str, int] = field(default_factory=dict)  # reason -> files left out

    def as_dict(self, pairs: int = 10) -> dict[str, Any]:
        e = self.evaluation
        result: dict[str, Any] = {"checkpoint": self.model, "data": self.data, "images": len(e.labels)}
        if self.names is None:  # the test set: the keys scripts have read since before folders existed
            result |= {"test_accuracy": e.accuracy, "test_loss": e.loss}
        return result | {
            "accuracy": e.accuracy,
            "loss": e.loss,
            "per_class": e.per_class(),
            "confusion_matrix": e.confusion_matrix().tolist(),
            "most_confused": [
                {"true": CLASSES[c.true], "predicted": CLASSES[c.predicted], "count": c.count, "share": c.share}
                for c in e.most_confused()[:pairs]
            ],
            "problems": self.problems,
            "skipped": self.skipped,
        }

    def text(self, pairs: int = 5) -> str:
        from fmnist.images import skipped_line  # images imports Pillow and scipy: only a report's text needs them

        e = self.evaluation
        lines = [f"{self.data}: accuracy {e.accuracy:.2%}  loss {e.loss:.4f}  ({len(e.labels):,} images)"]
        if summary := skipped_line(self.skipped):  # as predict says it
            lines.append(summary)
        lines += self.problems  # each names the file or folder left out and why
        lines.append(f"{'class':<12} {'precision':>9} {'recall':>7} {'support':>8}")
        lines += [
            f"{row['class']:<12} {row['precision']:>9.2%} {row['recall']:>7.2%} {row['support']:>8}"
            for row in e.per_class()
        ]
        lines.append("confusion matrix (rows: true class, columns: predicted)")
        lines += [
            f"{name:<12} " + " ".join(f"{c:>5}" for c in counts)
            for name, counts in zip(CLASSES, e.confusion_matrix().tolist(), strict=True)
        ]
        confused = e.most_confused()[:pairs]
        lines.append("most confused (true -> predicted)" + ("" if confused else ": no mistakes"))
        lines += [f"  {c.describe()}" for c in confused]
        return "\n".join(lines)


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
    an onnxruntime InferenceSession), called on `batch_size` images at a time; logits on the labels' device."""
    if not len(images):
        raise FmnistError("no images to evaluate: loss and accuracy of an empty set are undefined")
    chunks = [logits_of(images[start : start + batch_size]).float() for start in range(0, len(images), batch_size)]
    return evaluation_of(torch.cat(chunks), labels)


def evaluation_of(logits: torch.Tensor, labels: torch.Tensor) -> Evaluation:
    """Metrics of logits [N, 10] already computed for `labels` [N] (on the labels' device)."""
    probs = logits.softmax(1).cpu()
    cpu_labels = labels.cpu()
    return Evaluation(
        loss=F.cross_entropy(logits, labels).item(),
        accuracy=(probs.argmax(1) == cpu_labels).float().mean().item(),
        probabilities=probs,
        labels=cpu_labels,
    )
