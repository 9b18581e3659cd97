"""Checkpoint -> ONNX (fp32, or int8 by static quantization), with a parity check against PyTorch.

The graph takes uint8 pixels [N, 28, 28] (N free) and returns logits [N, 10]; the scaling to [0, 1]
is inside it, so a caller hands over the bytes of the images as they are. After the logits it returns
the calibrated probabilities [N, 10] (softmax of logits / T) and, when the model has a detector, the
in-distribution score [N] of a 28x28 image (`add_trust_outputs`): a runtime with no fmnist code answers
as `fmnist predict` does. Beside `model.onnx` goes `model.json` (the sidecar, see
`inference.read_sidecar`): class names, input and output, opset, the source checkpoint's SHA-256 and
config, quantization settings, and the exported file's accuracy on the test set as onnxruntime computes
it. The same facts travel inside the graph as ONNX metadata_props (`metadata_props`), so the .onnx
alone is enough.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from fmnist import checkpoint, data, measure, trust
from fmnist import config as config_lib
from fmnist.atomic import atomic_path, atomic_write
from fmnist.config import CALIBRATION_IMAGES, MIN_CALIBRATION_IMAGES, Config
from fmnist.data import CLASSES, SIDE, FashionMNIST, as_input, split_seed, validation_split
from fmnist.errors import FmnistError
from fmnist.evaluate import evaluate_logits
from fmnist.inference import (
    FACTS_KEY,
    INPUT_NAME,
    ONNX_FORMAT,
    OUTPUT_NAME,
    PROBABILITIES_NAME,
    SCORE_NAME,
    OnnxPredictor,
    sidecar_path,
)
from fmnist.run_dir import RunDir, model_path
from fmnist.trust import Trust, ood
from fmnist.version import __version__

OPSET = 17  # ai.onnx opset: per-channel QDQ needs >= 13; 17 runs on every onnxruntime of the last years
# Largest |logit difference| an fp32 export may show against PyTorch on the test set, for logits up to 100
# in size; beyond that it grows with them, as float32 rounding does (the reference MLP's reach 94).
PARITY_TOLERANCE = 1e-4
CALIBRATION_BATCH = 500
# Operators given int8 inputs. Not BatchNormalization: a batch norm after the cnn's head layer stays a
# float op between a dequantize and a quantize (per-channel quantization does not apply to it).
QUANTIZED_OPS = ("Conv", "Gemm", "MatMul", "Relu", "MaxPool")


class Pixels(nn.Module):
    """uint8 [N, 28, 28] -> the model's logits; data.as_input inside the graph.

    as_input reshapes with len(images), which the tracer would freeze into the graph as a constant
    batch size; -1 keeps the batch axis free.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.model(pixels.reshape(-1, 1, SIDE, SIDE).float() / 255)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def check_out(out: Path) -> None:
    """Fail before any work when `out` cannot be written: wrong name, a directory, no write access."""
    if out.suffix != ".onnx":
        raise FmnistError(
            f"--out {out}: the name must end in .onnx (the sidecar {sidecar_path(out).name} goes beside it)"
        )
    if out.is_dir():
        raise FmnistError(f"--out {out}: is a directory; give a file name ending in .onnx")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out.parent):
            pass
    except OSError as e:
        raise FmnistError(f"--out {out}: cannot write in {out.parent}: {e.strerror or e}") from None


def to_onnx(model: nn.Module, path: Path) -> None:
    """Write the fp32 graph of `model` (in eval mode) to `path`."""
    # The TorchScript exporter: 0.2 s here against 5-10 s for the torch.export-based one (dynamo=True),
    # which also needs onnxscript and logs to the console; both matched PyTorch to 1e-7 on these models
    # when tried. torch warns that it is deprecated; the parity check in measure_test guards a switch.
    example = torch.zeros(2, SIDE, SIDE, dtype=torch.uint8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            Pixels(model).eval(),
            (example,),
            str(path),
            dynamo=False,
            opset_version=OPSET,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
        )


def calibration_indices(train_labels: torch.Tensor, count: int, seed: int = 0) -> torch.Tensor:
    """A class-stratified sample of `count` training-image indices."""
    if not MIN_CALIBRATION_IMAGES <= count < len(train_labels):
        raise FmnistError(
            f"--calibration-images must be between {MIN_CALIBRATION_IMAGES} (fewer set the int8 activation ranges "
            f"from too little: benchmarks/fit_sample.py) and {len(train_labels) - 1}, got {count}"
        )
    return data.stratified_split(train_labels, count, seed)[1]


