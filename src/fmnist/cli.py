"""Command line: parses arguments and calls the library. Every user mistake ends in one line and exit 2."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from pathlib import Path

import torch

from fmnist import __version__, checkpoint, data, measure, models, report
from fmnist import config as config_lib
from fmnist.errors import FmnistError


class Terminated(BaseException):
    """SIGTERM, turned into an exception so that `finally` blocks and messages run as for Ctrl-C."""


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line instead of argparse's usage block
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def add_config_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("training options (override --config; defaults shown)")
    for name in config_lib.field_names():
        help, choices, default = config_lib.describe(name)
        shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
        text = f"{help} (default: {shown if shown != '' else 'none'})"
        if choices:
            text += f"; one of: {', '.join(choices)}"
        flag = "--" + name.replace("_", "-")
        if isinstance(default, bool):
            group.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=text)
        else:
            group.add_argument(flag, default=None, metavar=name.upper(), help=text)


def config_overrides(args: argparse.Namespace) -> dict:
    return {k: v for k, v in vars(args).items() if k in config_lib.field_names() and v is not None}


def load_data(data_dir: str | None) -> data.FashionMNIST:
    found = data.locate(data_dir or None)
    if found is None:
        print(f"Fashion-MNIST not found locally; downloading to {data.cache_dir()}", file=sys.stderr)
    return data.load(data_dir or None, progress=lambda msg: print(msg, file=sys.stderr))


def new_run_dir(out: str | None) -> Path:
    if out:
        return Path(out)
    base = Path("runs") / time.strftime("%Y%m%d-%H%M%S")
    run_dir, n = base, 1
    while run_dir.exists():
        n += 1
        run_dir = base.with_name(f"{base.name}-{n}")
    return run_dir


def resolve_train_config(args: argparse.Namespace) -> tuple[config_lib.Config, Path]:
    overrides = config_overrides(args)
    if not args.resume:
        return config_lib.resolve(args.config, overrides), new_run_dir(args.out)
    run_dir = Path(args.resume)
    if not (run_dir / "config.toml").is_file():
        raise FmnistError(f"{run_dir}: not a run directory (no config.toml); nothing to resume")
    if args.out:
        raise FmnistError("--resume continues a run in its own directory; drop --out")
    saved = config_lib.resolve(run_dir / "config.toml")
    asked = {**(config_lib.read_toml(args.config) if args.config else {}), **overrides}
    for name, value in asked.items():
        if config_lib.coerce(name, value) != getattr(saved, name):
            raise FmnistError(
                f"--resume {run_dir}: {name}={value} conflicts with the run's {name}={getattr(saved, name)}; "
                "start a new run to change it"
            )
    return saved, run_dir


def cmd_train(args: argparse.Namespace) -> int:
    from fmnist.evaluate import evaluate
    from fmnist.train import fit

    cfg, run_dir = resolve_train_config(args)
    device = measure.select_device(cfg.device)
    dataset = load_data(cfg.data_dir)
    params = models.parameter_count(models.build(cfg))
    print(f"fmnist {__version__} | torch {torch.__version__} | device {device} | data {dataset.directory} ({dataset.origin})")
    print(f"model {cfg.model} hidden={','.join(map(str, cfg.hidden))} | {params:,} parameters | run {run_dir}")
    try:
        result = fit(cfg, run_dir, dataset, resume=bool(args.resume), progress=not args.no_progress)
    except (KeyboardInterrupt, Terminated):
        if (run_dir / "checkpoints" / "last.pt").exists():
            print(f"interrupted; continue with: fmnist train --resume {run_dir}", file=sys.stderr)
        raise
    test = evaluate(result.model, dataset.test_images.to(device), dataset.test_labels.to(device))
    report.write_run_plots(run_dir, result.history, test, dataset.test_images, data.CLASSES)
    s = result.summary
    print(
        f"\ntest accuracy {s['test_accuracy']:.2%}  test loss {s['test_loss']:.4f}  ({s['chosen_by']}, epoch {s['chosen_epoch']})\n"
        f"wall {s['wall_seconds']:.1f}s  train {s['train_images_per_second']:,.0f} img/s  "
        f"{s['train_ms_per_batch']:.3f} ms/batch (median over epochs)  peak memory {s['peak_memory_bytes'] / 2**20:,.0f} MiB\n"
        f"artifacts in {run_dir}: summary.json metrics.jsonl config.toml checkpoints/ tensorboard/ *.png"
    )
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from fmnist.evaluate import evaluate

    device = measure.select_device(args.device)
    model, cfg, _ = checkpoint.load_model(args.checkpoint, device)
    dataset = load_data(args.data_dir or cfg.data_dir)
    result = evaluate(model, dataset.test_images.to(device), dataset.test_labels.to(device))
    if args.plots:
        report.plot_confusion(result.confusion_matrix(), data.CLASSES, Path(args.plots) / "confusion_matrix.png")
    if args.json:
        print(
            json.dumps(
                {
                    "checkpoint": str(args.checkpoint),
                    "test_accuracy": result.accuracy,
                    "test_loss": result.loss,
                    "per_class": result.per_class(),
                    "confusion_matrix": result.confusion_matrix().tolist(),
                }
            )
        )
        return 0
    print(f"test accuracy {result.accuracy:.2%}  test loss {result.loss:.4f}  ({len(result.labels):,} images)")
    print(f"{'class':<12} {'precision':>9} {'recall':>7} {'support':>8}")
    for row in result.per_class():
        print(f"{row['class']:<12} {row['precision']:>9.2%} {row['recall']:>7.2%} {row['support']:>8}")
    print("confusion matrix (rows: true class, columns: predicted)")
    for name, counts in zip(data.CLASSES, result.confusion_matrix().tolist()):
        print(f"{name:<12} " + " ".join(f"{c:>5}" for c in counts))
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from fmnist.evaluate import predict
    from fmnist.images import load_image

    if args.top_k < 1:
        raise FmnistError(f"--top-k must be >= 1, got {args.top_k}")
    device = measure.select_device(args.device)
    model, _, _ = checkpoint.load_model(args.checkpoint, device)
    failed = 0
    for path in args.images:
        try:
            image = load_image(path)
        except FmnistError as e:
            failed += 1
            print(json.dumps({"path": path, "error": str(e)}) if args.json else f"{path}: error: {e}")
            continue
        top = predict(model, image[None].to(device), args.top_k)[0]
        best, p = top[0]
        if args.json:
            ranked = [[data.CLASSES[i], q] for i, q in top]
            print(json.dumps({"path": path, "class_index": best, "class_name": data.CLASSES[best], "probability": p, "top": ranked}))
        else:
            print(f"{path}: " + ", ".join(f"{data.CLASSES[i]} {q:.1%}" for i, q in top))
    return 1 if failed else 0


def cmd_data(args: argparse.Namespace) -> int:
    if args.action == "verify":
        results = data.verify(args.data_dir or None)
        for path, ok, message in results:
            print(f"{'ok ' if ok else 'BAD'} {path}: {message}")
        return 0 if all(ok for _, ok, _ in results) else 1
    dataset = load_data(args.data_dir)
    if args.action == "info":
        print(f"directory  {dataset.directory} (found via {dataset.origin})")
        print(f"train      {len(dataset.train_labels):,} images {tuple(dataset.train_images.shape[1:])} uint8")
        print(f"test       {len(dataset.test_labels):,} images")
        train_counts, test_counts = data.class_counts(dataset.train_labels), data.class_counts(dataset.test_labels)
        print(f"{'class':<3} {'name':<12} {'train':>6} {'test':>6}")
        for i, name in enumerate(data.CLASSES):
            print(f"{i:<3} {name:<12} {train_counts[i]:>6} {test_counts[i]:>6}")
        return 0
    per_class = max(1, args.count // len(data.CLASSES))
    picks = torch.cat([torch.nonzero(dataset.train_labels == c).flatten()[:per_class] for c in range(len(data.CLASSES))])
    titles = [data.CLASSES[i] for i in dataset.train_labels[picks].tolist()]
    report.plot_image_grid(dataset.train_images[picks], titles, args.out, ncols=per_class, title="Fashion-MNIST training images")
    print(f"wrote {args.out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="fmnist", description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--version", action="version", version=f"fmnist {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)

    p = sub.add_parser("train", help="train a model and write a run directory", formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--config", help="TOML file of training options (flags override it)")
    p.add_argument("--out", help="run directory (default: runs/<timestamp>)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run from its last checkpoint")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_config_flags(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("eval", help="test-set metrics of a checkpoint")
    p.add_argument("checkpoint", help="a .pt checkpoint, or a run directory (its best, else last, checkpoint)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--plots", metavar="DIR", help="also write the confusion matrix as PNG here")
    p.add_argument("--data-dir", default="", help="directory of the IDX files")
    p.add_argument("--device", default="auto", choices=config_lib.DEVICES)
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("predict", help="classify image files with a checkpoint")
    p.add_argument("checkpoint", help="a .pt checkpoint, or a run directory")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="PNG/JPEG/... files of any size and mode")
    p.add_argument("--top-k", type=int, default=3, help="classes to show per image (default: 3)")
    p.add_argument("--json", action="store_true", help="one JSON object per line per image")
    p.add_argument("--device", default="auto", choices=config_lib.DEVICES)
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("data", help="dataset info, verification and a sample grid")
    p.add_argument("action", choices=("info", "verify", "show"))
    p.add_argument("--data-dir", default="", help="directory of the IDX files (default: search, then download)")
    p.add_argument("--out", default="samples.png", help="show: PNG file to write (default: samples.png)")
    p.add_argument("--count", type=int, default=40, help="show: number of images, spread over the classes (default: 40)")
    p.set_defaults(func=cmd_data)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def on_sigterm(signum, frame):
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        return args.func(args)
    except FmnistError as e:
        print(f"fmnist: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("fmnist: interrupted", file=sys.stderr)
        return 130
    except Terminated:
        print("fmnist: terminated", file=sys.stderr)
        return 143
    finally:
        signal.signal(signal.SIGTERM, previous)
