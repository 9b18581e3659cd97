"""What flip TTA buys and costs for a trained run: accuracy and loss on the run's own validation
split (never the test set), and the seconds to predict it, without and with `--tta flip`,
interleaved over rounds.

    python benchmarks/tta_cost.py RUN_DIR [--rounds 5] [--threads N]

The run must have a validation split (the default; not --val-size 0); the predictor is the one
`fmnist eval` and `fmnist serve` use (inference.load_predictor), so the chosen weights (raw or
EMA) are what is measured.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from fmnist import checkpoint, data, training
from fmnist.evaluate import evaluate_logits
from fmnist.inference import load_predictor
from fmnist.run_dir import model_path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", help="run directory (its best, else last, checkpoint)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    _, cfg, _ = checkpoint.load_model(model_path(args.run))
    if not cfg.val_size:
        raise SystemExit(f"{args.run}: trained with --val-size 0; TTA is judged on validation only")
    split = training.split_data(cfg, data.load(), torch.device("cpu"))
    modes = ("none", "flip")
    seconds: dict[str, list[float]] = {mode: [] for mode in modes}
    results = {}
    for _ in range(args.rounds):
        for mode in modes:
            predictor = load_predictor(args.run, "cpu", mode)
            begin = time.perf_counter()
            results[mode] = evaluate_logits(predictor.logits, split.val_x, split.val_y, cfg.eval_batch_size)
            seconds[mode].append(time.perf_counter() - begin)
    print(
        f"{args.run}: {len(split.val_y):,} validation images, median of {args.rounds} rounds, "
        f"{torch.get_num_threads()} threads"
    )
    print("| tta | val acc % | val loss | seconds | x plain |")
    print("|---|---|---|---|---|")
    plain = statistics.median(seconds["none"])
    for mode in modes:
        s = statistics.median(seconds[mode])
        print(f"| {mode} | {100 * results[mode].accuracy:.2f} | {results[mode].loss:.4f} | {s:.3f} | {s / plain:.2f} |")


if __name__ == "__main__":
    main()
