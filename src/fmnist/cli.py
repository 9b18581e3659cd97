"""Command line: parses arguments and calls the library. Every user mistake ends in one line and exit 2."""

from __future__ import annotations

import argparse
import errno
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import NoReturn

import torch

from fmnist import __version__, cpu, data, distributed, models, plots, presets, trust
from fmnist import config as config_lib
from fmnist.adapt import Recipe
from fmnist.device import resolve_amp, select_device
from fmnist.errors import FmnistError, plain
from fmnist.export import CALIBRATION_IMAGES
from fmnist.inference import FilePrediction, load_predictor
from fmnist.run_dir import RunDir, model_path


class Terminated(BaseException):
    """SIGTERM, turned into an exception so that `finally` blocks and messages run as for Ctrl-C."""


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line instead of argparse's usage block
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def add_config_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("training options (override --config; defaults shown)")
    for name in config_lib.field_names():
        help, choices, default = config_lib.describe(name)
        shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
        text = help if "(default:" in help else f"{help} (default: {shown if shown != '' else 'none'})"
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


def requested_values(args: argparse.Namespace, overrides: dict) -> dict:
    """Config values asked for on the command line: the preset, then the --config file, then flags."""
    preset = presets.load(args.preset) if args.preset else {}
    file_values = config_lib.read_toml(args.config) if args.config else {}
    return {**preset, **file_values, **overrides}


def resolve_train_config(args: argparse.Namespace) -> tuple[config_lib.Config, Path]:
    asked = requested_values(args, config_overrides(args))
    if not args.resume:
        return config_lib.from_dict(asked), new_run_dir(args.out)
    if args.out:
        raise FmnistError("--resume continues a run in its own directory; drop --out")
    run = RunDir(args.resume)
    return config_lib.for_resume(run.read_config(), asked, run.path), run.path


def cmd_train(args: argparse.Namespace) -> int:
    cfg, run_dir = resolve_train_config(args)
    if not args.resume and RunDir(run_dir).is_run():  # before the data loads and anything is printed
        raise FmnistError(RunDir(run_dir).taken())
    dataset = load_data(cfg.data_dir)
    if args.profile:
        from fmnist.bench import profiler

        profiler.profile_training(cfg, dataset, args.profile)
    with distributed.group(select_device(cfg.device)) as w:
        run_dir = Path(distributed.broadcast(str(run_dir), w))  # ranks may disagree on the timestamp
        return train_and_report(args, cfg, dataset, run_dir, w)


def train_and_report(
    args: argparse.Namespace, cfg: config_lib.Config, dataset, run_dir: Path, w: distributed.World
) -> int:
    from fmnist.train import fit

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
    try:
        result = fit(cfg, run_dir, dataset, resume=bool(args.resume), progress=not args.no_progress, fit_trust=True)
    except (KeyboardInterrupt, Terminated):
        if w.is_main and RunDir(run_dir).last.exists():
            print(f"interrupted; continue with: fmnist train --resume {run_dir}", file=sys.stderr)
        raise
    if not w.is_main:
        return 0
    s = result.summary
    assert s is not None  # rank 0 gets the summary
    print(
        f"\ntest accuracy {s['test_accuracy']:.2%}  test loss {s['test_loss']:.4f}  "
        f"({s['chosen_by']}, epoch {s['chosen_epoch']}{', EMA weights' if s.get('weights') == 'ema' else ''})\n"
        + (f"stopped before the planned epochs: {s['stopped']}\n" if "stopped" in s else "")
        + f"wall {s['wall_seconds']:.1f}s  train {s['train_images_per_second']:,.0f} img/s  "
        f"{s['train_ms_per_batch']:.3f} ms/batch (median over epochs)  "
        f"peak memory {s['peak_memory_bytes'] / 2**20:,.0f} MiB\n"
        f"artifacts in {run_dir}: summary.json metrics.jsonl config.toml checkpoints/ tensorboard/ *.png"
    )
    return 0