def quantize(fp32_path: Path, out_path: Path, calibration: np.ndarray, work_dir: Path) -> dict[str, Any]:
    """Static int8 quantization of the fp32 graph with activation ranges from `calibration` (uint8 [N, 28, 28],
    training images only); returns the settings for the sidecar.

    QDQ format (onnxruntime fuses each QuantizeLinear/DequantizeLinear pair around a Gemm or Conv into
    one integer kernel), int8 weights per output channel, uint8 activations from min/max calibration.
    On the reference MLP per-channel weights kept 0.05-0.1 point more accuracy than per-tensor, and
    QOperator with int8 activations ran an order of magnitude slower on an AVX2 CPU
    (benchmarks/int8_variants.py, docs/SERVING.md). A cnn's first convolution stays fp32: with one
    input channel it has 9 weights per filter, too few to share a scale well (int8 there cost a 3-epoch
    cnn preset 0.3 point, fp32 there nothing), and it does about 3 % of the cnn's work.
    """
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter(range(0, len(calibration), CALIBRATION_BATCH))

        def get_next(self) -> dict[str, np.ndarray] | None:
            start = next(self.batches, None)
            return None if start is None else {INPUT_NAME: calibration[start : start + CALIBRATION_BATCH]}

    prepared = work_dir / "prepared.onnx"
    quant_pre_process(str(fp32_path), str(prepared))  # shape inference and graph clean-up, as onnxruntime advises
    first = next(n for n in onnx.load(str(prepared)).graph.node if n.op_type in ("Conv", "Gemm", "MatMul"))
    kept_fp32 = [first.name] if first.op_type == "Conv" else []
    settings = {
        "format": "QDQ",
        "per_channel": True,
        "weights": "int8",
        "activations": "uint8",
        "calibration": "minmax",
        "calibration_images": len(calibration),
        "calibration_source": "class-stratified sample of the training images (seed 0); never test images",
        "op_types": list(QUANTIZED_OPS),
        "kept_fp32": kept_fp32,
    }
    quantize_static(
        str(prepared),
        str(out_path),
        Reader(),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        weight_type=QuantType.QInt8,
        activation_type=QuantType.QUInt8,
        calibrate_method=CalibrationMethod.MinMax,
        op_types_to_quantize=list(QUANTIZED_OPS),
        nodes_to_exclude=kept_fp32,
    )
    return settings


def onnx_bytes(model: nn.Module, calibration: np.ndarray | None = None) -> tuple[bytes, dict[str, Any] | None]:
    """The ONNX file of `model`: fp32, or int8 when `calibration` images are given; with the quantization
    settings (None for fp32)."""
    with tempfile.TemporaryDirectory(prefix="fmnist-export-") as tmp:
        work = Path(tmp)
        final = work / "fp32.onnx"
        to_onnx(model, final)
        settings = None
        if calibration is not None:
            fp32, final = final, work / "int8.onnx"
            settings = quantize(fp32, final, calibration, work)
        return final.read_bytes(), settings


@dataclass(frozen=True)
class Source:
    """A checkpoint to export: its file (a run directory resolved), the model in eval mode, its config."""

    path: Path
    model: nn.Module
    config: Config
    epoch: int | None
    trust: Trust  # the checkpoint's temperature and detector, fitted on its validation split or not
    layout: str | None = None  # a bare state dict: what was recognised in it (checkpoint.load_model)


def load_source(path: str | Path) -> Source:
    """The PyTorch model at `path` (a run directory or checkpoint) to export. Raises FmnistError for an export (as
    the Python API's Model.export says it) and for anything checkpoint.load_model cannot read."""
    path = model_path(path)
    if path.suffix.lower() == ".onnx":
        raise FmnistError(f"{path}: already an export; export the checkpoint or run it came from")
    model, cfg, state = checkpoint.load_model(path, "cpu")
    return Source(path, model, cfg, state.get("epoch"), trust.of_state(state), state.get("layout"))


