"""MLflow tracking: a run directory, a compare experiment or a tune study logged to an MLflow tracking store.

What a run directory holds becomes one MLflow run (MLflow's client API, `mlflow.MlflowClient`):
its config as parameters, every row of metrics.jsonl as metrics at step = epoch, the summary's numbers
as metrics named summary.<key> and its words as tags fmnist.<key>, and as artifacts config.toml,
metrics.jsonl, summary.json, the plots and the chosen checkpoint. A study is a parent run (its settings,
its report and plots) whose children are its runs or trials (MLflow's `mlflow.parentRunId` tag nests
them in the UI).

Logging is idempotent: each MLflow run carries the tag `fmnist.key`, a digest of the directory's
resolved path, and is searched for before one is created. A run found FINISHED is left as it is; one
found unfinished (a killed or restarted training) gets only the epochs it lacks. So a run logged live
by `fmnist train --mlflow`, restarted, then logged again by `fmnist log` is one MLflow run with each
epoch once.

MLflow is an optional dependency (`pip install "fmnist[mlflow]"`), imported only when a Tracker is made.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from fmnist import config as config_lib
from fmnist.errors import FmnistError
from fmnist.records import EpochRow
from fmnist.run_dir import RunDir

if TYPE_CHECKING:
    from mlflow import MlflowClient

KEY_TAG = "fmnist.key"
DEFAULT_EXPERIMENT = "fmnist"
MISSING = 'MLflow is not installed; install it with: pip install "fmnist[mlflow]"'
PLOTS = "plots"  # artifact folders
CHECKPOINTS = "checkpoints"


def key(path: str | Path) -> str:
    """The stable identity of a directory in MLflow: a SHA-256 digest (hex, 16 characters) of its resolved path."""
    return hashlib.sha256(str(Path(path).resolve()).encode()).hexdigest()[:16]


class Tracker:
    """One experiment of one MLflow tracking store: a server's URL (http://host:5000), a database
    (sqlite:///mlflow.db) or a local directory. Raises FmnistError when MLflow is missing or the store
    cannot be used."""

    def __init__(self, uri: str, experiment: str = DEFAULT_EXPERIMENT):
        try:
            from mlflow import MlflowClient
        except ImportError:
            raise FmnistError(MISSING) from None
        logging.getLogger("mlflow").setLevel(logging.WARNING)  # not its INFO lines (creating a database's tables)
        self.uri = uri
        self.client: MlflowClient = self._call(lambda: MlflowClient(tracking_uri=uri))
        self.experiment_id = self._call(lambda: self._experiment(experiment))

    def _call(self, action: Callable[[], Any]) -> Any:
        """Run one MLflow request; its failures (bad URI, unreachable server, refused value) as one line."""
        from mlflow.exceptions import MlflowException

        try:
            return action()
        except (MlflowException, OSError) as e:  # requests' errors are OSErrors
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise FmnistError(f"MLflow at {self.uri}: {first}") from None

    def _experiment(self, name: str) -> str:
        from mlflow.exceptions import MlflowException

        found = self.client.get_experiment_by_name(name)
        if found is not None:
            return found.experiment_id
        try:
            return self.client.create_experiment(name)
        except MlflowException:  # another process created it at the same moment
            found = self.client.get_experiment_by_name(name)
            if found is None:
                raise
            return found.experiment_id

    # ------------------------------------------------------------ finding or creating a run

    def open(self, directory: str | Path, name: str, parent: str | None = None) -> tuple[str, bool]:
        """(MLflow run id, whether it is FINISHED) of `directory`: the run tagged with its key, else a new one."""
        return self._call(lambda: self._open(Path(directory), name, parent))

    def _open(self, directory: Path, name: str, parent: str | None) -> tuple[str, bool]:
        digest = key(directory)
        found = self.client.search_runs([self.experiment_id], filter_string=f"tags.`{KEY_TAG}` = '{digest}'")
        if found:
            run = found[0].info
            if run.status != "FINISHED":
                self.client.update_run(run.run_id, status="RUNNING")
            return run.run_id, run.status == "FINISHED"
        tags = {KEY_TAG: digest, "fmnist.path": str(directory.resolve())}
        if parent:
            tags["mlflow.parentRunId"] = parent
        return self.client.create_run(self.experiment_id, tags=tags, run_name=name).info.run_id, False

    # ------------------------------------------------------------ logging a run directory

    def log_params(self, run_id: str, params: dict[str, Any]) -> None:
        """Parameters the MLflow run does not hold yet (MLflow refuses to change a logged one)."""

        def log() -> None:
            from mlflow.entities import Param

            held = self.client.get_run(run_id).data.params
            new = [Param(k, format_param(v)) for k, v in params.items() if k not in held]
            for start in range(0, len(new), 100):  # MLflow takes at most 100 parameters per batch
                self.client.log_batch(run_id, params=new[start : start + 100])

        self._call(log)

    def log_epochs(self, run_id: str, rows: Iterable[EpochRow]) -> None:
        """Each row's numbers as metrics at step = epoch, for the epochs the MLflow run lacks."""

        def log() -> None:
            from mlflow.entities import Metric

            logged = {m.step for m in self.client.get_metric_history(run_id, "train_loss")}
            metrics = [
                Metric(k, float(cast(float, v)), now_ms(), row["epoch"])
                for row in rows
                if row["epoch"] not in logged
                for k, v in row.items()
                if k != "epoch" and is_number(v)
            ]
            for start in range(0, len(metrics), 1000):  # MLflow's limit per batch
                self.client.log_batch(run_id, metrics=metrics[start : start + 1000])

        self._call(log)

    def log_run(
        self, directory: str | Path, *, name: str | None = None, parent: str | None = None, tags: dict | None = None
    ) -> str:
        """Log the run directory `directory` (whatever it holds so far); its MLflow run id. A run found
        FINISHED is not logged again; a directory with a summary (or a divergence) ends FINISHED."""
        run = RunDir(directory)
        if not run.is_run():
            raise FmnistError(f"{directory}: not a run directory (no {run.config.name})")
        run_id, finished = self.open(run.path, name or run.path.name, parent)
        if finished:
            return run_id
        self.log_params(run_id, config_lib.to_dict(run.read_config()))
        self.log_epochs(run_id, run.read_history())
        summary = cast("dict[str, Any] | None", run.read_summary())
        self._call(lambda: self._log_end(run, run_id, summary, tags or {}))
        return run_id

    def _log_end(self, run: RunDir, run_id: str, summary: dict | None, tags: dict) -> None:
        from mlflow.entities import Metric, RunTag

        words = {f"fmnist.{k}": str(v) for k, v in (summary or {}).items() if isinstance(v, str)}
        divergence = run.read_divergence()
        if divergence:
            words["fmnist.diverged"] = divergence
        # "summary.": test_loss and val_loss are also per-epoch metrics, whose histories these must not join
        numbers = [Metric(f"summary.{k}", float(v), now_ms(), 0) for k, v in (summary or {}).items() if is_number(v)]
        tag_list = [RunTag(k, str(v)) for k, v in {**words, **tags}.items()]
        self.client.log_batch(run_id, metrics=numbers, tags=tag_list)
        for path in (run.config, run.metrics, run.summary, run.diverged):
            if path.exists():
                self.client.log_artifact(run_id, str(path))
        for plot in sorted(run.path.glob("*.png")):
            self.client.log_artifact(run_id, str(plot), PLOTS)
        if summary is not None or divergence is not None:
            chosen = next((p for p in (run.best, run.last) if p.exists()), None)
            if chosen is not None:
                self.client.log_artifact(run_id, str(chosen), CHECKPOINTS)
            self.client.set_terminated(run_id, "FINISHED")
        else:
            self.client.set_terminated(run_id, "KILLED")  # interrupted: a later log or restart continues it

    def epoch_logger(self, run_id: str, warn: Callable[[str], None]) -> Callable[[EpochRow], None]:
        """fit()'s on_epoch for live logging. A failure to log (a server gone) is said once and training goes on:
        the epochs missed are logged at the end, or by `fmnist log`."""
        failed: list[str] = []

        def on_epoch(row: EpochRow) -> None:
            if failed:
                return
            try:
                self.log_epochs(run_id, [row])
            except FmnistError as e:
                failed.append(str(e))
                warn(f"{e}; training goes on, the missing epochs are logged when it ends")

        return on_epoch

    # ------------------------------------------------------------ studies

    def log_parent(
        self, directory: Path, *, params: dict[str, Any], metrics: dict[str, float], artifacts: Iterable[Path]
    ) -> str:
        """The parent run of a study directory: its settings, its headline metrics at step = the number of
        children they summarise (a study that grew since its last logging gets a new point, an unchanged one
        none), its report files (same names: replaced, not added). Left as it is until `end`."""
        run_id, _ = self.open(directory, directory.resolve().name)
        self.log_params(run_id, params)

        def log() -> None:
            from mlflow.entities import Metric

            step = int(metrics.get("runs", 0))
            first = next(iter(metrics), None)
            if first is not None and step not in {m.step for m in self.client.get_metric_history(run_id, first)}:
                self.client.log_batch(run_id, metrics=[Metric(k, float(v), now_ms(), step) for k, v in metrics.items()])
            for path in artifacts:
                if path.exists():
                    self.client.log_artifact(run_id, str(path), PLOTS if path.suffix == ".png" else None)

        self._call(log)
        return run_id

    def end(self, run_id: str) -> None:
        self._call(lambda: self.client.set_terminated(run_id, "FINISHED"))


def now_ms() -> int:
    """A metric's timestamp as MLflow takes it: milliseconds since the Unix epoch."""
    return int(time.time() * 1000)


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def format_param(value: Any) -> str:
    """A config value as MLflow shows a parameter: lists comma-separated, booleans lower case."""
    if isinstance(value, (list, tuple)):
        return ",".join(map(format_param, value))
    if isinstance(value, bool):
        return str(value).lower()
    return json.dumps(value) if isinstance(value, dict) else str(value)


# ---------------------------------------------------------------- what `fmnist log` and the studies' --mlflow log


def log_compare(tracker: Tracker, out: str | Path, log: Callable[[str], None] = print) -> str:
    """A compare directory: the parent run (experiment, best grid point, report) and one child per finished run."""
    from fmnist.studies import compare

    out = Path(out)
    experiment = compare.build_experiment(compare.read_experiment(out / "experiment.toml"))
    results = [compare.load_result(run) for run in compare.grid_runs(experiment, out)]
    done = [r for r in results if r.summary or r.failure]
    means = [row["val_acc_mean"] for row in compare.summarize(results, experiment) if row["val_acc_mean"] is not None]
    params = {
        "seeds": list(experiment.seeds),
        "threshold": experiment.threshold,
        **{f"grid.{axis}": [label for label, _ in values] for axis, values in experiment.grid.items()},
        **{f"base.{k}": v for k, v in config_lib.plain(experiment.base).items()},
    }
    metrics = {"runs": len(done), **({"best_val_acc_mean": max(means)} if means else {})}
    files = [out / n for n in ("experiment.toml", "results.md", "results.csv", "runs.csv")]
    parent = tracker.log_parent(out, params=params, metrics=metrics, artifacts=[*files, *sorted(out.glob("*.png"))])
    for r in done:
        tags = {"fmnist.point": r.run.point, "fmnist.seed": r.run.seed}
        tracker.log_run(r.run.run_dir, name=f"{r.run.point} seed{r.run.seed}", parent=parent, tags=tags)
    tracker.end(parent)
    log(f"logged {out} to MLflow at {tracker.uri}: {len(done)} run(s) under run {parent}")
    return parent


def log_tune(tracker: Tracker, study_dir: str | Path, log: Callable[[str], None] = print) -> str:
    """A tune study: the parent run (settings, best value, outputs) and one child per finished trial."""
    from optuna.trial import TrialState

    from fmnist.studies import tune

    study_dir = Path(study_dir)
    settings = tune.load_settings(study_dir)
    trials = tune.load_study(study_dir, log=log).get_trials(deepcopy=False)
    finished = [t for t in trials if t.state in tune.FINISHED and RunDir(study_dir / "trials" / str(t.number)).is_run()]
    complete = [t.value for t in trials if t.state == TrialState.COMPLETE and t.value is not None]
    params = {
        "study_name": settings.name,
        "pruner": settings.pruner,
        "sampler_seed": settings.sampler_seed,
        **{f"base.{k}": v for k, v in settings.base.items()},
    }
    metrics = {"runs": len(finished), **({"best_val_acc": max(complete)} if complete else {})}
    names = ("study.json", "best.toml", "trials.csv", "history.png", "importances.png")
    parent = tracker.log_parent(study_dir, params=params, metrics=metrics, artifacts=[study_dir / n for n in names])
    for t in finished:
        tags = {"optuna.trial": t.number, "optuna.state": t.state.name}
        tracker.log_run(study_dir / "trials" / str(t.number), name=f"trial {t.number}", parent=parent, tags=tags)
    tracker.end(parent)
    log(f"logged {study_dir} to MLflow at {tracker.uri}: {len(finished)} finished trial(s) under run {parent}")
    return parent


def directory_kind(path: str | Path) -> str:
    """ "run", "compare" or "tune": what `fmnist log` finds at `path`; FmnistError for anything else."""
    path = Path(path)
    if RunDir(path).is_run():
        return "run"
    if (path / "experiment.toml").is_file():
        return "compare"
    if (path / "study.json").is_file():  # tune.STUDY_FILE, without importing Optuna for the other kinds
        return "tune"
    raise FmnistError(
        f"{path}: not a run (config.toml), compare (experiment.toml) or tune study (study.json) directory"
    )


def log_directory(tracker: Tracker, path: str | Path, log: Callable[[str], None] = print) -> str:
    """`fmnist log PATH`: a run directory, a compare directory or a tune study directory, whichever PATH is."""
    kind = directory_kind(path)
    if kind == "compare":
        return log_compare(tracker, path, log)
    if kind == "tune":
        return log_tune(tracker, path, log)
    run_id = tracker.log_run(path)
    log(f"logged {path} to MLflow at {tracker.uri}: run {run_id}")
    return run_id