def cmd_adapt(args: argparse.Namespace) -> int:
    from fmnist.adapt import adapt

    if args.resume and (args.parent or args.images or args.out):
        raise FmnistError("--resume continues a run with its own parent, photos and directory; drop the others")
    asked = {k: getattr(args, k) for k in ("epochs", "lr", "freeze", "repeats", "rehearsal", "holdout", "seed")}
    recipe = Recipe(**{k: v for k, v in asked.items() if v is not None})
    out = args.resume or new_run_dir(args.out)
    dataset = load_data(args.data_dir)
    say = (lambda line: print(line, file=sys.stderr)) if args.json else print
    try:
        report = adapt(args.parent, args.images, out, recipe, resume=bool(args.resume), dataset=dataset, log=say)
    except (KeyboardInterrupt, Terminated):
        if (Path(out) / "adapt.json").exists():
            print(f"interrupted; continue with: fmnist adapt --resume {out}", file=sys.stderr)
        raise
    print(json.dumps(report.as_dict()) if args.json else report.text())
    if not args.json:
        print(f"artifacts in {out}: adapt-report.json before_after.png adapt.json parent.json checkpoints/")
    return 0


def say_layout(source: str, layout: str | None) -> None:
    """For a bare state dict, what fmnist recognised in it (network, input scaling), on stderr."""
    if layout:
        print(f"fmnist: {source}: {layout}", file=sys.stderr)


def cmd_eval(args: argparse.Namespace) -> int:
    from fmnist.evaluate import Report, evaluation_of

    if args.plots and Path(args.plots).exists() and not Path(args.plots).is_dir():  # before the work, not after
        raise FmnistError(f"--plots {args.plots}: exists and is not a directory")
    predictor = load_predictor(args.checkpoint, args.device, args.tta)
    say_layout(args.checkpoint, predictor.describe().get("layout"))
    if args.images:
        from fmnist.folders import load_folders

        folders = load_folders(args.images)
        images, labels = folders.images, folders.labels
        names, problems, skipped = [p.name for p in folders.paths], folders.problems, folders.skipped
    else:
        # Not the data_dir saved in the checkpoint's config: a path on the training machine is not
        # part of what a checkpoint means, and the test set is the same wherever it is found.
        dataset = load_data(args.data_dir)
        images, labels, names, problems, skipped = dataset.test_images, dataset.test_labels, None, [], {}
    logits = torch.cat([predictor.logits(chunk) for chunk in images.split(1000)])  # once, for both reports
    report = Report(
        str(args.checkpoint),
        str(args.images) if args.images else "test set",
        evaluation_of(logits, labels),
        images,
        names,
        problems,
        skipped,
    )
    trusted = trust_report(predictor.trust, logits, labels, args.plots)
    if args.plots:
        written = plots.write_evaluation_plots(args.plots, report, data.CLASSES)
        print(f"wrote {', '.join(written)}", file=sys.stderr)
    if args.json:
        print(json.dumps({**report.as_dict(), "tta": args.tta, "calibration_and_ood": trusted.as_dict()}))
        return 0
    print(report.text())
    print_trust_report(trusted)
    return 0


def trust_report(model_trust: trust.Trust, logits: torch.Tensor, labels: torch.Tensor, plot_dir: str | None):
    """Calibration and non-garment figures of a model's logits [N, 10] on a labelled set (trust.report); with
    `plot_dir`, also its reliability diagram."""
    figures = trust.report(model_trust, logits, labels)
    if plot_dir:
        before, after = figures.confidence
        confidence = {
            "softmax": before,
            **({f"T = {figures.trust.temperature:.2f}": after} if after is not None else {}),
        }
        plots.plot_reliability(
            confidence, dict.fromkeys(confidence, figures.correct), Path(plot_dir) / "reliability.png"
        )
    return figures