def export(
    source: Source,
    out: str | Path,
    dataset: FashionMNIST,
    *,
    int8: bool = False,
    calibration_images: int = CALIBRATION_IMAGES,
) -> dict[str, Any]:
    """Export `source` to `out` (.onnx) and its sidecar (NAME.json); return the sidecar.

    Calibration uses training images only; the test set is only measured.
    """
    out = Path(out)
    check_out(out)
    model = source.model
    calibration = None
    if int8:
        calibration = dataset.train_images[calibration_indices(dataset.train_labels, calibration_images)].numpy()
    logits_bytes, quantization = onnx_bytes(model, calibration)
    precision = "int8" if int8 else "fp32"
    predictor = OnnxPredictor(logits_bytes, out, {"precision": precision})
    test = measure_test(model, predictor, dataset, int8)
    trust_ = trust_of_export(source, predictor, dataset, int8)
    facts: dict[str, Any] = {
        "format": ONNX_FORMAT,
        "precision": precision,
        "opset": OPSET,
        "classes": list(CLASSES),
        "input": {
            "name": INPUT_NAME,
            "dtype": "uint8",
            "shape": ["batch", SIDE, SIDE],
            "meaning": "grayscale pixels as in Fashion-MNIST: 0 is the background, 255 the brightest "
            "part of the object; the graph scales them to [0, 1]",
            "framing": FRAMING,
        },
        "output": {
            "name": OUTPUT_NAME,
            "dtype": "float32",
            "shape": ["batch", len(CLASSES)],
            "meaning": "logits in the order of classes; softmax gives probabilities",
        },
        "outputs": output_facts(trust_),
        "source": {
            "checkpoint": str(source.path),
            "sha256": sha256_file(source.path),
            "epoch": source.epoch,
            "config": config_lib.to_dict(source.config),
            "layout": source.layout,
            "revision": training_revision(source.path),
        },
        "training_data_sha256": {kind: data.FILES[kind][1] for kind in ("train_images", "train_labels")},
        "quantization": quantization,
        "test": test,
        trust.KEY: trust_.to_dict(),
        "exported_with": {
            "fmnist": __version__,
            "torch": torch.__version__,
            "onnx": _version("onnx"),
            "onnxruntime": _version("onnxruntime"),
            "revision": measure.code_version(),
        },
    }
    model_bytes = finish_graph(logits_bytes, trust_, metadata_props(facts))
    facts = {**facts, "onnx_file": out.name, "onnx_sha256": hashlib.sha256(model_bytes).hexdigest()}
    # The graph first: a crash between the two writes leaves a sidecar whose SHA-256 no longer matches,
    # which open_onnx refuses, rather than a sidecar that silently describes the wrong model.
    with atomic_path(out) as tmp:
        tmp.write_bytes(model_bytes)
    atomic_write(sidecar_path(out), json.dumps(facts, indent=2) + "\n")
    return facts


# How a picture becomes the 28x28 input (images.load_image), for the input's facts.
FRAMING = (
    "Fashion-MNIST's framing (Xiao, Rasul and Vollgraf, 2017): grayscale; the background, measured on the "
    "border, becomes 0 and the object positive whatever its polarity; trimmed to the object's bounding box; "
    "the longer side resized to 28 pixels, centred on the shorter; the strongest contrast scaled to 255. "
    "A 28x28 8-bit grayscale image with a mostly dark border, black in it and its brightest pixel at 250 or more "
    "(as every Fashion-MNIST image) is taken as it is."
)


def output_facts(trust_: Trust) -> list[dict[str, Any]]:
    """The graph's outputs, in order, with their meaning (the score only when there is a detector)."""
    outputs = [
        {"name": OUTPUT_NAME, "dtype": "float32", "shape": ["batch", len(CLASSES)], "meaning": "logits"},
        {
            "name": PROBABILITIES_NAME,
            "dtype": "float32",
            "shape": ["batch", len(CLASSES)],
            "meaning": "softmax(logits / temperature): calibrated probabilities, the plain softmax when no "
            "temperature was fitted",
        },
    ]
    if _scores_in_graph(trust_):
        outputs.append({"name": SCORE_NAME, "dtype": "float32", "shape": ["batch"], "meaning": _score_meaning(trust_)})
    return outputs


def _scores_in_graph(trust_: Trust) -> bool:
    """Whether the graph can score a 28x28 image as the detector does: one fitted with plain references, or
    one of the earlier form that has the energy among its cues."""
    return bool(trust_.held_out) or "energy" in trust_.references


def _score_meaning(trust_: Trust) -> str:
    if not trust_.held_out:  # a detector fitted before the view cues
        return (
            "in-distribution score of a 28x28 image, 0..1: the conformal p-value of its energy (logsumexp of the "
            "logits) among the reference garment photos; a garment when it is at least ood_threshold. A picture "
            "framed to 28x28 also has picture cues, which the graph cannot see"
        )
    described = {
        "residual": "the distance from the garments' principal subspace",
        "coarse": "the layout of their 4x4 blocks against each class's",
    }
    shape = ", ".join(described.get(name, name) for name in trust_.plain if name != "energy")
    pixels = f" and the shape of their pixels ({shape})" if shape else ""
    return (
        "in-distribution score of a 28x28 image, 0..1: the share of held-out plain garment images that look at "
        f"least as unusual, in their energy (logsumexp of the logits){pixels}; a "
        "garment when it is at least ood_threshold. A photo framed to 28x28 is scored against "
        "garment photos, with its framing cues, which the graph cannot see"
    )


