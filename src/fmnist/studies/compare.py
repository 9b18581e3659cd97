"""fmnist compare: a grid of training runs over seeds, resumable and parallel, summarised in tables and plots.

An experiment is a base config, a grid (axis -> values) and a list of seeds. Every grid
point is trained once per seed with `train.fit`, each run in its own directory
`OUT/runs/<point>/seed<k>`. A run with summary.json is finished and never redone; a run
with config.toml but no summary.json was interrupted and resumes from its last checkpoint
(or from scratch without one). Choosing between grid points uses validation accuracy
only; test accuracy is reported beside it.
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import io
import itertools
import queue
import statistics
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w
import torch
from matplotlib.ticker import MaxNLocator, PercentFormatter

from fmnist import config as config_lib
from fmnist import measure, plots, presets
from fmnist.atomic import atomic_write
from fmnist.config import Config
from fmnist.data import FashionMNIST
from fmnist.errors import FmnistError
from fmnist.records import EpochRow, Summary
from fmnist.run_dir import RunDir
from fmnist.studies import hparams
from fmnist.studies import workers as workers_lib

DEFAULT_SEEDS = (0, 1, 2)
DEFAULT_THRESHOLD = 0.88  # validation accuracy whose epochs and seconds to reach are reported
EXPERIMENT_KEYS = ("preset", "seeds", "threshold", "base", "grid")


@dataclass(frozen=True)
class Experiment:
    base: dict[str, Any]  # config values of every run, before the grid point's own
    # axis -> [(label, config values)]: a scalar axis sets the option it is named after;
    # a table-valued axis (e.g. optimizer variants) sets several options per value.
    grid: dict[str, list[tuple[str, dict[str, Any]]]] = field(default_factory=dict)
    seeds: tuple[int, ...] = DEFAULT_SEEDS
    threshold: float = DEFAULT_THRESHOLD


@dataclass(frozen=True)
class Run:
    point: str  # grid point name, also its directory name: "optimizer=sgd,schedule=cosine"
    labels: dict[str, str]  # axis -> value label of this point
    seed: int
    config: Config
    run_dir: Path


@dataclass
class RunResult:
    run: Run
    history: list[EpochRow]  # metrics.jsonl rows; empty when the run has not finished
    summary: Summary | None  # summary.json; None when the run diverged or has not finished
    failure: str | None = None  # why a run ended without a summary (a non-finite loss)


# ---------------------------------------------------------------- the experiment


def read_experiment(path: str | Path) -> dict[str, Any]:
    """The raw tables of an experiment TOML file: preset, seeds, threshold, [base], [grid]."""
    path = Path(path)
    raw = config_lib.load_toml_file(path, "experiment")
    unknown = sorted(set(raw) - set(EXPERIMENT_KEYS))
    if unknown:
        raise FmnistError(f"{path}: unknown key {unknown[0]!r}; an experiment has {', '.join(EXPERIMENT_KEYS)}")
    for key in ("base", "grid"):
        if not isinstance(raw.get(key, {}), dict):
            raise FmnistError(f"{path}: {key} must be a table ([{key}])")
    return raw


def build_experiment(
    file_values: dict[str, Any] | None = None,
    *,
    preset: str | None = None,
    base: dict[str, Any] | None = None,
    grid: dict[str, list] | None = None,
    seeds: list[int] | None = None,
    threshold: float | None = None,
) -> Experiment:
    """An Experiment from an experiment file's values (read_experiment) and explicit values, which win:
    `base` updates the file's [base], `grid` replaces or adds axes, `seeds` and `threshold` replace.
    Without a validation split nothing could be compared honestly, so val_size 0 is refused.
    """
    file_values = file_values or {}
    preset = preset or file_values.get("preset")
    explicit = {**file_values.get("base", {}), **(base or {})}
    values = {**(presets.load(preset) if preset else {}), **explicit}
    values = {k: config_lib.coerce(k, v) for k, v in values.items()}
    if "seed" in values:
        raise FmnistError("seed is set per run by the seeds list; use seeds = [...] / --seeds")
    axes = {axis: parse_axis(axis, vals) for axis, vals in {**file_values.get("grid", {}), **(grid or {})}.items()}
    for point_values in [values, *(v for vals in axes.values() for _, v in vals)]:
        if point_values.get("val_size", 1) == 0:
            raise FmnistError("compare ranks runs by validation accuracy: val_size must be > 0")
    seeds = list(file_values.get("seeds", DEFAULT_SEEDS) if seeds is None else seeds)
    if not seeds or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds):
        raise FmnistError(f"seeds must be a non-empty list of integers >= 0, got {seeds!r}")
    if len(set(seeds)) != len(seeds):
        raise FmnistError(f"seeds must differ, got {seeds!r}")
    threshold = file_values.get("threshold", DEFAULT_THRESHOLD) if threshold is None else threshold
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 < threshold <= 1:
        raise FmnistError(f"threshold is a validation accuracy in (0, 1], got {threshold!r}")
    return Experiment(base=values, grid=axes, seeds=tuple(seeds), threshold=float(threshold))


def parse_axis(axis: str, values: Any) -> list[tuple[str, dict[str, Any]]]:
    """One grid axis as [(label, config values)]. Scalars set option `axis`; a table sets the options
    it names and is labelled by its `name` key, else by its values."""
    if not isinstance(values, list) or not values:
        raise FmnistError(f"grid axis {axis!r}: expected a non-empty list of values, got {values!r}")
    if axis == "seed":
        raise FmnistError("seed cannot be a grid axis; list seeds in seeds = [...] / --seeds")
    out = []
    for value in values:
        if isinstance(value, dict):
            value = dict(value)
            name = value.pop("name", None)
            options = {k: config_lib.coerce(k, v) for k, v in value.items()}
            if not options or "seed" in options:
                raise FmnistError(f"grid axis {axis!r}: a table value sets one or more options other than seed")
            label = str(name) if name is not None else "+".join(f"{k}={format_value(v)}" for k, v in options.items())
        else:
            try:
                options = {axis: config_lib.coerce(axis, value)}
            except FmnistError as e:
                raise FmnistError(f"grid axis {axis}: {str(e).removeprefix(f'{axis}: ')}") from None
            label = format_value(options[axis])
        out.append((safe_name(label), options))
    labels = [label for label, _ in out]
    if len(set(labels)) != len(labels):
        raise FmnistError(f"grid axis {axis!r}: values must differ, got {', '.join(labels)}")
    return out


def format_value(value: Any) -> str:
    if isinstance(value, (tuple, list)):
        return "-".join(map(format_value, value)) or "none"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def safe_name(text: str) -> str:
    """Usable as one path component everywhere."""
    return "".join(c if c.isalnum() or c in "=,.+-_" else "_" for c in text)


def grid_runs(experiment: Experiment, out: str | Path) -> list[Run]:
    """Every (grid point, seed) run with its resolved config (a fine-tune's split seed too: training.inherit_split,
    as its run directory saved it when there is one), in grid order; config errors surface here."""
    from fmnist.training import inherit_split

    runs = []
    axes = list(experiment.grid)
    for combo in itertools.product(*experiment.grid.values()):
        labels = {axis: label for axis, (label, _) in zip(axes, combo, strict=True)}
        values = dict(experiment.base)
        for _, options in combo:
            values.update(options)
        point = ",".join(f"{safe_name(a)}={v}" for a, v in labels.items()) or "base"
        for seed in experiment.seeds:
            run_dir = Path(out) / "runs" / point / f"seed{seed}"
            saved = RunDir(run_dir).read_config() if RunDir(run_dir).is_run() else None
            try:
                cfg = inherit_split(config_lib.from_dict({**values, "seed": seed}), saved)
            except FmnistError as e:
                raise FmnistError(f"grid point {point}: {e}") from None
            runs.append(Run(point, labels, seed, cfg, run_dir))
    return runs


# ---------------------------------------------------------------- sharing the grid


@dataclass(frozen=True)
class Shard:
    """Task `index` of `count` (0-based, as JOB_COMPLETION_INDEX and `sbatch --array=0-N`) trains every
    count-th run of the grid, starting at run `index`."""

    index: int
    count: int

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def parse_shard(text: str) -> Shard:
    """ "I/N" with 0 <= I < N; anything else is an FmnistError."""
    index, _, count = text.partition("/")
    try:
        shard = Shard(int(index), int(count))
    except ValueError:
        raise FmnistError(f"--shard: expected I/N, e.g. 0/4 for the first of 4 tasks, got {text!r}") from None
    if not 0 <= shard.index < shard.count:
        raise FmnistError(f"--shard {text}: the task index I runs from 0 to N-1")
    return shard


@contextlib.contextmanager
def claimed(path: Path) -> Iterator[bool]:
    """Hold an exclusive flock(2) on `path` (created if needed) while the block runs: True, or False at once
    when another process holds it. The kernel drops the lock when its holder dies, kill -9 included, so a
    requeued task takes its runs over. Two tasks given the same run never train it at the same time, on one
    machine or on a shared file system whose client forwards flock (Linux NFS since 2.6.12, Lustre with
    -o flock)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "ab") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


