"""`python tests/synthetic_cli.py ARGS`: the fmnist CLI in a child process, with data.FILES
pinned to the synthetic dataset's digests from $FMNIST_TEST_FILES (JSON). Tests only.

$FMNIST_TEST_STALL="RUN_DIR EPOCH": once that run has recorded that epoch (checkpoint and metrics.jsonl
written), the process stops making progress, so that a test kills it in the middle of the run at a known
point instead of racing a fast training.

$FMNIST_TEST_NO_RUN_PLOTS=1: fit() draws no run plots (curves.png and the test set's plots, 1.7 s of
matplotlib a run), for the tests of processes, schedulers and resumes that check none of them."""

import json
import os
import sys
import time
from pathlib import Path

from fmnist import data
from fmnist.cli import main
from fmnist.run_dir import RunDir

data.FILES = {kind: tuple(v) for kind, v in json.loads(os.environ["FMNIST_TEST_FILES"]).items()}

if os.environ.get("FMNIST_TEST_NO_RUN_PLOTS"):
    from fmnist import plots

    plots.write_run_plots = lambda *args: None

if stall := os.environ.get("FMNIST_TEST_STALL"):
    stall_dir, stall_epoch = stall.rsplit(" ", 1)
    record = RunDir.record_epoch

    def record_then_stall(self, state, history, *, best):
        record(self, state, history, best=best)
        if self.path.resolve() == Path(stall_dir).resolve() and len(history) == int(stall_epoch):
            time.sleep(3600)  # until the test kills this process

    RunDir.record_epoch = record_then_stall

if __name__ == "__main__":  # spawned workers (tune --workers) import this module again
    sys.exit(main())