def finish_graph(model_bytes: bytes, trust_: Trust, metadata: dict[str, str]) -> bytes:
    """The logits graph with the trust outputs (`add_trust_outputs`) and `metadata` as its metadata_props."""
    import onnx

    model = onnx.load_from_string(model_bytes)
    add_trust_outputs(model.graph, trust_)
    onnx.helper.set_model_props(model, metadata)
    model.producer_name, model.producer_version = "fmnist", __version__
    model.doc_string = "Fashion-MNIST classifier: uint8 pixels [N, 28, 28] -> logits, probabilities, score"
    onnx.checker.check_model(model)
    return model.SerializeToString()


def add_trust_outputs(graph: Any, trust_: Trust) -> None:
    """Append to `graph` (onnx.GraphProto) the outputs `probabilities` = Softmax(logits / T) and, with a
    detector, `in_distribution_score`: trust.Trust.scores of a picture without picture cues (a 28x28 image),
    computed from the pixels and the logits as there (`_plain_score`; `_energy_score` for a detector of the
    earlier form), its counts and p-values in float64 as there so that a value next to a reference falls on
    the same side."""
    from onnx import TensorProto, helper

    graph_ = _Graph(graph)
    temperature = graph_.constant("temperature", np.array(trust_.temperature or 1.0, np.float32))
    scaled = graph_.node("Div", [OUTPUT_NAME, temperature], "fmnist_scaled")
    graph_.node("Softmax", [scaled], PROBABILITIES_NAME, axis=1)
    graph.output.append(helper.make_tensor_value_info(PROBABILITIES_NAME, TensorProto.FLOAT, ["batch", len(CLASSES)]))
    if not _scores_in_graph(trust_):
        return
    # In float64 from the float32 logits, as trust.energies computes it.
    logits64 = graph_.node("Cast", [OUTPUT_NAME], "fmnist_logits64", to=TensorProto.DOUBLE)
    energy64 = graph_.node("ReduceLogSumExp", [logits64], "fmnist_energy64", axes=[1], keepdims=0)  # [N]
    score = _plain_score(graph_, trust_, energy64) if trust_.held_out else _energy_score(graph_, trust_, energy64)
    graph_.node("Cast", [score], SCORE_NAME, to=TensorProto.FLOAT)
    graph.output.append(helper.make_tensor_value_info(SCORE_NAME, TensorProto.FLOAT, ["batch"]))


class _Graph:
    """Adds initializers and nodes, named fmnist_*, to an onnx.GraphProto."""

    def __init__(self, graph: Any):
        self.graph = graph
        self.constants: set[str] = set()

    def constant(self, name: str, value: np.ndarray) -> str:
        """An initializer holding `value`; one by that name is added once (the names of shared ones say their value)."""
        from onnx import numpy_helper

        if name not in self.constants:
            self.constants.add(name)
            self.graph.initializer.append(numpy_helper.from_array(np.asarray(value), f"fmnist_{name}"))
        return f"fmnist_{name}"

    def node(self, op: str, inputs: list[str], output: str, **attributes: Any) -> str:
        from onnx import helper

        self.graph.node.append(helper.make_node(op, inputs, [output], **attributes))
        return output

    def double(self, value: float) -> str:
        return self.constant(f"double_{value:g}".replace(".", "_").replace("-", "minus"), np.array(value, np.float64))

    def p_value(self, name: str, values: str, reference: np.ndarray, unusual: str) -> str:
        """ood.p_values of float64 `values` [N] against sorted `reference` [M], in float64: (1 + references at
        least as unusual) / (1 + M), two-sided for "both"."""
        from onnx import TensorProto

        ref = self.constant(f"{name}_reference", np.asarray(reference, np.float64)[None, :])
        column = self.node("Unsqueeze", [values, self.constant("axis_1", np.array([1]))], f"fmnist_{name}_column")

        def tail(op: str, side: str) -> str:
            hits = self.node(op, [ref, column], f"fmnist_{name}_{side}_hits")  # [N, M]
            as_double = self.node("Cast", [hits], f"fmnist_{name}_{side}_double", to=TensorProto.DOUBLE)
            count = self.node(
                "ReduceSum", [as_double, self.constant("axis_1", np.array([1]))], f"fmnist_{name}_{side}", keepdims=0
            )
            plus_one = self.node("Add", [count, self.double(1.0)], f"fmnist_{name}_{side}_plus_one")
            return self.node("Div", [plus_one, self.double(len(reference) + 1.0)], f"fmnist_{name}_{side}_p")

        if unusual == "low":
            return tail("LessOrEqual", "low")
        if unusual == "high":
            return tail("GreaterOrEqual", "high")
        smaller = self.node("Min", [tail("LessOrEqual", "low"), tail("GreaterOrEqual", "high")], f"fmnist_{name}_tail")
        doubled = self.node("Mul", [smaller, self.double(2.0)], f"fmnist_{name}_doubled")
        return self.node("Min", [doubled, self.double(1.0)], f"fmnist_{name}_p")


