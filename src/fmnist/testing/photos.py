"""Accuracy on product-style photos rendered from Fashion-MNIST images, per kind: test material for the photo
framing (images.py) and benchmarks/photos.py. The renderer itself is fmnist.trust.references (the detector's
references are rendered with it); its names are re-exported here for the tests and benchmarks.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from fmnist.images import load_image
from fmnist.inference import Predictor
from fmnist.trust.references import KINDS, Photo, render, render_set

__all__ = ["KINDS", "KindResult", "Photo", "measure", "render", "render_set"]


@dataclass(frozen=True)
class KindResult:
    kind: str
    count: int
    photo_correct: int  # the photos, through images.load_image
    plain_correct: int  # the same source images, as 28x28 test images
    mean_abs_difference: float  # between the converted photo and its source image, 0..255


def measure(
    predictor: Predictor, images: torch.Tensor, labels: torch.Tensor, count: int, seed: int, batch_size: int = 256
) -> list[KindResult]:
    """Accuracy on `count` photos rendered from `images` (converted by images.load_image) against the
    same predictor on the source images themselves; one row per kind."""
    photos = render_set(images, count, seed)
    converted = torch.stack([load_image(p.data, f"{p.kind}-{p.index}{p.suffix}") for p in photos])
    indices = torch.tensor([p.index for p in photos])
    source = images[indices]
    photo_pred = _classify(predictor, converted, batch_size)
    plain_pred = _classify(predictor, source, batch_size)
    truth = labels[indices]
    difference = (converted.float() - source.float()).abs().mean((1, 2))
    kinds = np.array([p.kind for p in photos])
    rows = []
    for kind in KINDS:
        sel = torch.from_numpy(kinds == kind)
        if sel.any():
            rows.append(
                KindResult(
                    kind,
                    int(sel.sum()),
                    int((photo_pred[sel] == truth[sel]).sum()),
                    int((plain_pred[sel] == truth[sel]).sum()),
                    float(difference[sel].mean()),
                )
            )
    return rows


def _classify(predictor: Predictor, images: torch.Tensor, batch_size: int) -> torch.Tensor:
    return torch.cat([predictor.logits(chunk).argmax(1) for chunk in images.split(batch_size)])
