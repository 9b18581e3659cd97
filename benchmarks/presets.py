"""README's presets table: process wall time and test accuracy, mean ± sample std over seeds,
of `fmnist train` with each preset (and with no preset: the reference), next to the PyTorch
tutorial pipeline (benchmarks/tutorial.py). The published table trains on all 60,000 images, as the
tutorial does: `--flags="--val-size 0"`; without it each run holds out 5,000 (the default). Every
run is its own process, timed from start to exit, one after the other; run it on an otherwise idle
machine.

    python benchmarks/presets.py [--presets mlp-fast,cnn-fast,reference,...] [--seeds 0,1,2]
                                 [--tutorial-seeds 0] [--out runs/presets] [--flags="--val-size 0"]
"""

import argparse
import json
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

from fmnist import presets


def timed(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def spread(values: list[float], unit: str, scale: float = 1.0) -> str:
    mean = statistics.mean(values) * scale
    std = statistics.stdev(values) * scale if len(values) > 1 else float("nan")
    return f"{mean:.2f}{unit} ± {std:.2f}" if unit == " %" else f"{mean:.1f} ± {std:.1f}{unit}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", default=",".join(["reference", *presets.names()]))
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--tutorial-seeds", default="0", help="seeds of the tutorial pipeline ('' to skip it)")
    parser.add_argument("--out", default="runs/presets")
    parser.add_argument("--flags", default="", help='more flags of every `fmnist train`, e.g. "--val-size 0"')
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    rows = []
    for name in args.presets.split(","):
        flags = ([] if name == "reference" else ["--preset", name]) + shlex.split(args.flags)
        walls, accuracies = [], []
        for seed in seeds:
            run = Path(args.out) / f"{name}-s{seed}"
            walls.append(
                timed(
                    [
                        sys.executable,
                        "-m",
                        "fmnist",
                        "train",
                        *flags,
                        "--seed",
                        str(seed),
                        "--no-progress",
                        "--out",
                        str(run),
                    ]
                )
            )
            summary = json.loads((run / "summary.json").read_text())
            accuracies.append(summary["test_accuracy"])
            print(
                f"{name} seed {seed}: {walls[-1]:.1f} s, test {accuracies[-1]:.2%}, amp {summary.get('amp')}",
                file=sys.stderr,
                flush=True,
            )
        command = "fmnist train " + " ".join(flags + ["--seed", "S"])
        rows.append((f"`{command}`", walls, accuracies, summary["hardware"]["cpu"]))
    if args.tutorial_seeds:
        walls, accuracies = [], []
        script = Path(__file__).with_name("tutorial.py")
        for seed in (int(s) for s in args.tutorial_seeds.split(",")):
            start = time.perf_counter()
            out = subprocess.run(
                [sys.executable, str(script), "--seed", str(seed)], check=True, capture_output=True, text=True
            ).stdout
            walls.append(time.perf_counter() - start)
            accuracies.append(float(out.strip().splitlines()[-1].split()[-1]))
            print(f"tutorial seed {seed}: {walls[-1]:.1f} s, test {accuracies[-1]:.2%}", file=sys.stderr, flush=True)
        rows.append(("`python benchmarks/tutorial.py --seed S`", walls, accuracies, ""))
    print(f"seeds {args.seeds} (tutorial: {args.tutorial_seeds or 'skipped'}); {rows[0][3]}\n")
    print("| command | test accuracy | process wall time | runs |")
    print("|---|---|---|---|")
    for command, walls, accuracies, _ in rows:
        print(f"| {command} | {spread(accuracies, ' %', 100)} | {spread(walls, ' s')} | {len(walls)} |")


if __name__ == "__main__":
    main()