def _energy_score(graph: _Graph, trust_: Trust, energy64: str) -> str:
    """A detector of the earlier form: the p-value of the energy among the photos' references."""
    assert ood.UNUSUAL["energy"] == "low", "the graph counts the references at or below the energy"
    return graph.p_value("energy", energy64, trust_.references["energy"], "low")


def _plain_score(graph: _Graph, trust_: Trust, energy64: str) -> str:
    """ood.calibrated for a plain 28x28 image: the p-values of its energy and view cues (ood.view_cues, from
    pixel counts) among `trust_.plain`, their ood.unusualness (ood.SECOND_ONLY left out of the smallest
    p-value, not of the second smallest), and its p-value among held_out["plain"]."""
    from onnx import TensorProto

    values = {"energy": energy64, **_view_cues(graph)}
    if "sharpness" in trust_.plain or trust_.basis is not None or trust_.gaussians is not None:
        pixels = graph.node("Cast", [INPUT_NAME], "fmnist_pixels64", to=TensorProto.DOUBLE)  # [N, 28, 28], 0..255
        if "sharpness" in trust_.plain:
            values["sharpness"] = _sharpness(graph, pixels)
        if trust_.basis is not None:
            values["residual"] = _residual(graph, pixels, trust_.basis)
        if trust_.gaussians is not None:
            values["coarse"] = _coarse(graph, pixels, trust_.gaussians)
    p_values = [
        graph.p_value(name, values[name], reference, ood.UNUSUAL[name]) for name, reference in trust_.plain.items()
    ]
    first = [p for p, name in zip(p_values, trust_.plain, strict=True) if name not in ood.SECOND_ONLY]
    smallest = graph.node("Min", first, "fmnist_smallest_p")
    product = p_values[0]
    for i, p in enumerate(p_values[1:]):
        product = graph.node("Mul", [product, p], f"fmnist_product_{i}")
    tie_break = graph.node("Mul", [product, graph.double(ood.TIE_BREAK)], "fmnist_tie_break")
    unusualness = graph.node("Add", [smallest, tie_break], "fmnist_unusualness")
    if trust_.gate and len(p_values) > 1:
        unusualness = graph.node("Mul", [unusualness, _gated(graph, p_values, trust_.gate)], "fmnist_gated_unusualness")
    return graph.p_value("calibrated", unusualness, trust_.held_out["plain"], "low")


def _gated(graph: _Graph, p_values: list[str], gate: float) -> str:
    """ood.unusualness's factor min(1, second smallest of `p_values` / `gate`), float64 [N]: the p-values stacked
    [K, N], the two smallest of each column by TopK, the second divided by the gate."""
    from onnx import helper

    axis = graph.constant("axis_0", np.array([0]))
    rows = [graph.node("Unsqueeze", [p, axis], f"fmnist_p_row_{i}") for i, p in enumerate(p_values)]
    stacked = graph.node("Concat", rows, "fmnist_p_rows", axis=0)  # [K, N]
    two = ["fmnist_two_smallest_p", "fmnist_two_smallest_at"]  # [2, N], ascending, and where they were
    graph.graph.node.append(
        helper.make_node("TopK", [stacked, graph.constant("count_2", np.array([2]))], two, axis=0, largest=0)
    )
    second = graph.node("Gather", [two[0], graph.constant("index_1", np.array(1))], "fmnist_second_smallest_p", axis=0)
    share = graph.node("Div", [second, graph.constant("gate", np.array(gate, np.float64))], "fmnist_second_share")
    return graph.node("Min", [share, graph.double(1.0)], "fmnist_gate_factor")


def _sharpness(graph: _Graph, pixels: str) -> str:
    """ood.view_cues' `sharpness` of the input `pixels` (float64 [N, 28, 28], 0..255): every sum is of integers
    below 2^53, exact in float64, so the one division gives ood's bits."""
    axes = graph.constant("axes_1_2", np.array([1, 2]))

    def summed(values: str, name: str) -> str:
        return graph.node("ReduceSum", [values, axes], f"fmnist_{name}", keepdims=0)

    def squared_steps(axis: int, name: str) -> str:
        def part(start: int, end: int, side: str) -> str:
            bounds = [graph.constant(f"slice_{v}", np.array([v])) for v in (start, end)]
            return graph.node("Slice", [pixels, *bounds, graph.constant(f"axis_{axis}", np.array([axis]))], side)

        step = graph.node(
            "Sub", [part(1, SIDE, f"fmnist_{name}_after"), part(0, SIDE - 1, f"fmnist_{name}_before")], f"fmnist_{name}"
        )
        return summed(graph.node("Mul", [step, step], f"fmnist_{name}_squared"), f"{name}_energy")

    gradient = graph.node(
        "Add", [squared_steps(2, "steps_across"), squared_steps(1, "steps_down")], "fmnist_gradient_energy"
    )
    pixel_count = graph.double(float(SIDE * SIDE))
    total = summed(pixels, "pixel_sum")
    squares = summed(graph.node("Mul", [pixels, pixels], "fmnist_pixels_squared"), "pixel_square_sum")
    spread = graph.node(
        "Sub",
        [
            graph.node("Mul", [squares, pixel_count], "fmnist_square_sum_scaled"),
            graph.node("Mul", [total, total], "fmnist_pixel_sum_squared"),
        ],
        "fmnist_spread",
    )
    ratio = graph.node(
        "Div",
        [
            graph.node("Mul", [gradient, pixel_count], "fmnist_gradient_scaled"),
            graph.node("Max", [spread, graph.double(1.0)], "fmnist_spread_at_least_one"),
        ],
        "fmnist_sharpness_ratio",
    )
    varied = graph.node("Greater", [spread, graph.double(0.0)], "fmnist_varied")
    return graph.node("Where", [varied, ratio, graph.double(0.0)], "fmnist_sharpness")