# ---------------------------------------------------------------- running


def run_state(run: Run) -> str:
    """ "done", "diverged", "partial" (interrupted: resume it) or "new"; refuses a directory
    holding a run of another config, which a rerun must never mistake for this one."""
    saved_run = RunDir(run.run_dir)
    if saved_run.is_run():
        saved = config_lib.to_dict(saved_run.read_config())
        wanted = config_lib.to_dict(run.config)
        changed = [k for k in wanted if saved.get(k) != wanted[k]]
        if changed:
            k = changed[0]
            raise FmnistError(
                f"{run.run_dir} holds a run with {k}={saved.get(k)!r}, this experiment asks for {wanted[k]!r}; "
                "choose another --out for a changed experiment"
            )
    if saved_run.summary.exists():
        return "done"
    if saved_run.diverged.exists():
        return "diverged"
    return "partial" if saved_run.is_run() else "new"


def run_grid(
    experiment: Experiment,
    out: str | Path,
    data: FashionMNIST,
    *,
    workers: int = 1,
    placement: workers_lib.Placement | None = None,
    shard: Shard | None = None,
    log: Callable[[str], None] = print,
) -> list[RunResult]:
    """Train every run of the experiment (of `shard`'s share, when given) that has not finished yet; return
    all runs' results.

    With several workers (`workers` on the CPU, or a `placement` that also gives each worker its GPU), runs
    train in that many spawned processes, each limited to its share of the cores so that they do not fight
    over them. Each run is trained under its claim (`claimed`): tasks given the same command on a shared
    directory, with or without shards, never train one run twice, and skip the runs another task holds.
    """
    placement = placement or workers_lib.place(workers, None, [])
    out = Path(out)
    runs = grid_runs(experiment, out)
    states = [run_state(run) for run in runs]
    mine = runs[shard.index :: shard.count] if shard else runs
    todo = [(run, state) for run, state in zip(runs, states, strict=True) if state in ("new", "partial")]
    todo = [(run, state) for run, state in todo if run in mine]
    write_experiment(experiment, out / "experiment.toml")
    log(
        f"{len(runs)} runs ({len(runs) // len(experiment.seeds)} grid points x {len(experiment.seeds)} seeds"
        + (f"; shard {shard}: {len(mine)} of them" if shard else "")
        + f"): {len(mine) - len(todo)} finished earlier, {sum(s == 'partial' for _, s in todo)} to resume, "
        f"{sum(s == 'new' for _, s in todo)} to start"
    )
    jobs = [(config_lib.to_dict(run.config), str(run.run_dir), f"{run.point} seed{run.seed}") for run, _ in todo]
    if placement.workers == 1 or len(jobs) <= 1:
        for i, job in enumerate(jobs, 1):
            log(f"[{i}/{len(jobs)}] {job[2]}: {_train_run(*job, data=data, log=log)}")
    else:
        _run_parallel(jobs, placement, data, log)
    return [load_result(run) for run in runs]


