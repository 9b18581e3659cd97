"""Calibrated probabilities: temperature scaling, and the figures that say whether "80 %" means right four
times in five.

Temperature scaling (Guo, Pleiss, Sun and Weinberger, 2017, "On Calibration of Modern Neural
Networks"): the probabilities become softmax(logits / T), with one scalar T > 0 fitted by
minimising the negative log-likelihood on held-out data (the validation split, never the test set).
It changes no prediction, only how sure each one says it is.

Measures (all on probabilities [N, C] and integer labels [N]):
- ECE, expected calibration error: the top-class confidence is cut into 15 equal-width bins over
  [0, 1]; ECE = sum over bins of (bin size / N) * |accuracy in bin - mean confidence in bin|
  (Naeini, Cooper and Hauskrecht, 2015; the 15 bins of Guo et al.).
- NLL, negative log-likelihood: mean of -log p(true class), in nats.
- Brier score: mean over images of sum over classes of (p_c - [c = true])^2 (Brier, 1950), 0..2.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, TypeVar

import numpy as np

if TYPE_CHECKING:  # imported where fitted and measured: applying a temperature to an ONNX model's logits needs no torch
    import torch

ECE_BINS = 15
# A temperature beyond these bounds means the fit failed (e.g. logits all equal): keep 1 then.
T_RANGE = (0.05, 20.0)


@dataclass(frozen=True)
class Calibration:
    ece: float  # 0..1
    nll: float  # nats per image
    brier: float  # 0..2
    accuracy: float  # 0..1

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def fit_temperature(logits: torch.Tensor | np.ndarray, labels: torch.Tensor | np.ndarray, max_iter: int = 100) -> float:
    """The temperature T > 0 minimising the NLL of softmax(logits / T) on (`logits` [N, C], `labels` [N]), as in
    Guo et al. (2017).

    Fitted by Newton's method on the inverse temperature b = 1 / T, in which the NLL is convex (its second
    derivative is the mean variance of the logits under softmax(b * logits)): a few steps of O(N * C), where
    L-BFGS took seconds and made the first optimizer of a process import torch's compiler. Steps that would
    leave b <= 0 are halved. A minimum outside T_RANGE (the logits separate the labels: b grows without end)
    gives 1.0. Raises ValueError on empty or mismatched input.
    """
    z = np.asarray(logits.detach().cpu() if hasattr(logits, "detach") else logits, dtype=np.float64)
    y = np.asarray(labels.cpu() if hasattr(labels, "cpu") else labels, dtype=np.int64)
    if z.ndim != 2 or len(z) != len(y) or not len(y):
        raise ValueError(f"expected logits [N, C] and labels [N] with N > 0, got {z.shape} and {y.shape}")
    z_true = z[np.arange(len(y)), y]
    b = 1.0
    for _ in range(max_iter):
        scaled = b * z
        p = np.exp(scaled - scaled.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        mean = (p * z).sum(1)
        gradient = float((mean - z_true).mean())
        curvature = float(((p * z * z).sum(1) - mean * mean).mean())
        if curvature <= 0 or not math.isfinite(gradient):
            break
        step = gradient / curvature
        while b - step <= 0:
            step /= 2
        b -= step
        if abs(step) < 1e-12 * max(b, 1.0) or 1 / b < T_RANGE[0]:
            break
    t = 1 / b
    return t if math.isfinite(t) and T_RANGE[0] <= t <= T_RANGE[1] else 1.0


def measure(probabilities: torch.Tensor, labels: torch.Tensor, bins: int = ECE_BINS) -> Calibration:
    """ECE (`bins` equal-width bins), NLL, Brier score and accuracy of `probabilities` [N, C] for `labels` [N]."""
    import torch.nn.functional as F

    probs, labels = probabilities.double().cpu(), labels.cpu()
    confidence, predicted = probs.max(1)
    correct = (predicted == labels).double()
    return Calibration(
        ece=expected_calibration_error(confidence, correct, bins),
        nll=float(-probs.gather(1, labels[:, None]).clamp_min(1e-12).log().mean()),
        brier=float((probs - F.one_hot(labels, probs.shape[1]).double()).pow(2).sum(1).mean()),
        accuracy=float(correct.mean()),
    )


def reliability(
    confidence: torch.Tensor, correct: torch.Tensor, bins: int = ECE_BINS
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per bin of top-class confidence (`bins` equal-width bins over [0, 1]): image count, mean confidence and
    accuracy (0 where a bin is empty); each a float64 tensor [bins]."""
    import torch

    confidence, correct = confidence.double(), correct.double()
    index = (confidence * bins).long().clamp(0, bins - 1)  # confidence 1.0 goes in the top bin
    count = torch.bincount(index, minlength=bins).double()
    mean_conf = torch.bincount(index, confidence, minlength=bins) / count.clamp_min(1)
    accuracy = torch.bincount(index, correct, minlength=bins) / count.clamp_min(1)
    return count, mean_conf, accuracy


def expected_calibration_error(confidence: torch.Tensor, correct: torch.Tensor, bins: int = ECE_BINS) -> float:
    count, mean_conf, accuracy = reliability(confidence, correct, bins)
    return float((count / count.sum() * (accuracy - mean_conf).abs()).sum())


Array = TypeVar("Array", "torch.Tensor", np.ndarray)


def scaled(logits: Array, temperature: float | None) -> Array:
    """softmax(logits / T) [N, C], a tensor for a tensor and a numpy array for an array; plain softmax when no
    temperature was fitted (None)."""
    z = logits / (temperature or 1.0)
    if isinstance(z, np.ndarray):
        e = np.exp(z - z.max(1, keepdims=True))
        return e / e.sum(1, keepdims=True)
    return z.softmax(1)
