"""The records fmnist writes, one typed definition each: a metrics.jsonl row per epoch, summary.json,
and the JSON of `fmnist bench`. Every module that reads them (train, compare, tune, plots, the bench
report) reads them through these types, so that mypy catches a misspelt key instead of
`row.get("val_acc", 0.0)` hiding it."""

# No `from __future__ import annotations`: TypedDict reads NotRequired from evaluated annotations.
from typing import Any

from typing_extensions import NotRequired, TypedDict


class EpochRow(TypedDict):
    epoch: int
    train_loss: float
    train_acc: float
    test_loss: NotRequired[float]  # test_* and ema_test_*: only with --test-curve (the summary has the chosen one's)
    test_acc: NotRequired[float]
    val_loss: NotRequired[float]  # the val_* keys only with a validation split
    val_acc: NotRequired[float]
    ema_test_loss: NotRequired[float]  # the ema_* keys: the EMA weights' metrics, only with --ema-decay
    ema_test_acc: NotRequired[float]
    ema_val_loss: NotRequired[float]
    ema_val_acc: NotRequired[float]
    lr: float  # at the start of the epoch
    epoch_seconds: float
    ms_per_batch: float
    images_per_second: float


class Parent(TypedDict):
    """parent.json: the checkpoint a fine-tuned run started from."""

    path: str
    sha256: str  # of the checkpoint's bytes
    # How many of the run's validation images the parent trained on (training.parent_split), when any: its best epoch,
    # temperature and detector were then chosen on images the parent already knew.
    validation_trained_on: NotRequired[int]


class Summary(TypedDict):
    test_accuracy: float  # of the chosen epoch: best on validation with a split, else the last
    test_loss: float
    chosen_epoch: int
    chosen_by: str
    weights: NotRequired[str]  # "raw" or "ema": which weights of the chosen epoch (best.pt holds them); adapt: the mix
    stopped: NotRequired[str]  # why training ended before the planned epochs (early stopping, time budget)
    epochs: int
    parameters: int
    wall_seconds: float  # training, what --max-time counts: the epochs of every process, resumes included
    # The whole run: from the command's start (data loading included) to summary.json, training and the
    # work after it (final test, plots, the temperature and detector fit), resumes included.
    total_seconds: float
    train_images_per_second: float  # medians over epochs
    train_ms_per_batch: float
    peak_memory_bytes: int
    device: str
    torch_version: str
    seed: int
    code_version: str | None
    hardware: dict[str, Any]
    amp: str  # what ran: "auto" resolved
    config: dict[str, Any]
    val_accuracy: NotRequired[float]
    val_loss: NotRequired[float]
    processes: NotRequired[int]
    process_group: NotRequired[str | None]
    parent: NotRequired[Parent]  # a fine-tuned run's starting checkpoint (parent.json)


class TimingRow(TypedDict):
    """One row of `fmnist bench`: calls of `batch_size` images, timed (bench/timing.py)."""

    batch_size: int
    latency_ms_median: float
    latency_ms_p95: float
    images_per_second: float
    fraction_of_limit: float  # of the fp32 matmul limit for this model, 0..1
    repeats: int
    other_cpus: float | None  # CPUs other processes kept busy meanwhile (None off Linux)


class PipelineComparison(TypedDict):
    """One epoch of the textbook pipeline against fmnist's over the same images (bench/textbook.py)."""

    textbook_epoch_seconds: float
    fmnist_epoch_seconds: float
    speedup: float
    textbook_images_per_second: float
    fmnist_images_per_second: float
    batch_size: int
    images_measured: int
    scaled_to_images: int
    scaled: bool
    other_cpus: dict[str, float | None]  # "textbook", "fmnist"


class BenchModel(TypedDict):
    name: str
    hidden: list[int]
    parameters: int
    forward_flops_per_image: float
    training_flops_per_image: float


class BenchResult(TypedDict):
    """What `fmnist bench` measured (bench/speed.py), as written to its JSON."""

    device: str
    hardware: dict[str, Any]  # measure.hardware() plus the matmul rates and the limits they set
    model: BenchModel
    inference: list[TimingRow]
    inference_onnxruntime: list[TimingRow]
    inference_onnxruntime_int8: list[TimingRow]
    inference_bf16_autocast: list[TimingRow]
    training: list[TimingRow]
    training_bf16_autocast: list[TimingRow]
    training_steady: list[TimingRow]
    training_bf16_autocast_steady: list[TimingRow]
    steady_state: dict[str, Any]  # source, optimizer_denormal_fraction
    pipeline: PipelineComparison
    peak_memory_bytes: int
    peak_memory_kind: str
    load_average: dict[str, list[float] | None]  # before, after
    other_cpus: float | None
    seconds: float
    plan: dict[str, Any]
    notes: str


# The timed series of a BenchResult: (key, table name, plot label, plot marker), in table order.
BENCH_SERIES: tuple[tuple[str, str, str, str], ...] = (
    ("inference", "inference", "inference fp32", "o"),
    ("inference_onnxruntime", "ort fp32", "onnxruntime fp32", "<"),
    ("inference_onnxruntime_int8", "ort int8", "onnxruntime int8", ">"),
    ("inference_bf16_autocast", "bf16 infer", "inference bf16", "^"),
    ("training", "train fresh", "training fp32", "s"),
    ("training_steady", "train steady", "training fp32 steady", "D"),
    ("training_bf16_autocast", "bf16 fresh", "training bf16", "v"),
    ("training_bf16_autocast_steady", "bf16 steady", "training bf16 steady", "P"),
)
