"""The model a server answers with, and its identity: file name, SHA-256 prefix, kind and accuracy.

Every answer names the model that computed it (`X-Model` header, and `model` in the JSON of
/predict and /healthz), so a client or an operator can tell which file answered, including across
a reload (`load` checks a new model before the server swaps to it).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from fmnist.data import CLASSES, SIDE
from fmnist.errors import FmnistError
from fmnist.inference import Predictor, load_predictor, probabilities

SHA_PREFIX = 12  # hex digits of the SHA-256 shown: enough to tell files apart, short enough for a header


@dataclass(frozen=True)
class ServedModel:
    """A predictor with its identity; what the micro-batcher calls and each answer names."""

    predictor: Predictor
    file: str  # the model file's name (a run directory's best.pt or last.pt), "" when there is none
    sha256: str  # first SHA_PREFIX hex digits of the file's bytes, "" when there is no file
    kind: str  # architecture and format, e.g. "mlp pytorch", "cnn onnx int8"
    accuracy: dict[str, float] = field(default_factory=dict)  # what the file records: train/val/test accuracy

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        """float32 [N, 10] for uint8 [N, 28, 28] images (the micro-batcher's model call)."""
        return self.predictor.logits(images)

    def identity(self) -> dict[str, Any]:
        return {"file": self.file, "sha256": self.sha256, "kind": self.kind, **self.accuracy}

    def header(self) -> str:
        """The X-Model header: `file sha256:prefix kind`, e.g. `best.pt sha256:3fa4c9e1b2d0 mlp pytorch`."""
        return f"{self.file or '-'} sha256:{self.sha256 or '-'} {self.kind}"


def identify(predictor: Predictor) -> ServedModel:
    """Wrap `predictor` with the identity of the file it came from (hashed here, once)."""
    facts = predictor.describe()
    path = Path(facts["file"]) if facts.get("file") else None
    sha = hashlib.sha256(path.read_bytes()).hexdigest()[:SHA_PREFIX] if path is not None and path.is_file() else ""
    kind = " ".join(str(facts[key]) for key in ("model", "format", "precision") if facts.get(key))
    accuracy = {key: round(float(value), 6) for key, value in facts.items() if key.endswith("_accuracy")}
    return ServedModel(predictor, path.name if path else "", sha, kind, accuracy)


def check(model: ServedModel) -> ServedModel:
    """`model` if it answers a probe batch with probabilities of the right shape, else FmnistError."""
    try:
        probs = probabilities(model.predictor, torch.zeros(2, SIDE, SIDE, dtype=torch.uint8))
    except Exception as exc:  # a model that cannot run is refused whatever went wrong inside it
        raise FmnistError(f"{model.file}: the model fails on a probe batch: {type(exc).__name__}: {exc}") from None
    if tuple(probs.shape) != (2, len(CLASSES)) or not bool(torch.isfinite(probs).all()):
        raise FmnistError(
            f"{model.file}: the model answers {tuple(probs.shape)} for 2 images, not finite "
            f"probabilities of shape (2, {len(CLASSES)})"
        )
    if not torch.allclose(probs.sum(1), torch.ones(2), atol=1e-3):
        raise FmnistError(f"{model.file}: the model's probabilities do not sum to 1")
    return model


def load(path: str | Path, device: str | torch.device = "cpu", tta: str = "none") -> ServedModel:
    """Load, identify and check the model at `path` (checkpoint, run directory or .onnx), with `tta` (tta.py);
    FmnistError if unusable."""
    return check(identify(load_predictor(path, device, tta)))
