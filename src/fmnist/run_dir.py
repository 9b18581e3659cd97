"""RunDir: a training run's directory, the one place that names its files.

    config.toml          the resolved config, written first (it also marks the directory as a run)
    metrics.jsonl        one records.EpochRow per finished epoch
    summary.json         records.Summary, written when the run finishes
    parent.json          a fine-tuned run's starting weights: records.Parent, the checkpoint's path and SHA-256
                         (--init-from), and how many validation images it trained on when any
    diverged.json        {"error": ...} when a study's run stopped on a non-finite loss
    error.log            the traceback of an unexpected failure during training (train.failure_as_error)
    checkpoints/last.pt  every epoch: weights, optimizer, schedule, RNG states (exact resume)
    checkpoints/best.pt  the epoch with the best validation accuracy so far
    tensorboard/         TensorBoard event files
    claim.lock           flock(2)ed by the process training the run (compare's tasks on a shared directory)
    *.png                curves, confusion matrix, the test set's top losses and most-confused pairs

Every write is atomic (atomic.py): a run killed at any moment leaves the previous file, never a
torn one. In the spirit of timm's CheckpointSaver and Ultralytics' trainer paths.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any, cast

from fmnist import checkpoint, textfile
from fmnist import config as config_lib
from fmnist.atomic import atomic_write
from fmnist.config import Config
from fmnist.errors import FmnistError
from fmnist.records import EpochRow, Parent, Summary

CARD_WEIGHTS = "model.safetensors"  # a model card directory's weights (card.py)


def model_path(path: str | Path) -> Path:
    """The checkpoint a path names: a run directory stands for its chosen checkpoint, a model card directory
    (fmnist card) for its model.safetensors, a file for itself."""
    path = Path(path)
    if path.is_dir() and (path / CARD_WEIGHTS).is_file() and not RunDir(path).is_run():
        return path / CARD_WEIGHTS
    return RunDir(path).chosen_checkpoint() if path.is_dir() else path


def trainable_path(path: str | Path, refusal: str) -> Path:
    """model_path of a model to train from (a parent to fine-tune); FmnistError(refusal) for an ONNX export, which
    holds no weights to train."""
    found = model_path(path)
    if found.suffix.lower() == ".onnx":
        raise FmnistError(refusal)
    return found


class RunDir:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.config = self.path / "config.toml"
        self.metrics = self.path / "metrics.jsonl"
        self.summary = self.path / "summary.json"
        self.parent = self.path / "parent.json"
        self.diverged = self.path / "diverged.json"
        self.error_log = self.path / "error.log"
        self.last = self.path / "checkpoints" / "last.pt"
        self.best = self.path / "checkpoints" / "best.pt"
        self.tensorboard = self.path / "tensorboard"
        self.claim = self.path / "claim.lock"

    def __str__(self) -> str:
        return str(self.path)

    # ------------------------------------------------------------ creating and reading

    def create(self, cfg: Config) -> str | None:
        """Refuse to overwrite an earlier run; write the resolved config first, which also proves the
        directory is writable before any training time is spent. Returns the problem, if any (a string,
        so that under torchrun rank 0 can broadcast it to the other ranks before they raise)."""
        if self.config.exists():
            return self.taken()
        try:
            atomic_write(self.config, config_lib.dumps(cfg))
        except OSError as e:
            return f"cannot write the run directory {self.path}: {e.strerror or e}"
        return None

    def taken(self) -> str:
        """Why a new run cannot start here: the directory already holds one."""
        return f"{self.path} already holds a run; continue it with --resume {self.path} or choose another --out"

    def is_run(self) -> bool:
        return self.config.is_file()

    def read_config(self) -> Config:
        """The run's saved config. Raises FmnistError when the directory holds no run."""
        if not self.is_run():
            raise FmnistError(f"{self.path}: not a run directory (no {self.config.name}); nothing to resume")
        return config_lib.resolve(self.config)

    def read_history(self) -> list[EpochRow]:
        if not self.metrics.exists():
            return []
        return [json.loads(line) for line in textfile.lines(self.metrics, "metrics file")]

    def read_summary(self) -> Summary | None:
        return cast(Summary, json.loads(textfile.read(self.summary, "summary"))) if self.summary.exists() else None

    def read_divergence(self) -> str | None:
        return (
            json.loads(textfile.read(self.diverged, "divergence record"))["error"] if self.diverged.exists() else None
        )

    def chosen_checkpoint(self) -> Path:
        """The checkpoint that stands for the run: best on validation, else the last epoch's.
        Raises FmnistError when there is neither."""
        for path in (self.best, self.last):
            if path.exists():
                return path
        raise FmnistError(f"{self.path}: no checkpoints/best.pt or checkpoints/last.pt in this directory")

    # ------------------------------------------------------------ writing

    def record_epoch(self, state: dict[str, Any], history: list[EpochRow], *, best: dict[str, Any] | None) -> None:
        """After an epoch: last.pt (and best.pt, `best`, when validation improved), then metrics.jsonl; in
        that order, so that every epoch metrics.jsonl lists has a checkpoint to resume from."""
        checkpoint.save(self.last, state)
        if best is not None:
            checkpoint.save(self.best, best)
        atomic_write(self.metrics, "".join(json.dumps(row) + "\n" for row in history))

    def write_parent(self, checkpoint_file: Path, validation_trained_on: int = 0) -> None:
        """Name the checkpoint a fine-tuned run started from: its path, the SHA-256 of its bytes and, when any, how
        many of the run's validation images it trained on."""
        facts = Parent(path=str(checkpoint_file.resolve()), sha256=checkpoint.sha256(checkpoint_file))
        if validation_trained_on:
            facts["validation_trained_on"] = validation_trained_on
        atomic_write(self.parent, json.dumps(facts, indent=2) + "\n")

    def read_parent(self) -> Parent | None:
        return cast(Parent, json.loads(self.parent.read_text())) if self.parent.exists() else None

    def write_summary(self, summary: Summary) -> None:
        atomic_write(self.summary, json.dumps(summary, indent=2) + "\n")

    def write_divergence(self, error: str) -> None:
        atomic_write(self.diverged, json.dumps({"error": error}) + "\n")

    def drop_checkpoints(self, *, keep_best: bool) -> None:
        """Free the disk a finished or abandoned study trial holds (best.pt stays when asked: eval takes it)."""
        if keep_best:
            self.last.unlink(missing_ok=True)
        else:
            shutil.rmtree(self.last.parent, ignore_errors=True)

    def tensorboard_writer(self, first_epoch: int):
        from torch.utils.tensorboard import SummaryWriter  # slow import, only when training

        # purge_step drops events a killed run logged after its last checkpoint.
        return SummaryWriter(self.tensorboard, purge_step=first_epoch)


def new_run_path(base: str | Path = "runs") -> Path:
    """A directory for a new run: BASE/<date>-<time>, with -2, -3, ... when one started in the same second."""
    stamp = Path(base) / time.strftime("%Y%m%d-%H%M%S")
    path, n = stamp, 1
    while path.exists():
        n += 1
        path = stamp.with_name(f"{stamp.name}-{n}")
    return path
