"""The answer to "what is this picture?": one typed `Answer` per image, built by `answer` alone.

`fmnist predict` (text and JSON), `fmnist eval --images`, the server's JSON and the page read the
same answers, so a picture gets the same class, probabilities and verdict from each of them: the
probabilities through the model's fitted temperature, the verdict from the model's energy and the
picture's framing cues (fmnist.trust), the 28x28 view from images.load_picture.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from fmnist import trust
from fmnist.data import CLASSES
from fmnist.images import Cues


@dataclass(frozen=True)
class Answer:
    """What a model says about one picture."""

    class_index: int  # the most probable class, 0..9
    class_name: str  # its name (data.CLASSES)
    probability: float  # its probability, 0..1
    top: tuple[tuple[str, float], ...]  # (class name, probability), most probable first
    garment: bool  # looks like a Fashion-MNIST item; False: not clothing, class_name is a best guess
    in_distribution_score: float | None  # 0..1 (trust.ood.combined); None when the model has no detector
    ood_threshold: float | None  # the score a garment reaches; None when the model has no detector
    calibrated: bool  # the probabilities use the model's fitted temperature

    def as_dict(self) -> dict[str, Any]:
        """The JSON fields of `predict --json` and of each prediction of POST /predict."""
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

    def text(self) -> str:
        """One line: "Trouser 97.1%, Dress 1.5%", or the not-a-garment verdict with the best guess."""
        classes = ", ".join(f"{name} {p:.1%}" for name, p in self.top)
        if not self.garment:
            classes = (
                f"NOT A GARMENT (in-distribution score {self.in_distribution_score:.3f} < "
                f"{self.ood_threshold:.3f}); best guess {classes}"
            )
        return classes + ("" if self.calibrated else " [uncalibrated: no temperature fitted]")


def answer(
    model_trust: trust.Trust,
    logits: torch.Tensor,
    cues: Sequence[Cues | None],
    top_k: int = 3,
    threshold: float | None = None,
) -> list[Answer]:
    """One Answer per row of `logits` (float32 [N, 10]) of pictures with framing `cues` (N of them; None for
    a picture that was a 28x28 Fashion-MNIST-style image): the `top_k` most probable classes (at most 10)
    and the verdict of `model_trust` (trust.judge), with `threshold` overriding its in-distribution
    threshold."""
    verdict = trust.judge(model_trust, logits, cues, threshold)
    values, indices = verdict.probabilities.topk(min(top_k, len(CLASSES)), dim=1)
    limit = model_trust.threshold if threshold is None else threshold
    detector = model_trust.has_detector
    return [
        Answer(
            classes[0],
            CLASSES[classes[0]],
            probabilities[0],
            tuple((CLASSES[c], p) for c, p in zip(classes, probabilities, strict=True)),
            bool(verdict.garment[n]),
            None if verdict.scores is None else float(verdict.scores[n]),
            limit if detector else None,
            model_trust.temperature is not None,
        )
        for n, (classes, probabilities) in enumerate(zip(indices.tolist(), values.tolist(), strict=True))
    ]
