"""TensorBoard's HParams view of a study: one entry per run (compare) or trial (tune), with the options it
tried and the accuracies it reached (torch.utils.tensorboard's SummaryWriter.add_hparams, which writes the
hparams plugin's experiment summary and each entry's start and end summaries)."""

from __future__ import annotations

import fcntl
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

DIRECTORY = "hparams"  # in the study's directory: tensorboard --logdir OUT/hparams


def write(directory: str | Path, entries: Iterable[tuple[str, dict[str, Any], dict[str, float]]]) -> None:
    """Write `entries`, (name, options, metrics) each, as the HParams view of `directory`, replacing what an
    earlier report wrote there (a study rewrites its view whole, so that no entry shows twice). Options that
    are not numbers, strings or booleans (lists) are shown as text; metrics are named hparam/<name>.

    Processes that write one view at once (the tasks of a sharded compare, a tune's workers, each reporting as it
    ends) take turns under an exclusive flock(2) on `.NAME.lock` beside it: the last one's view stands, whole."""
    from torch.utils.tensorboard import SummaryWriter  # slow import, only when a report is written

    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    with open(directory.with_name(f".{directory.name}.lock"), "ab") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file is closed, or its process dies
        shutil.rmtree(directory, ignore_errors=True)
        with SummaryWriter(directory) as writer:
            for name, options, metrics in entries:
                shown = {k: v if isinstance(v, (bool, int, float, str)) else shown_text(v) for k, v in options.items()}
                writer.add_hparams(shown, {f"hparam/{k}": v for k, v in metrics.items()}, run_name=name)


def shown_text(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value)) or "none"
    return str(value)
