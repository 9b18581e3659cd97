"""A trained model behind one interface, whatever file holds it: uint8 images in, class probabilities out.

`fmnist predict`, `fmnist eval` and `fmnist serve` use `load_predictor`, so they answer the same for a
checkpoint, a run directory or an exported model (`fmnist export`: an .onnx file with its sidecar .json).
An exported model answers with numpy and onnxruntime alone: torch is imported only for a PyTorch model.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from fmnist import textfile, trust
from fmnist.answer import Answer, answers
from fmnist.atomic import atomic_write
from fmnist.data import CLASSES, SIDE, as_input
from fmnist.errors import FmnistError
from fmnist.images import Framed, export_png, load_picture
from fmnist.trust import Trust
from fmnist.tta import with_tta

if TYPE_CHECKING:
    import torch

ONNX_FORMAT = "fmnist-onnx-v1"
INPUT_NAME, OUTPUT_NAME = "pixels", "logits"
# Outputs an export adds after the logits, so that a runtime with no fmnist code answers as predict does for
# a 28x28 image: softmax(logits / T) [N, 10], and the detector's in-distribution score [N] (no picture cues).
PROBABILITIES_NAME, SCORE_NAME = "probabilities", "in_distribution_score"
# metadata_props keys of an export (export.metadata_props): the ones a plain runtime reads, and FACTS_KEY
# (the rest of the sidecar, as JSON) with trust.KEY (the temperature and detector, as JSON) for fmnist itself.
FACTS_KEY = "fmnist"


class Predictor(Protocol):
    trust: Trust  # the model's temperature and non-garment detector (fmnist.trust), fitted or not

    def logits(self, images: Any) -> Any:
        """float32 logits [N, 10] on the CPU for uint8 images [N, 28, 28]: a tensor (on any device) or a numpy
        array. A PyTorch model gives a tensor; an exported one gives the kind it was given."""
        ...

    def describe(self) -> dict[str, Any]:
        """Plain facts about the model (kind, architecture, source file) for logs and health checks."""
        ...


def probabilities(predictor: Predictor, images: torch.Tensor) -> torch.Tensor:
    """float32 [N, 10] on the CPU for uint8 [N, 28, 28] images (any device): softmax(logits / T) with the
    model's fitted temperature T (fmnist.trust), the plain softmax without one."""
    return predictor.trust.probabilities(predictor.logits(images))


class TorchPredictor:
    def __init__(self, path: str | Path, device: str | torch.device = "cpu"):
        from fmnist import checkpoint
        from fmnist.device import select_device
        from fmnist.run_dir import model_path

        self.device = select_device(device) if isinstance(device, str) else device
        self.path = Path(path)  # as given: a run directory or a checkpoint file
        self.file = model_path(path)
        self.model, self.config, state = checkpoint.load_model(self.file, self.device)
        last = (state.get("history") or [{}])[-1]  # the row of the epoch this checkpoint holds
        self.accuracy = {
            f"{split}_accuracy": last[f"{split}_acc"]
            for split in ("train", "val")
            if isinstance(last.get(f"{split}_acc"), float)
        }
        # A bare state dict: what fmnist recognised in it, the input scaling included (None for a checkpoint).
        self.layout: str | None = state.get("layout")
        self.trust = trust.of_state(state)

    def logits(self, images: torch.Tensor | np.ndarray) -> torch.Tensor:
        import torch

        with torch.inference_mode():
            return self.model(as_input(torch.as_tensor(images).to(self.device))).float().cpu()

    def describe(self) -> dict[str, Any]:
        facts = {
            "format": "pytorch",
            "model": self.config.model,
            "source": str(self.path),
            "file": str(self.file),
            "device": str(self.device),
            **self.accuracy,
            **self.trust.describe(),
        }
        return facts if self.layout is None else {**facts, "layout": self.layout}


def sidecar_path(onnx_path: str | Path) -> Path:
    """model.onnx -> model.json: named by the stem, so an fp32 and an int8 export can share a directory."""
    return Path(onnx_path).with_suffix(".json")


def read_sidecar(onnx_path: str | Path, model_bytes: bytes) -> dict[str, Any] | None:
    """The sidecar of `onnx_path`, checked to be an fmnist export's and to describe exactly `model_bytes`;
    None when there is none beside it (the facts are then read from the graph's metadata_props)."""
    path = sidecar_path(onnx_path)
    try:
        if not path.exists():
            return None
        facts = json.loads(textfile.read(path, "sidecar"))
    except json.JSONDecodeError as e:
        raise FmnistError(f"{path}: not a readable sidecar: {e}") from None
    if not isinstance(facts, dict) or facts.get("format") != ONNX_FORMAT:
        raise FmnistError(f"{path}: not an fmnist export sidecar (format is not {ONNX_FORMAT})")
    if facts.get("onnx_sha256") != hashlib.sha256(model_bytes).hexdigest():
        raise FmnistError(
            f"{path}: describes another model file (SHA-256 differs from {Path(onnx_path).name}'s); export again"
        )
    return facts


