"""The answer to "what is this picture?": the classes a model finds most probable, calibrated or not, and
whether the picture looks like a garment at all (fmnist.trust), built once here for every face that asks:
`fmnist predict` (text and JSON), `fmnist eval --images` (its verdicts), the server's JSON and the page,
and the Python API.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from fmnist import trust
from fmnist.data import CLASSES
from fmnist.images import Cues

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class Answer:
    """One picture's answer.

    `probability` and the probabilities in `top` are in [0, 1]: softmax(logits / T) with the model's fitted
    temperature T when `calibrated`, the plain softmax otherwise. `top`: (class name, probability) pairs,
    most probable first. `garment`: the picture looks like a Fashion-MNIST item (its `in_distribution_score`,
    0..1, reaches `ood_threshold`); always True, with both None, for a model without a detector.
    `image`: uint8 [28, 28], the picture as the model saw it.
    """

    class_index: int
    class_name: str
    probability: float
    top: list[tuple[str, float]]
    garment: bool
    in_distribution_score: float | None
    ood_threshold: float | None
    calibrated: bool
    image: np.ndarray = field(repr=False, compare=False)

    def as_dict(self) -> dict[str, Any]:
        """The answer's JSON fields, in the order `fmnist predict --json` and the server write them."""
        return {
            "class_index": self.class_index,
            "class_name": self.class_name,
            "probability": self.probability,
            "top": [[name, p] for name, p in self.top],
            "garment": self.garment,
            "in_distribution_score": self.in_distribution_score,
            "ood_threshold": self.ood_threshold,
            "calibrated": self.calibrated,
        }

    def __str__(self) -> str:
        classes = ", ".join(f"{name} {p:.1%}" for name, p in self.top)
        if not self.garment:
            score, threshold = _apart(self.in_distribution_score, self.ood_threshold)
            classes = f"NOT A GARMENT (in-distribution score {score} < {threshold}); best guess {classes}"
        return classes + ("" if self.calibrated else " [uncalibrated: no temperature fitted]")


def _apart(score: Any, threshold: Any) -> tuple[str, str]:
    """`score` and `threshold` printed with the fewest decimals, 3 to 6, that tell them apart (0.01496 against
    0.015 is not "0.015 < 0.015")."""
    for digits in range(3, 7):
        shown = f"{score:.{digits}f}", f"{threshold:.{digits}f}"
        if shown[0] != shown[1]:
            break
    return shown


def answers(
    model_trust: trust.Trust,
    logits: torch.Tensor | np.ndarray,
    images: torch.Tensor | np.ndarray,
    cues: Sequence[Cues | None],
    top_k: int = 3,
    ood_threshold: float | None = None,
) -> list[Answer]:
    """An Answer per picture from the model's logits (float32 [N, 10]), the uint8 images [N, 28, 28] it saw and
    their framing cues (None for a plain 28x28 image); `top_k` classes each (at most 10), `ood_threshold`
    in place of the fitted one. Logits and images are numpy arrays or CPU tensors: the answer needs no torch."""
    pixels = np.asarray(images)
    verdict = trust.judge(model_trust, np.asarray(logits, dtype=np.float32), pixels, cues, ood_threshold)
    probabilities = np.asarray(verdict.probabilities)
    # Most probable first; equal probabilities in class order.
    indices = np.argsort(-probabilities, axis=1, kind="stable")[:, : min(top_k, len(CLASSES))]
    values = np.take_along_axis(probabilities, indices, axis=1)
    limit = model_trust.threshold if ood_threshold is None else ood_threshold
    built = []
    for n, (p, c) in enumerate(zip(values.tolist(), indices.tolist(), strict=True)):
        built.append(
            Answer(
                c[0],
                CLASSES[c[0]],
                p[0],
                [(CLASSES[k], q) for k, q in zip(c, p, strict=True)],
                bool(verdict.garment[n]),
                None if verdict.scores is None else float(verdict.scores[n]),
                limit if model_trust.has_detector else None,
                model_trust.temperature is not None,
                pixels[n],
            )
        )
    return built