def _run_parallel(
    jobs: list[tuple], placement: workers_lib.Placement, data: FashionMNIST, log: Callable[[str], None]
) -> None:
    # torch's multiprocessing context hands the dataset tensors to the workers through
    # shared memory instead of a pickled copy per process.
    context = torch.multiprocessing.get_context("spawn")
    gpus = context.Queue()  # each worker takes its GPU from it as it starts
    for gpu in placement.gpus:
        gpus.put(gpu)
    # Leaving the block terminates the workers: after an error, Ctrl-C or SIGTERM no run goes
    # on in the background, and the interrupted ones resume on the next invocation.
    with context.Pool(placement.workers, initializer=_init_worker, initargs=(data, placement.threads, gpus)) as pool:
        for i, (label, outcome) in enumerate(pool.imap_unordered(_train_job, jobs), 1):
            log(f"[{i}/{len(jobs)}] {label}: {outcome}")


_WORKER_DATA: FashionMNIST | None = None


def _init_worker(data: FashionMNIST, threads: int, gpus: Any) -> None:
    global _WORKER_DATA
    _WORKER_DATA = data
    try:
        gpu = gpus.get_nowait()
    except queue.Empty:  # a worker the pool started again after one died: the GPUs as the parent sees them
        gpu = None
    workers_lib.enter(threads, gpu)