def _residual(graph: _Graph, pixels: str, basis: np.ndarray) -> str:
    """ood.residual of the input `pixels` (float64 [N, 28, 28], 0..255): the squared distance of each view (0..1)
    from the principal subspace of `basis` (its mean, then its directions)."""
    flat = graph.node(
        "Reshape", [pixels, graph.constant("flat_shape", np.array([-1, SIDE * SIDE]))], "fmnist_pixels_flat"
    )
    scaled = graph.node("Div", [flat, graph.double(255.0)], "fmnist_pixels_scaled")
    centred = graph.node("Sub", [scaled, graph.constant("basis_mean", basis[0])], "fmnist_centred")
    directions = basis[1:]
    along = graph.node("MatMul", [centred, graph.constant("basis_directions_t", directions.T.copy())], "fmnist_along")
    drawn = graph.node("MatMul", [along, graph.constant("basis_directions", directions.copy())], "fmnist_drawn")
    left = graph.node("Sub", [centred, drawn], "fmnist_left")
    squared = graph.node("Mul", [left, left], "fmnist_left_squared")
    return graph.node("ReduceSum", [squared, graph.constant("axis_1", np.array([1]))], "fmnist_residual", keepdims=0)


def _coarse(graph: _Graph, pixels: str, gaussians: np.ndarray) -> str:
    """ood.coarse of the input `pixels` (float64 [N, 28, 28], 0..255): the means (the exact sum / 16) and maxima of
    their blocks (ONNX Runtime has no AveragePool in float64), scaled to 0..1, and the smallest squared Mahalanobis
    distance of those to a class's Gaussian (`gaussians`: each class's mean, then its precision matrix)."""
    side, block = SIDE // ood.COARSE_BLOCK, ood.COARSE_BLOCK
    shape = graph.constant("blocks_shape", np.array([-1, side, block, side, block]))
    blocks = graph.node("Reshape", [pixels, shape], "fmnist_blocks")  # [N, 7, 4, 7, 4]
    sums = graph.node("ReduceSum", [blocks, graph.constant("axes_2_4", np.array([2, 4]))], "fmnist_block_sums")
    means = graph.node("Div", [sums, graph.double(float(block * block))], "fmnist_block_means")
    maxima = graph.node("ReduceMax", [blocks], "fmnist_block_maxima", axes=[2, 4])
    flat = graph.constant("pools_flat_shape", np.array([-1, side * side]))
    pools = [graph.node("Reshape", [v, flat], f"{v}_flat") for v in (means, maxima)]
    joined = graph.node("Concat", pools, "fmnist_pools", axis=1)
    scaled = graph.node("Div", [joined, graph.double(255.0)], "fmnist_pools_scaled")  # [N, D]
    row = graph.node("Unsqueeze", [scaled, graph.constant("axis_0", np.array([0]))], "fmnist_pools_row")  # [1, N, D]
    centres = graph.constant("class_means", gaussians[:, :1].copy())  # [K, 1, D]
    diff = graph.node("Sub", [row, centres], "fmnist_pools_diff")  # [K, N, D]
    weighted = graph.node(
        "MatMul", [diff, graph.constant("class_precisions", gaussians[:, 1:].copy())], "fmnist_pools_w"
    )
    product = graph.node("Mul", [weighted, diff], "fmnist_pools_product")
    distances = graph.node(
        "ReduceSum", [product, graph.constant("axis_2", np.array([2]))], "fmnist_class_distances", keepdims=0
    )
    return graph.node("ReduceMin", [distances], "fmnist_coarse", axes=[0], keepdims=0)  # [N]


