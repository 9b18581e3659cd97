"""Training speed on a shared machine: the default config's training steps, timed on an idle
machine and beside one competing busy process (`yes > /dev/null`, a process that keeps one core
busy, as a browser tab, an IDE's indexer or another job does), for several thread settings.

    python benchmarks/shared_machine.py [--steps 300] [--rounds 3] [--options 2,1,auto,2-passive,auto-passive]

Each measurement is a fresh process (an OpenMP wait policy is read once, when the runtime
starts), which loads the data, builds the default config's model and optimizer, trains
`--steps // 5` warm-up steps and then times `--steps` steps of training.train_one_epoch (the step
fit() runs). Options and conditions are interleaved round by round, so a machine that is busy
with other work slows every cell alike; the table gives each cell's median seconds per 100
steps, its busy/idle ratio, and the thread count the process ran with.

Options: a number N (torch threads N), auto (fmnist's default: cpu.apply_threads("auto") picks
the cores other processes leave free, measured from /proc/stat when the process starts), and
any of them with "-passive" (OMP_WAIT_POLICY=passive: waiting threads sleep instead of spinning).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time


def worker(option: str, steps: int) -> None:
    """Time `steps` training steps of the default config in this process; print one JSON line."""
    import torch

    from fmnist import cpu, data, training
    from fmnist.config import Config

    chosen = cpu.apply_threads(option.removesuffix("-passive"))
    cpu.flush_denormals()
    cfg = Config()
    d = training.split_data(cfg, data.load(), torch.device("cpu"))
    st = training.build_step_state(cfg, torch.device("cpu"), len(d.train_x) // cfg.batch_size)
    order = torch.randperm(len(d.train_x), generator=st.data_generator)
    warm = steps // 5
    args = (st.model, st.optimizer, st.scheduler, d.train_x, d.train_y)
    training.train_one_epoch(*args, order[: warm * cfg.batch_size], cfg, st.aug_generator)
    begin = time.perf_counter()
    training.train_one_epoch(
        *args, order[warm * cfg.batch_size : (warm + steps) * cfg.batch_size], cfg, st.aug_generator
    )
    seconds = time.perf_counter() - begin
    print(json.dumps({"seconds": seconds, "threads": torch.get_num_threads(), "chosen": chosen}))


def measure(option: str, steps: int, busy: bool) -> dict:
    env = {**os.environ}
    env.pop("OMP_NUM_THREADS", None)
    if option.endswith("-passive"):
        env["OMP_WAIT_POLICY"] = "passive"
    competitor = subprocess.Popen(["yes"], stdout=subprocess.DEVNULL) if busy else None
    try:
        if competitor:
            time.sleep(0.5)  # it is running before the worker looks at the load
        out = subprocess.run(
            [sys.executable, __file__, "--worker", option, "--steps", str(steps)],
            env=env,
            capture_output=True,
            text=True,
            check=True,
            timeout=600,
        ).stdout
    finally:
        if competitor:
            competitor.kill()
            competitor.wait()
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300, help="timed training steps per measurement (batch 64)")
    parser.add_argument("--rounds", type=int, default=3, help="measurements per cell, interleaved")
    parser.add_argument("--options", default="2,1,auto,2-passive,auto-passive", help="thread settings, comma-separated")
    parser.add_argument("--json", metavar="FILE", help="also write every measurement as JSON")
    parser.add_argument("--worker", metavar="OPTION", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.steps)
        return
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so that `finally` stops the competitor
    options = args.options.split(",")
    cells: dict[tuple[str, bool], list[dict]] = {(o, b): [] for o in options for b in (False, True)}
    load_before = os.getloadavg()[0]
    for r in range(args.rounds):
        for option in options:
            for busy in (False, True):
                result = measure(option, args.steps, busy)
                cells[option, busy].append(result)
                print(
                    f"round {r + 1}: {option:>10} {'busy' if busy else 'idle'}: {result['seconds']:.2f} s "
                    f"({result['chosen']})",
                    file=sys.stderr,
                )
    per100 = {key: 100 * statistics.median(m["seconds"] for m in runs) / args.steps for key, runs in cells.items()}
    base = per100[options[0], False]
    print(
        f"\n{args.steps} steps of the default config (mlp 512,512, batch 64, Adam), median of {args.rounds}; "
        f"1-minute load average {load_before:.2f} before the runs, {os.getloadavg()[0]:.2f} after; "
        f"{os.cpu_count()} CPUs\n"
    )
    print(
        f"| threads | idle s/100 steps | threads used | beside `yes` s/100 steps | threads used | busy / idle "
        f"| busy / ({options[0]} idle) |"
    )
    print("|---|---|---|---|---|---|---|")
    for option in options:
        idle, busy = per100[option, False], per100[option, True]
        used = [sorted({m["threads"] for m in cells[option, b]}) for b in (False, True)]
        print(
            f"| {option} | {idle:.3f} | {','.join(map(str, used[0]))} | {busy:.3f} | {','.join(map(str, used[1]))} "
            f"| {busy / idle:.2f} | {busy / base:.2f} |"
        )
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(
                {
                    "steps": args.steps,
                    "cells": [{"option": o, "busy": b, "runs": runs} for (o, b), runs in cells.items()],
                },
                f,
                indent=2,
            )


if __name__ == "__main__":
    main()