def _train_job(job: tuple) -> tuple[str, str]:
    return job[2], _train_run(*job)


def _train_run(
    values: dict,
    run_dir: str,
    label: str,
    *,
    data: FashionMNIST | None = None,
    log: Callable[[str], None] = print,
) -> str:
    """Train one run under its claim, in this process or in a worker that holds the data; return a one-line
    outcome. Whether it starts or resumes is read after the claim is taken: another task may have moved it on."""
    from fmnist.training import NonFiniteLoss, fit

    dataset = data or _WORKER_DATA
    assert dataset is not None, "a worker process gets its data from _init_worker"
    run = RunDir(run_dir)
    with claimed(run.claim) as ours:
        if not ours:
            return "another task is training it"
        if run.summary.exists() or run.diverged.exists():
            return "finished by another task"
        try:
            result = fit(
                config_lib.from_dict(values),
                run_dir,
                dataset,
                resume=run.is_run(),
                log=lambda msg: log(f"  {label}: {msg}"),
                progress=False,
            )
        except NonFiniteLoss as e:
            # Deterministic: a rerun would diverge again, so the run counts as finished.
            run.write_divergence(str(e))
            return f"diverged: {e}"
    s = result.summary
    assert s is not None  # one process: fit() returns the summary
    return f"val {s['val_accuracy']:.2%}  test {s['test_accuracy']:.2%}  {s['wall_seconds']:.0f}s"


def write_experiment(experiment: Experiment, path: Path) -> None:
    """The resolved experiment, in the experiment file format (a rerun with `fmnist compare path` repeats it)."""
    grid = {
        axis: [{"name": label, **config_lib.plain(options)} for label, options in values]
        for axis, values in experiment.grid.items()
    }
    text = tomli_w.dumps(
        {
            "seeds": list(experiment.seeds),
            "threshold": experiment.threshold,
            "base": config_lib.plain(experiment.base),
            "grid": grid,
        }
    )
    atomic_write(path, text)


def unfinished(results: list[RunResult]) -> int:
    """Runs with neither a summary nor a divergence: another task's share, or runs another task holds."""
    return sum(r.summary is None and r.failure is None for r in results)


def load_result(run: Run) -> RunResult:
    saved = RunDir(run.run_dir)
    summary = saved.read_summary()
    return RunResult(run, saved.read_history(), summary, None if summary else saved.read_divergence())


# ---------------------------------------------------------------- summarising


def epochs_to(history: list[EpochRow], threshold: float) -> tuple[int, float] | None:
    """(epoch, training seconds up to it) of the first epoch whose validation accuracy reaches
    `threshold`; None if none does. Seconds sum epoch_seconds: evaluation time excluded."""
    seconds = 0.0
    for row in history:
        seconds += row["epoch_seconds"]
        if row["val_acc"] >= threshold:  # compare always holds out a validation split
            return row["epoch"], seconds
    return None