def _view_cues(graph: _Graph) -> dict[str, str]:
    """ood.view_cues of the input pixels uint8 [N, 28, 28] from counts of pixels: span, ink, stroke and flat,
    float64 [N] each (the sharpness, from sums of the pixels: `_sharpness`)."""
    from onnx import TensorProto

    ink = graph.node(
        "Greater", [INPUT_NAME, graph.constant("ink_level", np.array(ood.INK_LEVEL, np.uint8))], "fmnist_ink"
    )
    ink_f = graph.node("Cast", [ink], "fmnist_ink_float", to=TensorProto.FLOAT)  # [N, 28, 28], 0 or 1
    positions = graph.constant("positions", np.arange(SIDE, dtype=np.float32))
    spans = []
    for axis, name in ((2, "rows"), (1, "columns")):
        occupied = graph.node("ReduceMax", [ink_f], f"fmnist_{name}", axes=[axis], keepdims=0)  # [N, 28]
        empty = graph.node(
            "Sub", [graph.constant("one_float", np.array(1, np.float32)), occupied], f"fmnist_{name}_empty"
        )
        at = graph.node("Mul", [occupied, positions], f"fmnist_{name}_at")
        first_at = graph.node(
            "Add",
            [
                at,
                graph.node(
                    "Mul", [empty, graph.constant("side", np.array(SIDE, np.float32))], f"fmnist_{name}_pad_high"
                ),
            ],
            f"fmnist_{name}_first_at",
        )
        last_at = graph.node("Sub", [at, empty], f"fmnist_{name}_last_at")
        first = graph.node("ReduceMin", [first_at], f"fmnist_{name}_first", axes=[1], keepdims=0)
        last = graph.node("ReduceMax", [last_at], f"fmnist_{name}_last", axes=[1], keepdims=0)
        length = graph.node(
            "Add",
            [
                graph.node("Sub", [last, first], f"fmnist_{name}_diff"),
                graph.constant("one_float", np.array(1, np.float32)),
            ],
            f"fmnist_{name}_length",
        )
        spans.append(
            graph.node("Max", [length, graph.constant("zero_float", np.array(0, np.float32))], f"fmnist_{name}_span")
        )
    span = graph.node("Cast", [graph.node("Max", spans, "fmnist_span_float")], "fmnist_span", to=TensorProto.DOUBLE)
    axes = graph.constant("axes_1_2", np.array([1, 2]))
    count = graph.node("ReduceSum", [ink_f, axes], "fmnist_ink_count", keepdims=0)
    count64 = graph.node("Cast", [count], "fmnist_ink_count64", to=TensorProto.DOUBLE)
    share = graph.node("Div", [count64, graph.double(float(SIDE * SIDE))], "fmnist_ink_share")
    # Interior pixels: ink whose 3x3 neighbourhood holds no background, the picture's outside counting as background.
    background = graph.node("Sub", [graph.constant("one_float", np.array(1, np.float32)), ink_f], "fmnist_background")
    padded = graph.node(
        "Pad",
        [
            graph.node("Unsqueeze", [background, graph.constant("axis_1", np.array([1]))], "fmnist_background_4d"),
            graph.constant("pads", np.array([0, 0, 1, 1, 0, 0, 1, 1])),
            graph.constant("one_float", np.array(1, np.float32)),
        ],
        "fmnist_background_padded",
    )
    near = graph.node("MaxPool", [padded], "fmnist_background_near", kernel_shape=[3, 3])  # [N, 1, 28, 28]
    interior = graph.node("Sub", [graph.constant("one_float", np.array(1, np.float32)), near], "fmnist_interior")
    inside = graph.node(
        "ReduceSum", [interior, graph.constant("axes_1_2_3", np.array([1, 2, 3]))], "fmnist_interior_count", keepdims=0
    )
    inside64 = graph.node("Cast", [inside], "fmnist_interior_count64", to=TensorProto.DOUBLE)
    at_least_one = graph.node("Max", [count64, graph.double(1.0)], "fmnist_ink_count_at_least_one")
    stroke = graph.node("Div", [inside64, at_least_one], "fmnist_stroke")
    full = graph.node(
        "Greater", [INPUT_NAME, graph.constant("full_level", np.array(ood.FULL_LEVEL, np.uint8))], "fmnist_full"
    )
    full_f = graph.node("Cast", [full], "fmnist_full_float", to=TensorProto.FLOAT)
    full_count = graph.node("ReduceSum", [full_f, axes], "fmnist_full_count", keepdims=0)
    full64 = graph.node("Cast", [full_count], "fmnist_full_count64", to=TensorProto.DOUBLE)
    flat = graph.node("Div", [full64, at_least_one], "fmnist_flat")
    return {"span": span, "ink": share, "stroke": stroke, "flat": flat}


