"""fmnist compare and tune: many training runs, a grid over seeds or an Optuna study."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fmnist import config as config_lib
from fmnist import signals
from fmnist.cli.common import Parser, Subcommands, load_data, requested_values, tracker
from fmnist.errors import FmnistError

AUTO = "auto"  # --resume auto: create the study, or continue it


def add_parsers(sub: Subcommands, shared: dict[str, Parser]) -> None:
    """compare and tune."""
    recipe = [shared["preset"], shared["config"]]
    p = sub.add_parser(
        "compare",
        help="a grid of training runs over seeds: tables and plots of validation and test accuracy",
        parents=[shared["preset"], shared["mlflow"]],
    )
    p.add_argument(
        "experiment",
        nargs="?",
        help="TOML experiment file: preset, seeds, threshold, [base], [grid] (flags override it)",
    )
    p.add_argument(
        "--out", required=True, help="experiment directory; rerun with the same one to train only missing runs"
    )
    p.add_argument(
        "--grid",
        action="append",
        metavar="KEY=V1,V2",
        help="an axis of the grid (repeatable); list options separate values by /: hidden=256/512,512",
    )
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="a config value of every run (repeatable)")
    p.add_argument("--seeds", metavar="S1,S2", help="seeds of every grid point (default: 0,1,2)")
    p.add_argument("--threshold", type=float, help="validation accuracy to time (default: 0.88)")
    add_worker_flags(p, "runs trained at once, in separate processes")
    p.add_argument(
        "--shard",
        metavar="I/N",
        help="train only task I's share (0 <= I < N) of the runs: N tasks of a job array given the same command "
        "and --out split the grid; the last to finish writes the report",
    )
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser(
        "tune", help="Optuna search of training options for validation accuracy", parents=[*recipe, shared["mlflow"]]
    )
    p.add_argument("--out", help="new study directory")
    p.add_argument(
        "--resume",
        metavar="DIR|auto",
        help="run more trials of the study in DIR, with its recorded settings; auto (with --out DIR and the "
        "study's flags): create the study, or continue it when DIR holds this one (the one command line of a "
        "requeued job)",
    )
    p.add_argument(
        "--trials",
        type=int,
        default=20,
        help="trials to finish now (completed or pruned), shared by the workers; one lost with a dead "
        "worker is replaced; with --resume auto: trials the study holds in all, so that a restarted job "
        "finishes its budget instead of adding to it (default: 20)",
    )
    p.add_argument("--timeout", type=float, help="stop starting trials after this many seconds")
    add_worker_flags(p, "local worker processes sharing the study")
    p.add_argument("--epochs", type=int, help="epochs per trial (default: the base config's)")
    p.add_argument("--val-size", type=int, help="validation images held out (default: 5000)")
    p.add_argument(
        "--pruner",
        choices=("median", "hyperband", "none"),
        help="early stopping of poor trials per epoch (default: median)",
    )
    p.add_argument(
        "--storage",
        metavar="URL",
        help="Optuna RDB storage shared by many machines, e.g. postgresql://user@host/db "
        "(default: a journal file in the study directory)",
    )
    p.add_argument(
        "--heartbeat",
        type=int,
        metavar="SECONDS",
        help="with --storage: a running trial's heartbeat period; a trial silent for 3 periods is "
        "marked FAILED and its place in the budget freed (default: 60)",
    )
    p.add_argument(
        "--study-name",
        help="name in the storage; workers with the same name and storage share the study (default: the --out name)",
    )
    p.add_argument("--sampler-seed", type=int, help="seed of the TPE sampler (default: 0)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="a base config value (repeatable)")
    p.set_defaults(func=cmd_tune)


def add_worker_flags(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument(
        "--workers",
        type=int,
        help=f"{what}; with GPUs they are dealt over the visible ones, one GPU each "
        "(default: one per visible GPU, else 1)",
    )
    p.add_argument(
        "--workers-per-device",
        type=int,
        metavar="K",
        help="K workers on each visible GPU (CUDA_VISIBLE_DEVICES set per worker process)",
    )


def placement(args: argparse.Namespace, device: str):
    """Where the workers run (studies.workers.Placement): the flags, and the GPUs a study on `device` sees."""
    from fmnist.studies import workers

    return workers.place(args.workers, args.workers_per_device, workers.visible_gpus(device))


def parse_assignments(items: list[str] | None, flag: str) -> dict[str, str]:
    """["epochs=3", "val-size=5000"] -> {"epochs": "3", "val_size": "5000"}; values stay strings for config.coerce."""
    values = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise FmnistError(f"{flag} {item!r}: expected KEY=VALUE")
        values[key.strip().replace("-", "_")] = value.strip()
    return values


def parse_grid(items: list[str] | None) -> dict[str, list[str]]:
    """["optimizer=sgd,adam", "hidden=256/512,512"] -> {"optimizer": ["sgd", "adam"], "hidden": ["256", "512,512"]}:
    values of list options (hidden, augment, betas) are separated by "/", all others by ","."""
    grid = {}
    for key, value in parse_assignments(items, "--grid").items():
        listed = key in config_lib.field_names() and isinstance(config_lib.describe(key)[2], tuple)
        grid[key] = value.split("/" if listed else ",")
    return grid


def parse_ints(text: str | None, flag: str) -> list[int] | None:
    if text is None:
        return None
    try:
        return [int(v) for v in text.split(",")]
    except ValueError:
        raise FmnistError(f"{flag}: expected comma-separated integers, got {text!r}") from None


def cmd_compare(args: argparse.Namespace) -> int:
    from fmnist.studies import compare

    experiment = compare.build_experiment(
        compare.read_experiment(args.experiment) if args.experiment else {},
        preset=args.preset,
        base=parse_assignments(args.set, "--set"),
        grid=parse_grid(args.grid),
        seeds=parse_ints(args.seeds, "--seeds"),
        threshold=args.threshold,
    )
    shard = compare.parse_shard(args.shard) if args.shard else None
    runs = compare.grid_runs(experiment, args.out)  # config errors before the data is loaded
    where = placement(args, runs[0].config.device)
    tracking = tracker(args)
    dataset = load_data(runs[0].config.data_dir)
    try:
        results = compare.run_grid(experiment, args.out, dataset, placement=where, shard=shard)
    except (KeyboardInterrupt, signals.Stopped):
        print(
            f"interrupted; rerun the same command "
            f"(or: fmnist compare {Path(args.out) / 'experiment.toml'} --out {args.out})"
            " to train only the missing runs",
            file=sys.stderr,
        )
        raise
    if left := compare.unfinished(results):
        # Every task checks after its own runs: the last one to finish sees none left and writes the report.
        print(f"{left} run(s) of other tasks not finished yet; the task that finishes last writes the report")
        return 0
    print(compare.write_report(args.out, experiment, results, workers=where.workers))
    print(f"wrote results.md, results.csv, runs.csv, accuracy.png and curves*.png in {args.out}")
    if tracking is not None:
        from fmnist.tracking import log_compare

        log_compare(tracking, args.out)
    return 0


def new_study_settings(args: argparse.Namespace, study_dir: Path):
    """The settings of the study this command line asks for (tune.StudySettings)."""
    from fmnist.studies import tune

    base = requested_values(
        args,
        {
            **parse_assignments(args.set, "--set"),
            **({"epochs": args.epochs} if args.epochs is not None else {}),
            **({"val_size": args.val_size} if args.val_size is not None else {}),
        },
    )
    return tune.new_settings(
        base,
        name=args.study_name or study_dir.resolve().name,
        storage=args.storage,
        pruner=args.pruner,
        sampler_seed=args.sampler_seed,
        heartbeat=args.heartbeat,
    )


def cmd_tune(args: argparse.Namespace) -> int:
    import optuna

    from fmnist.studies import tune

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # tune prints one line per trial itself
    tune.check_budget(args.trials, args.timeout, 1)
    study_settings = {
        "--out": args.out,
        "--preset": args.preset,
        "--config": args.config,
        "--set": args.set,
        "--epochs": args.epochs,
        "--val-size": args.val_size,
        "--pruner": args.pruner,
        "--storage": args.storage,
        "--study-name": args.study_name,
        "--sampler-seed": args.sampler_seed,
        "--heartbeat": args.heartbeat,
    }
    if args.resume and args.resume != AUTO:
        given = [flag for flag, value in study_settings.items() if value is not None]
        if given:
            raise FmnistError(f"--resume continues a study with its recorded settings; drop {', '.join(given)}")
        study_dir = Path(args.resume)
        settings = tune.load_settings(study_dir)
    elif not args.out:
        raise FmnistError(f"tune needs --out DIR for a new study, --resume {AUTO} --out DIR, or --resume DIR")
    else:
        study_dir = Path(args.out)
        settings = new_study_settings(args, study_dir)
    where = placement(args, settings.base.get("device", "auto"))  # flag errors before a study is created
    tracking = tracker(args)
    if not (args.resume and args.resume != AUTO):
        if args.resume == AUTO and (study_dir / tune.STUDY_FILE).exists():
            tune.check_same_settings(study_dir, settings)
        else:
            tune.create_study(study_dir, settings)
    dataset = load_data(settings.base.get("data_dir"))
    print(
        f"study {settings.name} in {settings.storage or study_dir / tune.JOURNAL_FILE}: "
        f"{args.trials} {'trial(s) in all' if args.resume == AUTO else 'more trial(s)'}, {where.workers} worker(s)"
    )
    try:
        study = tune.optimize(
            study_dir,
            dataset,
            trials=args.trials,
            timeout=args.timeout,
            placement=where,
            in_all=args.resume == AUTO,
        )
    except (KeyboardInterrupt, signals.Stopped):
        print(f"interrupted; continue with: fmnist tune --resume {study_dir}", file=sys.stderr)
        raise
    tune.write_outputs(study, study_dir)
    if tracking is not None:
        from fmnist.tracking import log_tune

        log_tune(tracking, study_dir)
    return 0