def summarize(results: list[RunResult], experiment: Experiment) -> list[dict]:
    """One row per grid point, in grid order: mean and sample std over its finished seeds."""
    rows = []
    for point, members in itertools.groupby(results, key=lambda r: r.run.point):
        group = list(members)
        done = [(r, s) for r in group if (s := r.summary)]
        reached = [hit for r, _ in done if (hit := epochs_to(r.history, experiment.threshold))]
        row = {
            "point": point,
            **group[0].run.labels,
            "runs": len(done),
            "diverged": sum(bool(r.failure) for r in group),
            "missing": sum(not r.summary and not r.failure for r in group),
        }
        for key, values in (
            ("val_acc", [s["val_accuracy"] for _, s in done]),
            ("val_acc_last", [r.history[-1]["val_acc"] for r, _ in done]),
            ("test_acc", [s["test_accuracy"] for _, s in done]),
            ("epochs_to_threshold", [e for e, _ in reached]),
            ("seconds_to_threshold", [s for _, s in reached]),
        ):
            row[f"{key}_mean"] = statistics.fmean(values) if values else None
            row[f"{key}_std"] = statistics.stdev(values) if len(values) > 1 else None  # undefined for one run
        row["reached_threshold"] = len(reached)
        speeds = [s["train_images_per_second"] for _, s in done]
        row["images_per_second"] = statistics.median(speeds) if speeds else None
        rows.append(row)
    return rows


def write_report(out: str | Path, experiment: Experiment, results: list[RunResult], *, workers: int = 1) -> str:
    """results.csv, runs.csv, results.md, accuracy.png and curves*.png in `out`; returns the markdown."""
    out = Path(out)
    rows = summarize(results, experiment)
    atomic_write(out / "results.csv", _csv(rows))
    atomic_write(out / "runs.csv", _csv([_run_row(r, experiment.threshold) for r in results]))
    markdown = _markdown(rows, experiment, results, workers)
    atomic_write(out / "results.md", markdown)
    first_runs = {r.run.point: r.run for r in reversed(results)}
    done = [row for row in rows if row["runs"]]
    if done:
        plots.plot_bars(
            [_short_label(first_runs[row["point"]]) for row in done],
            [row["val_acc_mean"] for row in done],
            out / "accuracy.png",
            ylabel="validation accuracy (best epoch)",
            title=f"{' / '.join(experiment.grid) or 'base config'} (mean of {len(experiment.seeds)} seeds)",
        )
    for name, group in _curve_groups(results, experiment).items():
        plot_val_curves(group, out / name, experiment)
    hparams.write(out / hparams.DIRECTORY, _entries(results, experiment))
    return markdown


def _entries(results: list[RunResult], experiment: Experiment) -> Iterator[tuple[str, dict, dict]]:
    """TensorBoard HParams entries: each finished run's values of the options the grid sets, and its seed."""
    options = list(dict.fromkeys(k for values in experiment.grid.values() for _, chosen in values for k in chosen))
    for r in results:
        if s := r.summary:
            tried = {k: getattr(r.run.config, k) for k in options}
            metrics = {"val_acc": s["val_accuracy"], "test_acc": s["test_accuracy"]}
            yield f"{r.run.point},seed={r.run.seed}", {**tried, "seed": r.run.seed}, metrics


def _run_row(result: RunResult, threshold: float) -> dict:
    s = result.summary
    hit = epochs_to(result.history, threshold) if s else None
    return {
        "point": result.run.point,
        **result.run.labels,
        "seed": result.run.seed,
        "state": "done" if s else ("diverged" if result.failure else "missing"),
        "val_acc": s["val_accuracy"] if s else None,
        "val_acc_last": result.history[-1]["val_acc"] if s else None,
        "test_acc": s["test_accuracy"] if s else None,
        "chosen_epoch": s["chosen_epoch"] if s else None,
        "epochs": s["epochs"] if s else None,
        "epochs_to_threshold": hit[0] if hit else None,
        "seconds_to_threshold": hit[1] if hit else None,
        "wall_seconds": s["wall_seconds"] if s else None,
        "images_per_second": s["train_images_per_second"] if s else None,
        "run_dir": str(result.run.run_dir),
    }


def _csv(rows: list[dict]) -> str:
    if not rows:
        return ""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: "" if v is None else v for k, v in row.items()} for row in rows)
    return buffer.getvalue()


def _pct(mean: float | None, std: float | None) -> str:
    if mean is None:
        return "—"
    return f"{100 * mean:.2f}" if std is None else f"{100 * mean:.2f} ± {100 * std:.2f}"


