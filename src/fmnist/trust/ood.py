"""Out-of-distribution ("not a garment") scores: how much a picture looks like a Fashion-MNIST item.

Cues, each a number per image:
- from the model: `msp`, the largest softmax probability (Hendrycks and Gimpel, 2017, the baseline);
  `energy`, T * logsumexp(logits / T) with T = 1, the negative free energy (Liu, Wang, Owens and Li,
  2020, "Energy-based Out-of-distribution Detection"); `mahalanobis`, the smallest squared
  Mahalanobis distance of the penultimate-layer features to a class mean, with class-conditional
  Gaussians sharing one covariance fitted on training images (Lee, Lee, Lee and Shin, 2018, "A
  Simple Unified Framework for Detecting Out-of-Distribution Samples and Adversarial Attacks",
  without their input perturbation and layer ensemble);
- from the picture before it was framed to 28x28 (images.Cues): how much of the border is
  plain background, its noise, how much of the picture the object's box covers, how much of the
  box the object fills, and the share of the object in its largest connected piece.

Each cue is turned into a conformal p-value (Vovk, Gammerman and Shafer, 2005): the share of
reference garment photos (rendered from validation images by trust.references) at least as
unusual, in the cue's unusual direction(s). The in-distribution score is the smallest p-value over
the cues an image has (a plain 28x28 image has no picture cues), in [0, 1]; the verdict is
"garment" when it is at least the threshold that keeps 97 % of the reference photos, each scored
against the others (trust.fit), so that fresh garment photos, which the 400 references sample with
about one point of error, keep at least 95 %. Nothing about non-garments is used to fit it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

import numpy as np

from fmnist.images import Cues

if TYPE_CHECKING:  # imported where a model's cues are computed: scoring an ONNX model's logits needs no torch
    import torch
    from torch import nn

MODEL_CUES = ("msp", "energy", "mahalanobis")
# Which end of each cue is unusual: "low", "high" or "both".
UNUSUAL = {"msp": "low", "energy": "low", "mahalanobis": "high", **dict.fromkeys(Cues.NAMES, "both")}
KEEP = 0.97  # share of the reference garment photos the threshold keeps (95 % + a margin for sampling)
REFERENCE_SIZE = 512  # reference values kept per cue (quantiles), so a checkpoint stays small


def max_softmax(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """[N] largest class probability of logits [N, C]."""
    return (logits / temperature).softmax(1).amax(1)


Array = TypeVar("Array", "torch.Tensor", np.ndarray)


def energy(logits: Array, temperature: float = 1.0) -> Array:
    """[N] negative free energy T * logsumexp(logits / T) of logits [N, C] (Liu et al., 2020), a tensor for a
    tensor and a numpy array for an array; higher is more in-distribution."""
    z = logits / temperature
    if isinstance(z, np.ndarray):
        peak = z.max(1, keepdims=True)
        return temperature * (peak[:, 0] + np.log(np.exp(z - peak).sum(1)))
    return temperature * z.logsumexp(1)


def penultimate(model: nn.Module) -> nn.Module:
    """The model without its output layer: fmnist models are nn.Sequential ending in nn.Linear."""
    from torch import nn

    if not isinstance(model, nn.Sequential) or not isinstance(model[-1], nn.Linear):
        raise TypeError("expected an nn.Sequential ending in nn.Linear (models.build makes those)")
    return model[:-1]


@dataclass(frozen=True)
class Gaussians:
    """Class means [C, D] and the shared precision matrix [D, D] of penultimate features (Lee et al., 2018)."""

    means: torch.Tensor
    precision: torch.Tensor

    @classmethod
    def fit(cls, features: torch.Tensor, labels: torch.Tensor, classes: int) -> Gaussians:
        """From features [N, D] and labels [N]; the covariance is pooled over classes and made invertible
        with a small ridge (1e-6 of its mean variance). Raises ValueError when a class has no image."""
        import torch

        features = features.double()
        counts = torch.bincount(labels, minlength=classes)
        if (counts == 0).any():
            raise ValueError("every class needs at least one image to fit its mean")
        means = torch.zeros(classes, features.shape[1], dtype=torch.float64).index_add_(0, labels, features)
        means /= counts[:, None]
        centred = features - means[labels]
        covariance = centred.T @ centred / len(features)
        ridge = 1e-6 * covariance.diagonal().mean().clamp_min(1e-12)
        precision = torch.linalg.pinv(
            covariance + ridge * torch.eye(len(covariance), dtype=torch.float64), hermitian=True
        )
        return cls(means.float(), precision.float())

    def distance(self, features: torch.Tensor) -> torch.Tensor:
        """[N] smallest squared Mahalanobis distance of features [N, D] to a class mean."""
        import torch

        diff = features.float()[:, None, :] - self.means[None]  # [N, C, D]
        return torch.einsum("ncd,de,nce->nc", diff, self.precision, diff).amin(1)


def model_cues(
    logits: torch.Tensor, features: torch.Tensor | None, gaussians: Gaussians | None
) -> dict[str, torch.Tensor]:
    """The model's cues [N] each, from logits [N, C] and, for `mahalanobis`, penultimate features [N, D]."""
    cues = {"msp": max_softmax(logits), "energy": energy(logits)}
    if features is not None and gaussians is not None:
        cues["mahalanobis"] = gaussians.distance(features)
    return cues