def print_trust_report(figures) -> None:
    b, a = figures.before, figures.after
    print(f"calibration (15-bin ECE, NLL, Brier): softmax ECE {b.ece:.2%} NLL {b.nll:.4f} Brier {b.brier:.4f}", end="")
    if a is None:
        print("; no temperature fitted (trained without a validation split): probabilities are uncalibrated")
    else:
        print(f"; with temperature {figures.trust.temperature:.3f} ECE {a.ece:.2%} NLL {a.nll:.4f} Brier {a.brier:.4f}")
    if figures.accepted is None:
        print("non-garment detector: none fitted (trained without a validation split)")
        return
    print(
        f"non-garment detector (threshold {figures.trust.threshold:.4f}): {figures.accepted:.2%} of these images "
        f"accepted as garments, accuracy on them {figures.accepted_accuracy:.2%}"
    )
    print("risk-coverage (the images with the highest in-distribution scores accepted):")
    for coverage, accuracy, least in figures.risk_coverage:
        print(f"  coverage {coverage:>4.0%}  accuracy {accuracy:.2%}  least score accepted {least:.4f}")


def cmd_calibrate(args: argparse.Namespace) -> int:
    from fmnist import checkpoint

    path = model_path(args.checkpoint)
    model, cfg, _ = checkpoint.load_model(path, "cpu")
    if not cfg.val_size:
        raise FmnistError(
            f"{path}: no validation split on record (trained with --val-size 0, or a state dict whose "
            "training images are unknown): the temperature and the non-garment detector are fitted only "
            "on images the model did not train on; train with fmnist train, which holds out 5,000"
        )
    dataset = load_data(args.data_dir)
    _, val_idx = data.stratified_split(dataset.train_labels, cfg.val_size, cfg.seed)
    fitted = trust.fit_and_store(
        model, dataset.train_images[val_idx], dataset.train_labels[val_idx], path, cfg.seed, print
    )
    assert fitted is not None
    print(f"{path}: temperature {fitted.temperature:.3f}, in-distribution threshold {fitted.threshold:.4f}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from fmnist import export

    export.check_out(Path(args.out))  # both before the data is loaded
    source = export.load_source(args.checkpoint)
    say_layout(args.checkpoint, source.layout)
    dataset = load_data(args.data_dir)
    facts = export.export(source, args.out, dataset, int8=args.int8, calibration_images=args.calibration_images)
    test = facts["test"]
    how = (
        "fp32"
        if facts["quantization"] is None
        else (
            f"int8 ({facts['quantization']['format']}, per-channel weights, calibrated on "
            f"{facts['quantization']['calibration_images']:,} training images)"
        )
    )
    print(
        f"wrote {args.out} and {Path(args.out).with_suffix('.json').name}: {how}, opset {facts['opset']}, "
        f"{Path(args.out).stat().st_size / 1024:,.0f} KiB"
    )
    print(
        f"test accuracy {test['accuracy']:.2%} with onnxruntime (PyTorch {test['pytorch_accuracy']:.2%}: "
        f"{100 * (test['accuracy'] - test['pytorch_accuracy']):+.2f} point), test loss {test['loss']:.4f}, "
        f"largest logit difference {test['max_abs_logit_difference']:.1e}, same prediction on "
        f"{test['same_prediction']:.2%} of {test['images']:,} images"
    )
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from fmnist.images import collect_images
    from fmnist.inference import PredictOptions, predict_files

    options = PredictOptions(
        args.top_k,
        args.batch_size,
        Path(args.save_inputs) if args.save_inputs else None,
        Path(args.explain) if args.explain else None,
        args.ood_threshold,
    )
    found = collect_images(args.images)
    skipped = found.skipped_summary()
    if not found.paths:
        raise FmnistError(f"no image files in {', '.join(args.images)}" + (f" ({skipped})" if skipped else ""))
    if skipped:
        print(f"fmnist: {skipped}", file=sys.stderr)
    predictor = load_predictor(args.checkpoint, select_device(args.device), args.tta)
    say_layout(args.checkpoint, predictor.describe().get("layout"))
    explain = None
    if args.explain:
        from fmnist.explain import Explainer, heatmaps

        explainer = Explainer(predictor)
        print(f"explanations: {explainer.method}, written to {args.explain}/", file=sys.stderr)

        def explain(images: torch.Tensor, targets: torch.Tensor) -> list[bytes]:
            return heatmaps(images, explainer(images, targets))

    failed = 0
    for result in predict_files(predictor, found.paths, options, explain):
        failed += result.error is not None
        print(predict_line(result, args.json))
    return 1 if failed else 0


def predict_line(result: FilePrediction, as_json: bool) -> str:
    path = str(result.path)
    if result.error is not None:
        error = plain(result.error).removeprefix(f"{path}: ")  # load_image's messages name the file already
        return json.dumps({"path": path, "error": error}) if as_json else f"{path}: error: {error}"
    verdict = result.verdict
    if not as_json:
        classes = ", ".join(f"{data.CLASSES[c]} {q:.1%}" for c, q in result.top)
        text = f"{path}: {classes}"
        if not verdict["garment"]:
            text = (
                f"{path}: NOT A GARMENT (in-distribution score {verdict['in_distribution_score']:.3f} < "
                f"{verdict['ood_threshold']:.3f}); best guess {classes}"
            )
        return text + ("" if verdict["calibrated"] else " [uncalibrated: no temperature fitted]")
    best, p = result.top[0]
    row = {
        "path": path,
        "class_index": best,
        "class_name": data.CLASSES[best],
        "probability": p,
        "top": [[data.CLASSES[c], q] for c, q in result.top],
        **verdict,
    }
    if result.saved_input is not None:
        row["input"] = str(result.saved_input)
    if result.explanation is not None:
        row["explanation"] = str(result.explanation)
    return json.dumps(row)


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
    picks = torch.cat(
        [torch.nonzero(dataset.train_labels == c).flatten()[:per_class] for c in range(len(data.CLASSES))]
    )
    titles = [data.CLASSES[i] for i in dataset.train_labels[picks].tolist()]
    plots.plot_image_grid(
        dataset.train_images[picks], titles, args.out, ncols=per_class, title="Fashion-MNIST training images"
    )
    print(f"wrote {args.out}")
    return 0


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
    runs = compare.grid_runs(experiment, args.out)  # config errors before the data is loaded
    dataset = load_data(runs[0].config.data_dir)
    try:
        results = compare.run_grid(experiment, args.out, dataset, workers=args.workers)
    except (KeyboardInterrupt, Terminated):
        print(
            f"interrupted; rerun the same command "
            f"(or: fmnist compare {Path(args.out) / 'experiment.toml'} --out {args.out})"
            " to train only the missing runs",
            file=sys.stderr,
        )
        raise
    print(compare.write_report(args.out, experiment, results, workers=args.workers))
    print(f"wrote results.md, results.csv, runs.csv, accuracy.png and curves*.png in {args.out}")
    return 0


def cmd_tune(args: argparse.Namespace) -> int:
    import optuna

    from fmnist.studies import tune

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # tune prints one line per trial itself
    tune.check_budget(args.trials, args.timeout, args.workers)
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
    if args.resume:
        given = [flag for flag, value in study_settings.items() if value is not None]
        if given:
            raise FmnistError(f"--resume continues a study with its recorded settings; drop {', '.join(given)}")
        study_dir = Path(args.resume)
    elif not args.out:
        raise FmnistError("tune needs --out DIR for a new study, or --resume DIR")
    else:
        study_dir = Path(args.out)
        base = requested_values(
            args,
            {
                **parse_assignments(args.set, "--set"),
                **({"epochs": args.epochs} if args.epochs is not None else {}),
                **({"val_size": args.val_size} if args.val_size is not None else {}),
            },
        )
        tune.create_study(
            study_dir,
            tune.new_settings(
                base,
                name=args.study_name or study_dir.resolve().name,
                storage=args.storage or "",
                pruner=args.pruner or "median",
                sampler_seed=args.sampler_seed or 0,
                heartbeat=tune.HEARTBEAT_SECONDS if args.heartbeat is None else args.heartbeat,
            ),
        )
    settings = tune.load_settings(study_dir)
    dataset = load_data(settings.base.get("data_dir"))
    print(
        f"study {settings.name} in {settings.storage or study_dir / tune.JOURNAL_FILE}: "
        f"{args.trials} more trial(s), {args.workers} worker(s)"
    )
    try:
        study = tune.optimize(study_dir, dataset, trials=args.trials, timeout=args.timeout, workers=args.workers)
    except (KeyboardInterrupt, Terminated):
        print(f"interrupted; continue with: fmnist tune --resume {study_dir}", file=sys.stderr)
        raise
    tune.write_outputs(study, study_dir)
    return 0


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


def cmd_lr_find(args: argparse.Namespace) -> int:
    from fmnist.lr_find import lr_find

    cfg = config_lib.from_dict(requested_values(args, config_overrides(args)))
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


def cmd_serve(args: argparse.Namespace) -> int:
    import dataclasses

    from fmnist.serve import server
    from fmnist.serve.app import Limits

    limits = Limits(**{f.name: getattr(args, f.name) for f in dataclasses.fields(Limits)})
    limits.check()
    if args.threads < 1 or args.workers < 1:
        raise FmnistError(f"--threads and --workers must be >= 1, got {args.threads} and {args.workers}")
    if not 0 <= args.port <= 65535:  # before the model loads; socket.bind would raise OverflowError
        raise FmnistError(f"--port must be 0-65535 (0: any free port), got {args.port}")
    trust.check_threshold(args.ood_threshold)
    spec = server.Spec(
        args.model,
        str(select_device(args.device)),
        dataclasses.asdict(limits),
        args.api_key_file or "",
        tuple(args.cors_origin or ()),
        args.threads,
        args.tta,
        args.ood_threshold,
    )
    app = server.build_app(spec)  # here too with several workers: a bad model or key file is one line, before any
    say_layout(args.model, app.state.layout)
    sock = server.listen(args.host, args.port)
    host, port = sock.getsockname()[:2]
    warning = server.exposure_warning(host, keyed=bool(args.api_key_file))
    if warning:
        print(warning, file=sys.stderr, flush=True)
    shown = f"[{host}]" if ":" in host else host
    workers = f", {args.workers} worker processes" if args.workers > 1 else ""
    print(
        f"fmnist serve: {app.state.model_header} on http://{shown}:{port}/{workers} (API: POST /predict, "
        "GET /healthz, GET /metrics); SIGHUP reloads the model; Ctrl-C or SIGTERM stops after the requests "
        "in flight",
        flush=True,
    )
    if args.workers == 1:
        server.run(app, sock, access_log=not args.no_access_log)
    else:
        del app  # each worker loads its own
        server.run_workers(spec, sock, args.workers, access_log=not args.no_access_log)
    return 0


def add_limit_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per field of serve's Limits, with its help and default, as add_config_flags does for Config."""
    import dataclasses

    from fmnist.serve.app import Limits

    group = parser.add_argument_group("limits of each worker process (defaults shown)")
    for f in dataclasses.fields(Limits):
        group.add_argument(
            "--" + f.name.replace("_", "-"),
            type=type(f.default),
            default=f.default,
            metavar=f.name.upper(),
            help=f"{f.metadata['help']} (default: {f.default:g})",
        )


BARE_STATE_DICT = (
    "a torch.save(model.state_dict()) file of the PyTorch Quickstart network or of an fmnist model "
    "(recognised by its keys and shapes; its input pixels are in [0, 1], as ToTensor() gives)"
)


def shared_flags() -> dict[str, Parser]:
    """The flags several commands share, each written once (argparse parent parsers): --device,
    --data-dir, --preset, --config and --tta."""
    flags = {name: Parser(add_help=False) for name in ("device", "data_dir", "preset", "config", "tta")}
    flags["device"].add_argument(
        "--device",
        default="auto",
        choices=config_lib.DEVICES,
        help="where to run (default: auto: cuda, then mps, then cpu)",
    )
    flags["data_dir"].add_argument(
        "--data-dir",
        default="",
        help="directory of the IDX files, never the one a training run saved (default: search, then download)",
    )
    flags["preset"].add_argument(
        "--preset",
        metavar="NAME",
        help=f"a named config shipped with fmnist ({', '.join(presets.names())}); --config and flags override it",
    )
    flags["config"].add_argument("--config", help="TOML file of training options (flags override it)")
    flags["tta"].add_argument(
        "--tta",
        default="none",
        choices=("none", "flip"),
        help="test-time augmentation: "
        "flip averages the logits of each image and its mirror (2 model inputs "
        "per image) (default: none)",
    )
    return flags


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="fmnist", description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--version", action="version", version=f"fmnist {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    shared = shared_flags()
    device, data_dir, tta = shared["device"], shared["data_dir"], shared["tta"]
    recipe = [shared["preset"], shared["config"]]

    p = sub.add_parser("train", help="train a model and write a run directory", parents=recipe)
    p.add_argument("--out", help="run directory (default: runs/<timestamp>)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run from its last checkpoint")
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
        "adapt",
        help="fine-tune a trained model on your labelled photos (one folder per class), rehearsing Fashion-MNIST",
        parents=[data_dir],
    )
    p.add_argument("parent", nargs="?", help="the model to start from: a .pt checkpoint or a run directory")
    p.add_argument("--images", metavar="DIR", help="your photos, one sub-folder per class (as eval --images reads)")
    p.add_argument("--out", help="new run directory (default: runs/<timestamp>)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted adaptation")
    p.add_argument("--json", action="store_true", help="print the before/after report as one JSON object")
    recipe_defaults = Recipe()
    for name, kind, text in (
        ("epochs", int, "passes over the photos and the rehearsal memory"),
        ("lr", float, "Adam's peak learning rate (cosine decay)"),
        ("freeze", int, "leading weight layers kept as the parent has them"),
        ("repeats", int, "times each training photo is seen per epoch"),
        ("rehearsal", float, "Fashion-MNIST training images per photo seen (experience replay)"),
        ("holdout", float, "share of each class's photos held out to choose the epoch and refit trust"),
        ("seed", int, "seeds the held-out draw, the memory, the order and augmentation"),
    ):
        p.add_argument(f"--{name}", type=kind, help=f"{text} (default: {getattr(recipe_defaults, name)})")
    p.set_defaults(func=cmd_adapt)

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

    p = sub.add_parser(
        "eval",
        help="metrics and error analysis of a checkpoint or an exported model, on the test "
        "set or your own labelled pictures",
        parents=[device, data_dir, tta],
    )
    p.add_argument(
        "checkpoint",
        help="a .pt checkpoint, a run directory (its best, else last, checkpoint), an "
        ".onnx file from fmnist export (run by onnxruntime on the CPU), or " + BARE_STATE_DICT,
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument(
        "--images",
        metavar="DIR",
        help="evaluate on your own pictures instead of the test set: one "
        "sub-folder of DIR per class, named by class name (t-shirt, T-shirt_top, ankle boots, ...) or index "
        "0-9; each picture framed as predict frames it",
    )
    p.add_argument(
        "--plots", metavar="DIR", help="also write confusion_matrix.png, top_losses.png and most_confused.png here"
    )
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("predict", help="classify photos and other image files with a checkpoint", parents=[device, tta])
    p.add_argument(
        "checkpoint", help="a .pt checkpoint, a run directory, an .onnx file from fmnist export, or " + BARE_STATE_DICT
    )
    p.add_argument(
        "images",
        nargs="+",
        metavar="IMAGE",
        help="image files in any format and mode Pillow reads (PNG, JPEG, WebP, TIFF, ...), up to 50 M "
        "pixels decoded (a JPEG decodes at down to 1/8 scale: up to 3,200 M pixels); directories (the "
        "images in them, by content, sorted; hidden and system files skipped) or globs such as "
        "'photos/*.jpg'",
    )
    p.add_argument("--top-k", type=int, default=3, help="classes to show per image (default: 3)")
    p.add_argument("--json", action="store_true", help="one JSON object per line per image")
    p.add_argument("--batch-size", type=int, default=256, help="images per model call (default: 256)")
    p.add_argument(
        "--ood-threshold",
        type=float,
        metavar="SCORE",
        help="in-distribution score (0..1) below which a picture is called not a garment (default: the "
        "model's, which keeps 97%% of its reference garment photos; 0 accepts everything)",
    )
    p.add_argument(
        "--save-inputs",
        metavar="DIR",
        help="write the 28x28 image the model saw for each file as DIR/<file name>.png (-2, -3, ... when names repeat)",
    )
    p.add_argument(
        "--explain",
        metavar="DIR",
        help="also write, for each file, a heatmap of the pixels that drove the "
        "predicted class over the 28x28 view (red: for it, blue: against) as DIR/<file name>.png: "
        "integrated gradients for a PyTorch model, occlusion for an ONNX export",
    )
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser(
        "serve", help="HTTP API and web page: classify uploaded images, with micro-batching", parents=[device, tta]
    )
    p.add_argument("model", help="a .pt checkpoint, a run directory, an exported model, or " + BARE_STATE_DICT)
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on; 0.0.0.0 exposes it to the network (default: 127.0.0.1)",
    )
    p.add_argument("--port", type=int, default=8000, help="TCP port; 0 picks a free one (default: 8000)")
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        help="server processes sharing the port, each with its own model copy and micro-batcher (default: 1)",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch intra-op threads per model call (default: 1: batches "
        "are small, and the decoders and the HTTP loop need the other cores)",
    )
    p.add_argument(
        "--api-key-file",
        metavar="FILE",
        help="API keys, one per line: POST /predict and GET /metrics "
        "then need one (Authorization: Bearer KEY or X-API-Key: KEY)",
    )
    p.add_argument(
        "--cors-origin",
        action="append",
        metavar="ORIGIN",
        help="an origin whose pages may call the API "
        "from a browser, e.g. https://shop.example (repeatable; default: none)",
    )
    add_limit_flags(p)
    p.add_argument(
        "--ood-threshold",
        type=float,
        metavar="SCORE",
        help="in-distribution score (0..1) below which a picture is answered as not clothing (default: "
        "the model's, which keeps 97%% of its reference garment photos; 0 accepts everything)",
    )
    p.add_argument("--no-access-log", action="store_true", help="no log line per request")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser(
        "calibrate",
        help="fit the temperature and the non-garment detector of a trained model "
        "again (fmnist train does it when it ends, unless --val-size 0)",
        parents=[data_dir],
    )
    p.add_argument("checkpoint", help="a .pt checkpoint, or a run directory (its best, else last, checkpoint)")
    p.set_defaults(func=cmd_calibrate)

    p = sub.add_parser(
        "export", help="write a checkpoint as ONNX (fp32 or int8) with a sidecar JSON of facts", parents=[data_dir]
    )
    p.add_argument(
        "checkpoint", help="a .pt checkpoint, a run directory (its best, else last, checkpoint), or " + BARE_STATE_DICT
    )
    p.add_argument("--out", required=True, help="the .onnx file to write; the sidecar goes beside it as NAME.json")
    p.add_argument(
        "--int8", action="store_true", help="static int8 quantization with onnxruntime, calibrated on training images"
    )
    p.add_argument(
        "--calibration-images",
        type=int,
        default=CALIBRATION_IMAGES,
        help=f"--int8: training images that set the activation ranges (default: {CALIBRATION_IMAGES:,})",
    )
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("data", help="dataset info, verification and a sample grid", parents=[data_dir])
    p.add_argument("action", choices=("info", "verify", "show"))
    p.add_argument("--out", default="samples.png", help="show: PNG file to write (default: samples.png)")
    p.add_argument(
        "--count", type=int, default=40, help="show: number of images, spread over the classes (default: 40)"
    )
    p.set_defaults(func=cmd_data)

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

    p = sub.add_parser(
        "compare",
        help="a grid of training runs over seeds: tables and plots of validation and test accuracy",
        parents=[shared["preset"]],
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
    p.add_argument("--workers", type=int, default=1, help="runs trained at once, in separate processes (default: 1)")
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("tune", help="Optuna search of training options for validation accuracy", parents=recipe)
    p.add_argument("--out", help="new study directory")
    p.add_argument("--resume", metavar="DIR", help="run more trials of the study in DIR, with its recorded settings")
    p.add_argument(
        "--trials",
        type=int,
        default=20,
        help="trials to finish now (completed or pruned), shared by the workers; one lost with a dead "
        "worker is replaced (default: 20)",
    )
    p.add_argument("--timeout", type=float, help="stop starting trials after this many seconds")
    p.add_argument("--workers", type=int, default=1, help="local worker processes sharing the study (default: 1)")
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
    return parser


# What to do about the machine's errors that users meet most; others get the system's words alone.
OS_ERROR_NEXT_STEPS = {
    errno.ENOSPC: "Free some disk space and run the command again (fmnist train --resume DIR continues a run).",
    errno.EDQUOT: "Free some space within your disk quota and run the command again.",
    errno.EACCES: "Check the permissions of the file and its directory, or choose another path.",
    errno.EPERM: "Check the permissions of the file and its directory, or choose another path.",
    errno.EROFS: "Choose a path on a writable file system.",
    errno.ENOENT: "Check the path.",
}


def describe_os_error(e: OSError) -> str:
    """An OSError as whole sentences: the file, the system's reason, and a next step where one is known."""
    where = f"{e.filename}: " if e.filename else ""
    reason = (e.strerror or str(e)).rstrip(".")
    step = OS_ERROR_NEXT_STEPS.get(e.errno) if e.errno is not None else None
    return f"{where}{reason}." + (f" {step}" if step else "")


# The status a shell reports for a tool stopped by SIGPIPE (128 + 13): `yes | head -1` gives it to yes.
CLOSED_PIPE_STATUS = 141


def main(argv: list[str] | None = None) -> int:
    """Run one command; its status. Output to a closed pipe (`fmnist data info | head -1`) ends the
    command quietly with CLOSED_PIPE_STATUS, by the recipe of Python's signal module documentation
    ("Note on SIGPIPE"): standard output is flushed inside the try, then pointed at /dev/null so
    that the interpreter's own flush at exit cannot fail again."""
    try:
        try:
            return run_command(argv)
        finally:
            sys.stdout.flush()  # also behind argparse's SystemExit (--help, --version)
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        for stream in (sys.stdout, sys.stderr):  # stderr may be the closed pipe too (2>&1 | head)
            try:
                os.dup2(devnull, stream.fileno())
            except (OSError, ValueError):  # not a file descriptor (captured output)
                pass
        return CLOSED_PIPE_STATUS


def run_command(argv: list[str] | None) -> int:
    args = build_parser().parse_args(argv)
    cpu.flush_denormals()  # before torch starts its thread pool, which then inherits it

    def on_sigterm(signum, frame):
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        code = args.func(args)
        sys.stdout.flush()  # here, where a reader that went away is caught, rather than at exit
        return code
    except FmnistError as e:
        print(f"fmnist: error: {plain(str(e))}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        raise  # main's quiet exit
    except OSError as e:  # a full disk, a vanished directory: the machine's state, not a bug
        print(f"fmnist: error: {plain(describe_os_error(e))}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("fmnist: interrupted", file=sys.stderr)
        return 130
    except Terminated:
        print("fmnist: terminated", file=sys.stderr)
        return 143
    finally:
        signal.signal(signal.SIGTERM, previous)
