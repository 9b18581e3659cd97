"""How steady this machine's compute is: a fixed fp32 matmul timed in back-to-back windows.

    python benchmarks/steadiness.py [--seconds 40] [--window 2] [--threads N] [--size 512]

Prints GFLOP/s per window and their min / median / max. On a shared virtual machine the
spread says how large a timing difference between two separate runs must be before it means
anything; differences smaller than it need an interleaved A/B in one process
(benchmarks/step_ab.py, benchmarks/conv_layout.py).
"""

import argparse
import statistics
import time

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=40.0)
    parser.add_argument("--window", type=float, default=2.0)
    parser.add_argument("--threads", type=int)
    parser.add_argument("--size", type=int, default=512)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    a, b = torch.rand(args.size, args.size), torch.rand(args.size, args.size)
    flops = 2 * args.size**3
    rates: list[float] = []
    begin = time.perf_counter()
    while time.perf_counter() - begin < args.seconds:
        start, n = time.perf_counter(), 0
        while time.perf_counter() - start < args.window:
            for _ in range(10):
                torch.mm(a, b)
            n += 10
        rates.append(n * flops / (time.perf_counter() - start) / 1e9)
    print(
        f"{args.size}x{args.size} fp32 matmul, {torch.get_num_threads()} threads, {len(rates)} windows of "
        f"{args.window:g} s: GFLOP/s " + " ".join(f"{r:.0f}" for r in rates)
    )
    low, mid, high = min(rates), statistics.median(rates), max(rates)
    print(f"min {low:.0f}  median {mid:.0f}  max {high:.0f}  (max/min x{high / low:.2f})")


if __name__ == "__main__":
    main()