def metadata_props(facts: dict[str, Any]) -> dict[str, str]:
    """The ONNX metadata_props of an export (strings; JSON where structured): what a plain runtime needs by
    name (classes, input, outputs, temperature, ood_threshold, revision, training data digests) and, under
    "fmnist" and "trust", the sidecar's facts for fmnist itself (inference.facts_of_metadata)."""
    trust_ = facts[trust.KEY]
    detector = bool(trust_["references"])
    return {
        "format": ONNX_FORMAT,
        "classes": json.dumps(facts["classes"]),
        "input": json.dumps(facts["input"]),
        "outputs": json.dumps(facts["outputs"]),
        "temperature": json.dumps(trust_["temperature"]),
        "ood_threshold": json.dumps(trust_["threshold"] if detector else None),
        "source_revision": json.dumps(facts["source"]["revision"]),
        "training_data_sha256": json.dumps(facts["training_data_sha256"]),
        trust.KEY: json.dumps(trust_),
        FACTS_KEY: json.dumps({k: v for k, v in facts.items() if k != trust.KEY}),
    }


def training_revision(checkpoint_path: Path) -> str | None:
    """The code revision that trained a checkpoint kept in a run directory (its summary.json), else None."""
    try:
        summary = RunDir(checkpoint_path.parent.parent).read_summary()
    except (OSError, ValueError):  # unreadable or not JSON: the revision is unknown, the export goes on
        return None
    return summary.get("code_version") if summary else None


def trust_of_export(source: Source, predictor: OnnxPredictor, dataset: FashionMNIST, int8: bool) -> Trust:
    """The checkpoint's temperature and detector, for the exported graph. An fp32 graph gives PyTorch's logits
    (within PARITY_TOLERANCE), so they are copied; int8 shifts logits, so they are fitted again on the int8
    graph's own logits over the checkpoint's validation split (never the test set), on the checkpoint's cues with
    its gate (the default detector for a checkpoint with a temperature and none); a split too small for them
    (trust.shortfall) leaves the int8 graph unfitted."""
    if not int8 or source.trust.temperature is None:
        return source.trust
    if trust.shortfall(source.config.val_size):
        return trust.UNFITTED
    _, val_idx = validation_split(dataset.train_labels, source.config)
    val_x, val_y = dataset.train_images[val_idx], dataset.train_labels[val_idx]
    training = data.trained_on(dataset, source.config)
    if not source.trust.has_detector:  # a temperature alone, as fitted before the detector: the default detector
        return trust.fit(predictor.logits, val_x, val_y, training, split_seed(source.config))
    own = source.trust
    return trust.fit(
        predictor.logits, val_x, val_y, training, split_seed(source.config), gate=own.gate, cues=tuple(own.references)
    )


def _recording(
    logits_of: Callable[[torch.Tensor], torch.Tensor],
) -> tuple[Callable[[torch.Tensor], torch.Tensor], list[torch.Tensor]]:
    """`logits_of`, also keeping every batch of logits it returns."""
    kept: list[torch.Tensor] = []

    def call(images: torch.Tensor) -> torch.Tensor:
        kept.append(logits_of(images))
        return kept[-1]

    return call, kept


def measure_test(model: nn.Module, predictor: OnnxPredictor, dataset: FashionMNIST, int8: bool) -> dict[str, Any]:
    """Test-set accuracy and loss of the exported graph through onnxruntime, beside PyTorch's on the same
    images. An fp32 graph whose logits differ from PyTorch's by more than PARITY_TOLERANCE is refused."""
    import onnxruntime as ort

    images, labels = dataset.test_images, dataset.test_labels
    onnx_call, onnx_logits = _recording(predictor.logits)
    ours = evaluate_logits(onnx_call, images, labels)
    torch_call, torch_logits = _recording(lambda x: model(as_input(x)).float())
    reference = evaluate_logits(torch_call, images, labels)
    reference_logits = torch.cat(torch_logits)
    difference = (torch.cat(onnx_logits) - reference_logits).abs().max().item()
    tolerance = PARITY_TOLERANCE * max(1.0, reference_logits.abs().max().item() / 100)
    if not int8 and not difference <= tolerance:
        raise FmnistError(
            f"the ONNX graph's logits differ from PyTorch's by up to {difference:.2e} on the test set "
            f"(tolerance {tolerance:.1e}); nothing written"
        )
    return {
        "runtime": f"onnxruntime {ort.__version__} CPUExecutionProvider",
        "images": len(labels),
        "accuracy": ours.accuracy,
        "loss": ours.loss,
        "pytorch_accuracy": reference.accuracy,
        "pytorch_loss": reference.loss,
        "max_abs_logit_difference": difference,
        "same_prediction": (ours.predictions == reference.predictions).float().mean().item(),
    }


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None