def picture_cues(cues: Sequence[Cues | None]) -> dict[str, np.ndarray]:
    """Per picture cue, float64 [N] values (NaN where a picture had none: a plain 28x28 image)."""
    table = np.array(
        [c.values() if c is not None else (np.nan,) * len(Cues.NAMES) for c in cues], dtype=np.float64
    ).reshape(len(cues), len(Cues.NAMES))
    return {name: table[:, i] for i, name in enumerate(Cues.NAMES)}


def p_values(values: np.ndarray, reference: np.ndarray, unusual: str, itself: bool = False) -> np.ndarray:
    """Conformal p-values [N] of `values` against sorted `reference` [M]: (1 + references at least as unusual)
    / (1 + M); two-sided for "both" (twice the smaller tail, at most 1). NaN values give 1.

    `itself`: each value is also in `reference` (scoring the reference set); it is left out of its own count.
    """
    m = len(reference) - int(itself)
    low = (1 + np.searchsorted(reference, values, side="right") - int(itself)) / (1 + m)  # references <= value
    high = (1 + len(reference) - np.searchsorted(reference, values, side="left") - int(itself)) / (1 + m)  # >= value
    p = {"low": low, "high": high, "both": np.minimum(1.0, 2 * np.minimum(low, high))}[unusual]
    return np.where(np.isnan(values), 1.0, p)


def combined(cues: dict[str, np.ndarray], references: dict[str, np.ndarray], itself: bool = False) -> np.ndarray:
    """[N] in-distribution score: the smallest p-value over the cues that have a reference."""
    ps = [
        p_values(np.asarray(cues[name], dtype=np.float64), ref, UNUSUAL[name], itself)
        for name, ref in references.items()
    ]
    return np.min(ps, axis=0)


def threshold_of(values: dict[str, np.ndarray], references: dict[str, np.ndarray]) -> float:
    """The score that KEEP of the reference pictures reach, each scored against the others (leave one
    out): `values` per cue [M] in the pictures' order, `references` the same values sorted."""
    return float(np.quantile(combined(values, references, itself=True), 1 - KEEP))


def reference_of(values: np.ndarray) -> np.ndarray:
    """Sorted reference values, thinned to REFERENCE_SIZE evenly spaced quantiles when there are more."""
    values = np.sort(values[~np.isnan(values)])
    if len(values) > REFERENCE_SIZE:
        values = np.quantile(values, np.linspace(0, 1, REFERENCE_SIZE))
    return values
