"""The records a training run writes, one typed definition each: a metrics.jsonl row per epoch, and
summary.json. Every module that reads them (train, compare, tune, report) reads them through these
types, so that mypy catches a misspelt key instead of `row.get("val_acc", 0.0)` hiding it."""

# No `from __future__ import annotations`: TypedDict reads NotRequired from evaluated annotations.
from typing import Any

from typing_extensions import NotRequired, TypedDict


class EpochRow(TypedDict):
    epoch: int
    train_loss: float
    train_acc: float
    test_loss: float
    test_acc: float
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


class Summary(TypedDict):
    test_accuracy: float  # of the chosen epoch: best on validation with a split, else the last
    test_loss: float
    chosen_epoch: int
    chosen_by: str
    weights: NotRequired[str]  # "raw" or "ema": which weights of the chosen epoch (best.pt holds them)
    stopped: NotRequired[str]  # why training ended before the planned epochs (early stopping, time budget)
    epochs: int
    parameters: int
    wall_seconds: float  # every process of the run, resumes included
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
