"""A trained model behind one interface, whatever file holds it: uint8 images in, class probabilities out.

`fmnist predict`, `fmnist eval` and `fmnist serve` use `load_predictor`, so they answer the same for a
checkpoint, a run directory or an exported model (`fmnist export`: an .onnx file with its sidecar .json).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from fmnist import checkpoint, trust
from fmnist.data import CLASSES, SIDE, as_input
from fmnist.device import select_device
from fmnist.errors import FmnistError
from fmnist.trust import Trust

ONNX_FORMAT = "fmnist-onnx-v1"
INPUT_NAME, OUTPUT_NAME = "pixels", "logits"


class Predictor(Protocol):
    trust: Trust  # the model's temperature and non-garment detector (trust.py), fitted or not

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        """float32 [N, 10] on the CPU for uint8 [N, 28, 28] images (any device)."""
        ...

    def probabilities(self, images: torch.Tensor) -> torch.Tensor:
        """float32 [N, 10] on the CPU for uint8 [N, 28, 28] images (any device): softmax(logits / T) with the
        model's fitted temperature T, the plain softmax without one."""
        ...

    def describe(self) -> dict[str, Any]:
        """Plain facts about the model (kind, architecture, source file) for logs and health checks."""
        ...


class TorchPredictor:
    def __init__(self, path: str | Path, device: str | torch.device = "cpu"):
        self.device = select_device(device) if isinstance(device, str) else device
        self.model, self.config, state = checkpoint.load_model(path, self.device)
        self.path = Path(path)
        self.trust = trust.of_state(state)

    @torch.inference_mode()
    def logits(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(as_input(images.to(self.device))).float().cpu()

    def probabilities(self, images: torch.Tensor) -> torch.Tensor:
        return self.trust.probabilities(self.logits(images))

    def describe(self) -> dict[str, Any]:
        return {"format": "pytorch", "model": self.config.model, "source": str(self.path), "device": str(self.device),
                **self.trust.describe()}


def sidecar_path(onnx_path: str | Path) -> Path:
    """model.onnx -> model.json: named by the stem, so an fp32 and an int8 export can share a directory."""
    return Path(onnx_path).with_suffix(".json")


def read_sidecar(onnx_path: str | Path, model_bytes: bytes) -> dict[str, Any]:
    """The sidecar of `onnx_path`, checked to be an fmnist export's and to describe exactly `model_bytes`."""
    path = sidecar_path(onnx_path)
    try:
        facts = json.loads(path.read_text())
    except FileNotFoundError:
        raise FmnistError(f"{onnx_path}: no {path.name} beside it (fmnist export writes the two together)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise FmnistError(f"{path}: not a readable sidecar: {e}") from None
    if not isinstance(facts, dict) or facts.get("format") != ONNX_FORMAT:
        raise FmnistError(f"{path}: not an fmnist export sidecar (format is not {ONNX_FORMAT})")
    if facts.get("onnx_sha256") != hashlib.sha256(model_bytes).hexdigest():
        raise FmnistError(f"{path}: describes another model file (SHA-256 differs from {Path(onnx_path).name}'s); "
                          "export again")
    return facts


class OnnxPredictor:
    """An exported model run by onnxruntime's CPU execution provider.

    ONNX models always run on the CPU here (the onnxruntime wheel fmnist installs is the CPU build),
    whatever device a command was given. `facts` is the sidecar (see `open_onnx`).
    """

    def __init__(self, model_bytes: bytes, source: str | Path, facts: dict[str, Any], threads: int | None = None):
        import onnxruntime as ort

        self.source, self.facts = Path(source), facts
        self.trust = trust.of_state(facts)
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own exception types for a bad graph or file
            detail = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise FmnistError(f"{source}: onnxruntime cannot load it: {detail}") from None
        signature = (
            [(i.name, i.type, i.shape[1:]) for i in self.session.get_inputs()],
            [(o.name, o.shape[1:]) for o in self.session.get_outputs()],
        )
        if signature != ([(INPUT_NAME, "tensor(uint8)", [SIDE, SIDE])], [(OUTPUT_NAME, [len(CLASSES)])]):
            raise FmnistError(f"{source}: not an fmnist export (expected input {INPUT_NAME} uint8 [N, {SIDE}, {SIDE}] "
                              f"and output {OUTPUT_NAME} [N, {len(CLASSES)}])")

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        if images.dtype != torch.uint8:
            raise TypeError(f"expected uint8 images, got {images.dtype}")
        pixels = np.ascontiguousarray(images.cpu().reshape(-1, SIDE, SIDE).numpy())
        (out,) = self.session.run([OUTPUT_NAME], {INPUT_NAME: pixels})
        return torch.from_numpy(out)

    def probabilities(self, images: torch.Tensor) -> torch.Tensor:
        return self.trust.probabilities(self.logits(images))

    def describe(self) -> dict[str, Any]:
        return {
            "format": "onnx",
            "precision": self.facts["precision"],
            "model": self.facts["source"]["config"]["model"],
            "source": str(self.source),
            "device": "cpu",
            "test_accuracy": self.facts["test"]["accuracy"],
            **self.trust.describe(),
        }


def open_onnx(path: str | Path, threads: int | None = None) -> OnnxPredictor:
    """The exported model at `path` (.onnx) with its sidecar; every failure is one FmnistError."""
    path = Path(path)
    try:
        model_bytes = path.read_bytes()
    except FileNotFoundError:
        raise FmnistError(f"{path}: model not found") from None
    except OSError as e:
        raise FmnistError(f"{path}: cannot read it: {e.strerror or e}") from None
    return OnnxPredictor(model_bytes, path, read_sidecar(path, model_bytes), threads)


def load_predictor(path: str | Path, device: str | torch.device = "cpu") -> Predictor:
    """A predictor for a checkpoint (.pt), a run directory, or an exported model (.onnx, on the CPU)."""
    if Path(path).suffix.lower() == ".onnx":
        return open_onnx(path)
    return TorchPredictor(path, device)