def facts_of_metadata(metadata: dict[str, str]) -> dict[str, Any] | None:
    """The sidecar's facts from an export's metadata_props (export.metadata_props), or None when the graph
    carries none (an export made before fmnist wrote them, or another tool's model)."""
    if metadata.get("format") != ONNX_FORMAT or FACTS_KEY not in metadata:
        return None
    try:
        return {**json.loads(metadata[FACTS_KEY]), trust.KEY: json.loads(metadata.get(trust.KEY, "null"))}
    except json.JSONDecodeError:
        return None


class OnnxPredictor:
    """An exported model run by onnxruntime's CPU execution provider.

    ONNX models always run on the CPU here (the onnxruntime wheel fmnist installs is the CPU build),
    whatever device a command was given. `facts` is the sidecar; None reads them from the graph's
    metadata_props (raises FmnistError naming `missing` when it has none).
    """

    def __init__(
        self,
        model_bytes: bytes,
        source: str | Path,
        facts: dict[str, Any] | None,
        threads: int | None = None,
        missing: str = "no fmnist metadata in it",
    ):
        import onnxruntime as ort

        self.source = Path(source)
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        try:
            self.runtime = ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own exception types for a bad graph or file
            detail = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise FmnistError(f"{source}: onnxruntime cannot load it: {detail}") from None
        if facts is None:
            facts = facts_of_metadata(self.runtime.get_modelmeta().custom_metadata_map)
            if facts is None:
                raise FmnistError(f"{source}: {missing}")
        self.facts = facts
        self.trust = trust.of_state(facts)
        inputs = [(i.name, i.type, i.shape[1:]) for i in self.runtime.get_inputs()]
        outputs = {o.name: o.shape[1:] for o in self.runtime.get_outputs()}
        if inputs != [(INPUT_NAME, "tensor(uint8)", [SIDE, SIDE])] or outputs.get(OUTPUT_NAME) != [len(CLASSES)]:
            raise FmnistError(
                f"{source}: not an fmnist export (expected input {INPUT_NAME} uint8 [N, {SIDE}, {SIDE}] "
                f"and output {OUTPUT_NAME} [N, {len(CLASSES)}])"
            )

    def logits(self, images: Any) -> Any:
        """float32 [N, 10] for uint8 images [N, 28, 28]: a numpy array for an array, a CPU tensor for a tensor."""
        given = images if isinstance(images, np.ndarray) else images.cpu().numpy()
        if given.dtype != np.uint8:
            raise TypeError(f"expected uint8 images, got {images.dtype}")
        pixels = np.ascontiguousarray(given.reshape(-1, SIDE, SIDE))
        (out,) = self.runtime.run([OUTPUT_NAME], {INPUT_NAME: pixels})
        if isinstance(images, np.ndarray):
            return out
        import torch

        return torch.from_numpy(out)

    def describe(self) -> dict[str, Any]:
        return {
            "format": "onnx",
            "precision": self.facts["precision"],
            "model": self.facts["source"]["config"]["model"],
            "source": str(self.source),
            "file": str(self.source),
            "device": "cpu",
            "test_accuracy": self.facts["test"]["accuracy"],
            **self.trust.describe(),
        }


def open_onnx(path: str | Path, threads: int | None = None) -> OnnxPredictor:
    """The exported model at `path` (.onnx), its facts from the sidecar beside it or else from its own
    metadata_props; every failure is one FmnistError."""
    path = Path(path)
    try:
        model_bytes = path.read_bytes()
    except FileNotFoundError:
        raise FmnistError(f"{path}: model not found") from None
    except OSError as e:
        raise FmnistError(f"{path}: cannot read it: {e.strerror or e}") from None
    missing = f"no {sidecar_path(path).name} beside it and no fmnist metadata in it (fmnist export writes both)"
    return OnnxPredictor(model_bytes, path, read_sidecar(path, model_bytes), threads, missing)


def load_predictor(path: str | Path, device: str | torch.device = "cpu", tta: str = "none") -> Predictor:
    """A predictor for a checkpoint (.pt), a run directory, or an exported model (.onnx, on the CPU);
    with `tta` "flip", its logits averaged over each image and its mirror (tta.py)."""
    if Path(path).suffix.lower() == ".onnx":
        return with_tta(open_onnx(path), tta)
    return with_tta(TorchPredictor(path, device), tta)


