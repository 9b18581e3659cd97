"""fmnist train, lr-find and calibrate: fit a model, the learning-rate range test, refit a model's trust."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

from fmnist import __version__, signals
from fmnist import config as config_lib
from fmnist.cli.common import (
    Parser,
    Subcommands,
    add_config_flags,
    config_overrides,
    load_data,
    requested_values,
    tracker,
)
from fmnist.errors import FmnistError

if TYPE_CHECKING:
    from fmnist import distributed
    from fmnist.tracking import Tracker

AUTO = "auto"  # --resume auto: start the directory's run, or continue it


def add_parsers(sub: Subcommands, shared: dict[str, Parser]) -> None:
    """train and lr-find."""
    recipe = [shared["preset"], shared["config"]]
    p = sub.add_parser("train", help="train a model and write a run directory", parents=[*recipe, shared["mlflow"]])
    p.add_argument("--out", help="run directory (default: runs/<timestamp>)")
    p.add_argument(
        "--resume",
        metavar="RUN_DIR|auto",
        help="continue an interrupted run from its last checkpoint; auto (with --out DIR): start DIR, or continue "
        "it when it holds this run (the one command line for torchrun --max-restarts and requeued jobs)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument(
        "--profile",
        metavar="DIR",
        help="first profile a few training steps of this config (throwaway "
        "model, the run is unchanged): print the top operators, write a Perfetto/TensorBoard trace to DIR",
    )
    add_config_flags(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser(
        "lr-find",
        help="learning-rate range test of a config: loss against an exponentially "
        "growing lr, a plot and a suggested lr (no run is written)",
        parents=recipe,
    )
    p.add_argument("--start-lr", type=float, default=1e-7, help="first learning rate (default: 1e-7)")
    p.add_argument("--end-lr", type=float, default=10.0, help="last learning rate (default: 10)")
    p.add_argument(
        "--steps",
        type=int,
        default=100,
        help="training steps, one batch each; stops early once the loss diverges (default: 100)",
    )
    p.add_argument("--plot", metavar="FILE", help="write the loss curve with the suggestions as PNG")
    p.add_argument("--no-progress", action="store_true", help="no line per step on stderr")
    add_config_flags(p)
    p.set_defaults(func=cmd_lr_find)


def add_calibrate_parser(sub: Subcommands, shared: dict[str, Parser]) -> None:
    """calibrate."""
    data_dir = shared["data_dir"]
    p = sub.add_parser(
        "calibrate",
        help="fit the temperature and the non-garment detector of a trained model "
        "again (fmnist train does it when it ends, unless --val-size 0)",
        parents=[data_dir],
    )
    p.add_argument("checkpoint", help="a .pt checkpoint, or a run directory (its best, else last, checkpoint)")
    p.add_argument(
        "--gate",
        type=number,
        default=None,
        help="the detector's second smallest p-value counts under this (default 1/30; 0: the smallest p-value "
        "alone, as detectors fitted before it; 1: the two smallest multiplied)",
    )
    p.add_argument(
        "--cues",
        default=None,
        help="the detector's cues, comma-separated, the energy among them (default: fmnist.trust.CUES; "
        "the cues: docs/TRUST.md)",
    )
    p.set_defaults(func=cmd_calibrate)


def number(value: str) -> float:
    """A float or a fraction ("1/30"), for argparse (ValueError: argparse's one-line error)."""
    try:
        return float(Fraction(value)) if "/" in value else float(value)
    except ZeroDivisionError as e:
        raise ValueError(value) from e


def resolve_train_config(args: argparse.Namespace) -> tuple[config_lib.Config, Path, bool]:
    """(config, run directory, whether it continues a run). `--resume auto --out DIR` is the one command
    line for every start of a restartable job (torchrun --max-restarts, a requeued array task): a new run
    when DIR holds none, this run continued when it holds it, refused when DIR holds another config."""
    from fmnist.run_dir import RunDir, new_run_path
    from fmnist.training import inherit_split

    asked = requested_values(args, config_overrides(args))
    if args.resume == AUTO:
        if not args.out:
            raise FmnistError("--resume auto needs --out DIR: the run directory to start or to continue")
        run = RunDir(args.out)
        if not run.is_run():
            return inherit_split(config_lib.from_dict(asked)), run.path, False
        wanted = config_lib.to_dict(config_lib.from_dict(asked))  # defaults included: the whole command line
        return config_lib.for_resume(run.read_config(), wanted, run.path, "--resume auto --out"), run.path, True
    if not args.resume:
        return inherit_split(config_lib.from_dict(asked)), Path(args.out) if args.out else new_run_path(), False
    if args.out:
        raise FmnistError("--resume continues a run in its own directory; drop --out (or use --resume auto)")
    run = RunDir(args.resume)
    return config_lib.for_resume(run.read_config(), asked, run.path), run.path, True


def cmd_train(args: argparse.Namespace) -> int:
    from fmnist import distributed
    from fmnist.device import select_device
    from fmnist.run_dir import RunDir

    started = time.perf_counter()  # the summary's total_seconds count from here
    cfg, run_dir, resume = resolve_train_config(args)
    if not resume and RunDir(run_dir).is_run():  # before the data loads and anything is printed
        raise FmnistError(RunDir(run_dir).taken())
    tracking = tracker(args) if distributed.world().rank == 0 else None  # only rank 0 writes and logs
    dataset = load_data(cfg.data_dir)
    if args.profile:
        from fmnist.bench import profiler

        profiler.profile_training(cfg, dataset, args.profile)
    if distributed.world().rank == 0 and (hazard := distributed.restart_hazard(os.environ)):
        print(hazard, file=sys.stderr)
    with distributed.group(select_device(cfg.device)) as w:
        # Rank 0 decides: ranks may disagree on the timestamp, and on whether a run exists yet.
        where, resume = distributed.broadcast((str(run_dir), resume), w)
        return train_and_report(args, cfg, dataset, Path(where), resume, w, started, tracking)


def train_and_report(
    args: argparse.Namespace,
    cfg: config_lib.Config,
    dataset,
    run_dir: Path,
    resume: bool,
    w: distributed.World,
    started: float,
    tracking: Tracker | None = None,
) -> int:
    import torch

    from fmnist import models
    from fmnist.device import resolve_amp, select_device
    from fmnist.run_dir import RunDir
    from fmnist.training import fit

    say = print if w.is_main else (lambda *a, **k: None)
    params = models.parameter_count(models.build(cfg))
    say(
        f"fmnist {__version__} | torch {torch.__version__} | device {cfg.device} | {w.size} process(es) | "
        f"data {dataset.directory} ({dataset.origin})"
    )
    amp, why = resolve_amp(cfg.amp, select_device(cfg.device))
    say(
        f"model {cfg.model} hidden={','.join(map(str, cfg.hidden))} | {params:,} parameters | "
        f"amp {amp} ({why}) | run {run_dir}"
    )
    on_epoch = None
    if tracking is not None:
        mlflow_run, _ = tracking.open(run_dir, run_dir.name)
        tracking.log_params(mlflow_run, config_lib.to_dict(cfg))
        on_epoch = tracking.epoch_logger(mlflow_run, lambda msg: print(f"fmnist: warning: {msg}", file=sys.stderr))
        say(f"MLflow: run {mlflow_run} in {tracking.uri}")
    try:
        result = fit(
            cfg,
            run_dir,
            dataset,
            resume=resume,
            progress=not args.no_progress,
            on_epoch=on_epoch,
            fit_trust=True,
            started=started,
        )
    except (KeyboardInterrupt, signals.Stopped):
        if w.is_main and RunDir(run_dir).last.exists():
            print(f"interrupted; continue with: fmnist train --resume {run_dir}", file=sys.stderr)
        if tracking is not None:  # the MLflow run ends KILLED; a restart or fmnist log continues it
            with contextlib.suppress(FmnistError):
                tracking.log_run(run_dir)
        raise
    if not w.is_main:
        return 0
    if tracking is not None:
        tracking.log_run(run_dir)
    s = result.summary
    assert s is not None  # rank 0 gets the summary
    print(
        f"\ntest accuracy {s['test_accuracy']:.2%}  test loss {s['test_loss']:.4f}  "
        f"({s['chosen_by']}, epoch {s['chosen_epoch']}{', EMA weights' if s.get('weights') == 'ema' else ''})\n"
        + (f"stopped before the planned epochs: {s['stopped']}\n" if "stopped" in s else "")
        + f"training {s['wall_seconds']:.1f}s (what --max-time counts), whole run {s['total_seconds']:.1f}s  "
        f"train {s['train_images_per_second']:,.0f} img/s  "
        f"{s['train_ms_per_batch']:.3f} ms/batch (median over epochs)  "
        f"peak memory {s['peak_memory_bytes'] / 2**20:,.0f} MiB\n"
        f"artifacts in {run_dir}: summary.json metrics.jsonl config.toml checkpoints/ tensorboard/ *.png"
    )
    return 0


def cmd_lr_find(args: argparse.Namespace) -> int:
    from fmnist import cpu, plots
    from fmnist.lr_find import lr_find
    from fmnist.training import inherit_split

    cfg = inherit_split(config_lib.from_dict(requested_values(args, config_overrides(args))))
    dataset = load_data(cfg.data_dir)
    cpu.apply_threads(cfg.threads)
    say = (lambda msg: None) if args.no_progress else (lambda msg: print(msg, file=sys.stderr))
    found = lr_find(
        cfg,
        dataset,
        start_lr=args.start_lr,
        end_lr=args.end_lr,
        steps=args.steps,
        progress=lambda i, lr, loss: say(f"step {i:>4}  lr {lr:.2e}  loss {loss:.4f}"),
    )
    print(
        f"suggested lr {found.suggestion:.2e} (valley); steepest fall at {found.steepest:.2e}; "
        f"{len(found.lrs)} steps of batch {cfg.batch_size * cfg.accumulate} from {found.lrs[0]:.1e} to "
        f"{found.lrs[-1]:.1e} (config lr {cfg.lr:g})"
    )
    if args.plot:
        plots.plot_lr_find(found.lrs, found.losses, {"valley": found.suggestion, "steepest": found.steepest}, args.plot)
        print(f"wrote {args.plot}")
    return 0


def cmd_calibrate(args: argparse.Namespace) -> int:
    from fmnist import trust
    from fmnist.run_dir import model_path

    gate = trust.ood.GATE if args.gate is None else args.gate
    trust.check_gate(gate, "--gate")
    cues = trust.CUES if args.cues is None else tuple(c.strip() for c in args.cues.split(",") if c.strip())
    trust.check_cues(cues, "--cues")
    path = model_path(args.checkpoint)
    fitted = trust.calibrate_run(path, lambda: load_data(args.data_dir), print, gate, cues)
    print(
        f"{path}: temperature {fitted.temperature:.3f}, in-distribution threshold {fitted.threshold:.4f}, "
        f"detector {' + '.join(fitted.references)} (gate {fitted.gate:.4g})"
    )
    return 0
