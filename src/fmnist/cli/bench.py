"""fmnist bench: latency, throughput and memory of a model; the textbook pipeline against fmnist's."""

from __future__ import annotations

import argparse
import sys

from fmnist import config as config_lib
from fmnist.cli.common import Parser, Subcommands, load_data, requested_values
from fmnist.errors import FmnistError


def add_parsers(sub: Subcommands, shared: dict[str, Parser]) -> None:
    """bench."""
    device = shared["device"]
    data_dir = shared["data_dir"]
    recipe = [shared["preset"], shared["config"]]
    p = sub.add_parser(
        "bench",
        help="latency, throughput and memory of a model; the textbook pipeline vs fmnist",
        parents=[device, data_dir, *recipe],
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="shorter timings and a 10,000-image pipeline epoch (how long each takes per machine: docs/PERFORMANCE.md)",
    )
    p.add_argument("--json", metavar="FILE", help="write the results as JSON")
    p.add_argument("--plot", metavar="FILE", help="write throughput and latency against batch size as PNG")
    p.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's choice)")
    p.add_argument("--model", choices=config_lib.MODELS, help="architecture (default: the reference mlp)")
    p.add_argument("--hidden", help="layer widths, comma-separated (default: the reference 512,512)")
    p.add_argument(
        "--from",
        dest="from_run",
        metavar="RUN",
        help="steady-state rows from this run's model and optimizer state (run directory or checkpoint) "
        "and its config (default: train 2 epochs here first)",
    )
    p.add_argument("--verbose", action="store_true", help="print each measurement as it starts, on stderr")
    p.set_defaults(func=cmd_bench)


def cmd_bench(args: argparse.Namespace) -> int:
    from fmnist.bench import report as bench_report
    from fmnist.bench import speed

    if args.threads is not None and args.threads < 1:
        raise FmnistError(f"--threads must be >= 1, got {args.threads}")
    overrides = {k: v for k, v in (("model", args.model), ("hidden", args.hidden)) if v is not None}
    trained = None
    if args.from_run:
        if args.preset or args.config or overrides:
            raise FmnistError(
                "--from measures the run's own model and optimizer; drop --preset, --config, --model and --hidden"
            )
        cfg, trained = speed.from_checkpoint(args.from_run)
    else:
        cfg = config_lib.from_dict(requested_values(args, overrides))
    dataset = load_data(args.data_dir or cfg.data_dir)
    log = (lambda msg: print(msg, file=sys.stderr)) if args.verbose else (lambda msg: None)
    plan = speed.QUICK if args.quick else speed.Plan()
    result = speed.run(cfg, dataset, args.device, plan, args.threads, log, trained)
    print(bench_report.format_table(result))
    if args.json:
        bench_report.write_json(result, args.json)
        print(f"wrote {args.json}")
    if args.plot:
        bench_report.plot(result, args.plot)
        print(f"wrote {args.plot}")
    return 0