def _markdown(rows: list[dict], experiment: Experiment, results: list[RunResult], workers: int) -> str:
    t = f"{experiment.threshold:.1%}"
    n = len(experiment.seeds)
    summaries = [r.summary for r in results if r.summary]
    hw = summaries[0]["hardware"] if summaries else measure.hardware(torch.device("cpu"))
    lines = [
        "# fmnist compare",
        "",
        f"Mean ± sample std over seeds {', '.join(map(str, experiment.seeds))} (n = {n}). Validation accuracy is "
        "that of the epoch chosen on validation; test accuracy is that same checkpoint's. "
        f'"to {t}": first epoch whose validation accuracy reaches {t}, and the training seconds up to it '
        "(evaluation excluded), averaged over the seeds that reached it (k/n when not all did; — when none did). "
        f"img/s: training images per second, median over runs of each run's median epoch; "
        f"{workers} run(s) trained at a time.",
        "",
        f"Hardware: {hw.get('cpu')} ({hw.get('cpu_count')} cores), device {hw.get('device')}, "
        f"torch {hw.get('torch_version')}, {hw.get('torch_threads')} torch threads per run.",
        "",
        f"Base config: {', '.join(f'{k}={format_value(v)}' for k, v in experiment.base.items())}",
        "",
        f"| grid point | runs | val acc % (best epoch) | val acc % (last epoch) | test acc % | epochs to {t} | "
        f"train s to {t} | img/s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        runs = f"{row['runs']}/{n}" + (f", {row['diverged']} diverged" if row["diverged"] else "")
        k = row["reached_threshold"]
        partial = "" if k in (0, row["runs"]) else f" ({k}/{row['runs']})"
        epochs = "—" if not k else f"{row['epochs_to_threshold_mean']:.1f}{partial}"
        seconds = "—" if not k else f"{row['seconds_to_threshold_mean']:.3g}{partial}"
        ips = "—" if row["images_per_second"] is None else f"{row['images_per_second']:,.0f}"
        lines.append(
            f"| {row['point']} | {runs} | {_pct(row['val_acc_mean'], row['val_acc_std'])} | "
            f"{_pct(row['val_acc_last_mean'], row['val_acc_last_std'])} | "
            f"{_pct(row['test_acc_mean'], row['test_acc_std'])} | {epochs} | {seconds} | {ips} |"
        )
    return "\n".join(lines) + "\n"


def _short_label(run: Run) -> str:
    """ "sgd / cosine" for the point "optimizer=sgd,schedule=cosine": the axis names are in the title."""
    return " / ".join(run.labels.values()) or run.point


def _curve_groups(results: list[RunResult], experiment: Experiment) -> dict[str, list[RunResult]]:
    """File name -> runs: one plot per value of the first axis when there are two or more axes."""
    axes = list(experiment.grid)
    if len(axes) < 2:
        return {"curves.png": results}
    groups: dict[str, list[RunResult]] = {}
    for r in results:
        groups.setdefault(f"curves-{safe_name(axes[0])}={r.run.labels[axes[0]]}.png", []).append(r)
    return groups


def plot_val_curves(results: list[RunResult], path: Path, experiment: Experiment) -> None:
    """Validation accuracy per epoch: per grid point the mean over seeds, with a min–max band."""
    fig = plots.new_figure(figsize=(8, 5))
    ax = fig.subplots()
    for _, members in itertools.groupby(results, key=lambda r: r.run.point):
        group = list(members)
        histories = [r.history for r in group if r.summary]
        if not histories:
            continue
        epochs = sorted({row["epoch"] for h in histories for row in h})
        per_epoch = [[row["val_acc"] for h in histories for row in h if row["epoch"] == e] for e in epochs]
        mean = [statistics.fmean(v) for v in per_epoch]
        label = f"{_short_label(group[0].run)} (n={len(histories)})"
        (line,) = ax.plot(epochs, mean, marker="o", markersize=3, label=label)
        low, high = [min(v) for v in per_epoch], [max(v) for v in per_epoch]
        ax.fill_between(epochs, low, high, color=line.get_color(), alpha=0.2)
    ax.axhline(experiment.threshold, color="grey", linestyle=":", linewidth=1)
    name = path.stem.removeprefix("curves").lstrip("-")
    title = f"Validation accuracy{': ' + name if name else ''} (mean over seeds, band: min–max)"
    ax.set(title=title, xlabel="epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.yaxis.set_major_formatter(PercentFormatter(xmax=1))
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    plots.save_png(fig, path)
