"""Decisions a run takes from its epoch history: which epoch and weights to keep, and when to stop.

All of them read only the metrics rows (records.EpochRow) and the elapsed time, so a resumed run
takes the same decisions as an uninterrupted one without any state of its own.
"""

from __future__ import annotations

from collections.abc import Sequence

from fmnist.config import Config
from fmnist.records import EpochRow

RAW, EMA = "raw", "ema"


def candidates(row: EpochRow) -> list[tuple[str, float]]:
    """(weights, validation accuracy) of one epoch: the raw weights, then the EMA ones when recorded."""
    found = [(RAW, row["val_acc"])] if "val_acc" in row else []
    if "ema_val_acc" in row:
        found.append((EMA, row["ema_val_acc"]))
    return found


def validation_score(row: EpochRow) -> float:
    """The best validation accuracy among the epoch's weights (raw, EMA); -1 without a validation split."""
    return max((acc for _, acc in candidates(row)), default=-1.0)


def choose(history: Sequence[EpochRow]) -> tuple[EpochRow, str]:
    """The epoch and weights (RAW or EMA) with the highest validation accuracy, the earliest on ties and
    raw before EMA; without a validation split, the last epoch's raw weights. Never reads the test set."""
    if not history:
        raise ValueError("no epochs to choose from")
    if "val_acc" not in history[0]:
        return history[-1], RAW
    best = max(((row, weights, acc) for row in history for weights, acc in candidates(row)), key=lambda c: c[2])
    return best[0], best[1]


def epochs_without_gain(history: Sequence[EpochRow], min_delta: float) -> int:
    """Epochs since the validation score last rose by more than `min_delta` over the best before it
    (Keras EarlyStopping's rule: the reference best moves only on such a gain)."""
    best, waited = float("-inf"), 0
    for row in history:
        score = validation_score(row)
        if score > best + min_delta:
            best, waited = score, 0
        else:
            waited += 1
    return waited


def stop_reason(cfg: Config, history: Sequence[EpochRow], elapsed: float) -> str | None:
    """Why the run should train no further epoch, or None: early stopping (cfg.patience epochs without a
    gain above cfg.min_delta on validation), or the time budget (cfg.max_time seconds, `elapsed`
    included, would be passed by one more epoch as long as the last one)."""
    if not history or len(history) >= cfg.epochs:
        return None
    if cfg.patience and epochs_without_gain(history, cfg.min_delta) >= cfg.patience:
        return (
            f"early stopping: no validation accuracy gain above {cfg.min_delta:g} in {cfg.patience} epochs; "
            f"the schedule planned {cfg.epochs} epochs and stopped after {len(history)}"
        )
    if cfg.max_time and elapsed + history[-1]["epoch_seconds"] > cfg.max_time:
        return (
            f"time budget: {cfg.max_time:g} s would be passed by another epoch; the schedule planned "
            f"{cfg.epochs} epochs and was cut after {len(history)}"
        )
    return None