@dataclass(frozen=True)
class PredictOptions:
    """How `predict_files` works: classes per answer, images per model call, where to write the 28x28
    image the model saw for each file and where its explanation heatmap (None: nowhere). Raises
    FmnistError when one is invalid."""

    top_k: int = 3
    batch_size: int = 256
    save_inputs: Path | None = None
    explain: Path | None = None
    ood_threshold: float | None = None  # overrides the model's fitted in-distribution threshold (fmnist.trust)

    def __post_init__(self) -> None:
        trust.check_threshold(self.ood_threshold)
        for name in ("top_k", "batch_size"):
            if getattr(self, name) < 1:
                raise FmnistError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("save_inputs", "explain"):
            if (folder := getattr(self, name)) is not None:
                _check_output_folder(name, folder)
        if (
            self.save_inputs is not None
            and self.explain is not None
            and (self.save_inputs.resolve() == self.explain.resolve())
        ):  # both write DIR/<file name>.png: each heatmap would replace the view saved before it
            raise FmnistError(f"save_inputs and explain are the same directory ({self.explain}); give each its own")


def _check_output_folder(name: str, folder: Path) -> None:
    """FmnistError unless `folder` is a directory or can be made one: the first write would fail after the model has
    loaded and the first batch has been framed."""
    try:
        if folder.exists() and not folder.is_dir():
            raise FmnistError(f"{name} {folder}: exists and is not a directory")
        above = next((p for p in folder.parents if p.exists()), None)  # the nearest existing folder above it
    except PermissionError as e:  # a folder above it that cannot be searched
        raise FmnistError(f"{name} {folder}: cannot be checked: permission denied ({e.filename})") from None
    if above is not None and not above.is_dir():
        raise FmnistError(f"{name} {folder}: {above} is a file, not a directory")


@dataclass(frozen=True)
class FilePrediction:
    """The outcome for one file: its `answer` (fmnist.answer) and `error` None; or `answer` None and `error`
    the one-line reason the file could not be read. `saved_input`: where the 28x28 view went
    (PredictOptions.save_inputs), else None; `explanation`: where its heatmap went (PredictOptions.explain),
    else None."""

    path: Path
    answer: Answer | None
    error: str | None = None
    saved_input: Path | None = None
    explanation: Path | None = None


def predict_files(
    predictor: Predictor,
    paths: Sequence[Path],
    options: PredictOptions,
    explain: Callable[[np.ndarray, np.ndarray], list[bytes]] | None = None,
) -> Iterator[FilePrediction]:
    """Classify image files with `predictor`, `options.batch_size` at a time; one FilePrediction per path, in
    order, yielded batch by batch (so a caller can print as they come).

    A file that cannot be read (images.load_image's FmnistError: missing, not an image, corrupt, too
    large) gets its error and the others still get their answers. Saved inputs and heatmaps are named
    after the file's stem (-2, -3, ... when two share one) and written atomically. `explain` maps uint8
    [k, 28, 28] images and their predicted classes [k] (numpy arrays) to k heatmap PNGs (explain.py); it is
    needed when options.explain is set.
    """
    names = _saved_names(paths)
    for start in range(0, len(paths), options.batch_size):
        batch = range(start, min(start + options.batch_size, len(paths)))
        loaded: dict[int, Framed] = {}
        errors: dict[int, str] = {}
        saved: dict[int, Path] = {}
        for i in batch:
            try:
                loaded[i] = load_picture(paths[i])
            except FmnistError as e:
                errors[i] = str(e)
                continue
            if options.save_inputs is not None:
                saved[i] = options.save_inputs / names[i]
                export_png(loaded[i].pixels, saved[i])
        answered: dict[int, Answer] = {}
        heatmaps: dict[int, Path] = {}
        if loaded:
            images = np.stack([picture.pixels for picture in loaded.values()])
            cues = [picture.cues for picture in loaded.values()]
            logits = predictor.logits(images)
            found = answers(predictor.trust, logits, images, cues, options.top_k, options.ood_threshold)
            answered = dict(zip(loaded, found, strict=True))
            if options.explain is not None:
                assert explain is not None, "options.explain needs an explain function"
                targets = np.array([a.class_index for a in found])
                for i, png in zip(loaded, explain(images, targets), strict=True):
                    heatmaps[i] = options.explain / names[i]
                    atomic_write(heatmaps[i], png)
        for i in batch:
            yield FilePrediction(paths[i], answered.get(i), errors.get(i), saved.get(i), heatmaps.get(i))


def _saved_names(paths: Sequence[Path]) -> list[str]:
    """A PNG name per input path, from the path's stem; made unique with -2, -3, ... in input order."""
    names, used = [], set()
    for path in paths:
        stem = path.stem or "image"
        name, n = f"{stem}.png", 1
        while name in used:
            n += 1
            name = f"{stem}-{n}.png"
        used.add(name)
        names.append(name)
    return names
