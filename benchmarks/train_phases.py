"""Where the wall time of `python -m fmnist train` goes: each phase of the real command, against the sum
of its epochs' `epoch_seconds` (what metrics.jsonl reports as training).

    python benchmarks/train_phases.py [--plain 1] [-- TRAIN FLAGS...]

(benchmarks/waits.py prints these rows beside the other waits.)

Runs the command in two ways, one after the other, each in a fresh process and a fresh run
directory under a temporary folder:
- instrumented: the same command with fmnist's functions wrapped by timers (exclusive seconds: a phase's
  time excludes the phases it calls), printing one row per phase with its seconds, its share of the
  process wall and its seconds per epoch;
- plain (`--plain N` times, default 1): the unmodified command, whose process wall against the sum of its
  epoch_seconds is the figure that counts (the timers add a little).
Flags after `--` go to `fmnist train` (default: none, the default run). Run on an idle machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

LAUNCHED = "FMNIST_PHASES_LAUNCHED"  # time.time() when the parent started the instrumented child


class Phases:
    """Exclusive seconds per label: a timed call's seconds less those of the timed calls inside it."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self.stack: list[list[Any]] = []  # [label, start, seconds of timed calls inside]

    def wrap(self, owner: Any, name: str, label: str | Callable[[], str]) -> None:
        original = getattr(owner, name)

        def timed(*args: Any, **kwargs: Any) -> Any:
            frame = [label() if callable(label) else label, time.perf_counter(), 0.0]
            self.stack.append(frame)
            try:
                return original(*args, **kwargs)
            finally:
                self.stack.pop()
                elapsed = time.perf_counter() - frame[1]
                self.seconds[frame[0]] += elapsed - frame[2]
                self.calls[frame[0]] += 1
                if self.stack:
                    self.stack[-1][2] += elapsed

        setattr(owner, name, timed)

    def inside(self, label: str) -> bool:
        return any(frame[0] == label for frame in self.stack)


def instrument(phases: Phases) -> None:
    """Wrap the functions `fmnist train` runs; imported here, so their import counts as start-up."""
    from fmnist import checkpoint, plots, trust
    from fmnist import training as train_lib
    from fmnist.cli import train as cli_train
    from fmnist.run_dir import RunDir

    def evaluation() -> str:
        if phases.inside("finish: other"):
            return "finish: test evaluation"
        return "epoch: evaluation (validation; the test set too with --test-curve)"

    def loading() -> str:
        return "finish: trust fit" if phases.inside("finish: trust fit") else "finish: load chosen weights"

    phases.wrap(cli_train, "cmd_train", "command: config, banner, model count")
    phases.wrap(cli_train, "load_data", "data load")
    phases.wrap(train_lib, "fit", "fit: loop (order, rng, stop checks, console)")
    phases.wrap(train_lib, "setup", "setup (threads, split, model)")
    phases.wrap(train_lib, "start_or_resume", "setup: run directory")
    phases.wrap(train_lib, "train_one_epoch", "epoch: training steps")
    phases.wrap(train_lib, "epoch_row", "epoch: row bookkeeping")
    phases.wrap(train_lib, "evaluate", evaluation)
    phases.wrap(RunDir, "record_epoch", "epoch: checkpoints + metrics.jsonl")
    phases.wrap(train_lib, "finish", "finish: other")
    phases.wrap(checkpoint, "load", loading)
    phases.wrap(train_lib, "summarize", "finish: summarize")
    phases.wrap(plots, "write_run_plots", "finish: plots (matplotlib's import counts in imports)")
    phases.wrap(trust, "fit_and_store", "finish: trust fit")
    phases.wrap(RunDir, "write_summary", "finish: summary.json")
    tensorboard_writer = RunDir.tensorboard_writer

    def timed_writer(self: RunDir, first_epoch: int) -> Any:
        writer = tensorboard_writer(self, first_epoch)
        for method in ("add_scalar", "flush", "close"):
            phases.wrap(writer, method, "TensorBoard: scalars, flush, close")
        return writer

    RunDir.tensorboard_writer = timed_writer  # type: ignore[method-assign]
    phases.wrap(RunDir, "tensorboard_writer", "TensorBoard: import + writer")


def child(argv: list[str]) -> None:
    """The instrumented `fmnist train`: phases to stdout as one JSON line prefixed by PHASES."""
    started = time.time()
    t0 = time.perf_counter()
    phases = Phases()
    instrument(phases)
    imported = time.perf_counter()
    import runpy

    sys.argv = ["fmnist", *argv]
    code = 0
    try:
        runpy.run_module("fmnist", run_name="__main__", alter_sys=True)
    except SystemExit as e:
        code = int(e.code or 0)
    end = time.perf_counter()
    timed = sum(phases.seconds.values())
    report = {
        "interpreter start": started - float(os.environ[LAUNCHED]),
        "imports (fmnist, torch, the command's modules)": imported - t0,
        **phases.seconds,
        "unattributed (argparse, summary line, exit)": end - imported - timed,
    }
    print("PHASES " + json.dumps({"seconds": report, "calls": phases.calls}), flush=True)
    sys.exit(code)


def epoch_seconds(run: Path) -> list[float]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line]
    return [row["epoch_seconds"] for row in rows]


def run_command(cmd: list[str], run: Path, env: dict[str, str]) -> tuple[float, str]:
    t0 = time.perf_counter()
    env = {**env, LAUNCHED: repr(time.time())}
    done = subprocess.run([*cmd, "--out", str(run), "--no-progress"], env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if done.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return wall, done.stdout


def report(flags: list[str], plain: int = 1) -> None:
    """Print the instrumented run's phases, then `plain` uninstrumented runs' wall against their epochs."""
    python, env = sys.executable, dict(os.environ)
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "instrumented"
        wall, out = run_command([python, __file__, "--child", "train", *flags], run, env)
        phases = json.loads(next(line for line in out.splitlines() if line.startswith("PHASES "))[7:])
        epochs = epoch_seconds(run)
        print(f"fmnist train {' '.join(flags)} (instrumented): {len(epochs)} epochs")
        print(f"{'phase':<50} {'calls':>5} {'seconds':>8} {'s/epoch':>8} {'share':>6}")
        for label, seconds in sorted(phases["seconds"].items(), key=lambda kv: -kv[1]):
            calls = phases["calls"].get(label, 1)
            print(f"{label:<50} {calls:>5} {seconds:8.2f} {seconds / len(epochs):8.3f} {seconds / wall:6.1%}")
        print(f"{'process wall':<50} {'':>5} {wall:8.2f}")
        print(f"{'sum of epoch_seconds':<50} {'':>5} {sum(epochs):8.2f}  ratio {wall / sum(epochs):.2f}")
        print(f"{'overhead (wall - epoch_seconds)':<50} {'':>5} {wall - sum(epochs):8.2f}")
        for i in range(plain):
            run = Path(tmp) / f"plain-{i}"
            wall, _ = run_command([python, "-m", "fmnist", "train", *flags], run, env)
            epochs = epoch_seconds(run)
            print(
                f"python -m fmnist train {' '.join(flags)}: process wall {wall:.2f} s, "
                f"{len(epochs)} epochs {sum(epochs):.2f} s, overhead {wall - sum(epochs):.2f} s, "
                f"ratio {wall / sum(epochs):.2f}",
                flush=True,
            )


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2:])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plain", type=int, default=1, help="uninstrumented runs of the command (default 1)")
    parser.add_argument("flags", nargs="*", help="flags for fmnist train, after --")
    args = parser.parse_args()
    report(args.flags, args.plain)


if __name__ == "__main__":
    main()
