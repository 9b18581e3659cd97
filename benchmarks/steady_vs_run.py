"""Does `fmnist bench` predict a real run? The bench's steady-state training figure at the run's
batch size against the median epoch speed of a real `fmnist train` with the same config, both
as a user runs them, one after the other (fresh-state figure beside them).

    python benchmarks/steady_vs_run.py [--preset NAME] [--threads N] [fmnist train flags...]
"""

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path


def fmnist(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "fmnist", *args], check=True, stdout=subprocess.DEVNULL)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset")
    parser.add_argument("--threads", type=int, help="torch threads of the bench (the run takes torch's default)")
    args, train_flags = parser.parse_known_args()
    preset = ["--preset", args.preset] if args.preset else []
    with tempfile.TemporaryDirectory() as tmp:
        run, bench_json = Path(tmp) / "run", Path(tmp) / "bench.json"
        fmnist("train", *preset, *train_flags, "--no-progress", "--out", str(run))
        history = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        summary = json.loads((run / "summary.json").read_text())
        batch = summary["config"]["batch_size"]
        amp = summary["amp"]  # what ran: "auto" resolved on this machine
        threads = ["--threads", str(args.threads)] if args.threads else []
        fmnist("bench", "--quick", "--from", str(run), *threads, "--json", str(bench_json))
        result = json.loads(bench_json.read_text())
    kind = "training_bf16_autocast" if amp == "bf16" else "training"

    def at_batch(rows: list[dict]) -> float:
        found = [r["images_per_second"] for r in rows if r["batch_size"] == batch]
        return found[0] if found else float("nan")

    epochs = [r["images_per_second"] for r in history]
    run_median = statistics.median(epochs)
    steady, fresh = at_batch(result[f"{kind}_steady"]), at_batch(result[kind])
    print(
        f"{summary['config']['model']} batch {batch} amp {amp} | {summary['hardware']['cpu']} | "
        f"torch {summary['torch_version']}"
    )
    print(
        f"real run: {len(epochs)} epochs, median {run_median:,.0f} img/s "
        f"(epoch 1 {epochs[0]:,.0f}, later {min(epochs[1:] or epochs):,.0f}-{max(epochs[1:] or epochs):,.0f})"
    )
    print(
        f"bench: steady state {steady:,.0f} img/s, fresh state {fresh:,.0f} img/s "
        f"(steady from {result['steady_state']['source']})"
    )
    print(f"bench steady / run median: {steady / run_median:.3f}")


if __name__ == "__main__":
    main()
