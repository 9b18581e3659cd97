"""fmnist tune: an Optuna study of training options that maximises validation accuracy.

A study lives in a directory: study.json (its settings), journal.log (the default storage:
Optuna's append-only journal file, which survives a kill -9 and serves several local
processes at once), trials/<number>/ (one run directory per trial; a completed trial keeps
checkpoints/best.pt, a pruned one no weights) and the outputs
best.toml, trials.csv, history.png and importances.png.

Crashed workers: RDB storages (--storage URL) get Optuna's heartbeat, so a trial whose
process stopped beating is failed by a worker after the grace period. Optuna's journal
storage has no heartbeat; there each trial records its host and process id, and a trial
still RUNNING whose process is gone from this host is failed when a worker starts, while
a worker waits for the last trials of its invocation, and when a local worker exits.
The workers of one invocation share its trial budget: a trial lost with a dead worker is
failed and replaced, so the invocation still finishes (completes or prunes) `trials` trials.
"""

from __future__ import annotations

import collections
import csv
import io
import json
import os
import random
import socket
import time
import uuid
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import sqlalchemy.exc
import torch
from matplotlib.ticker import MaxNLocator, PercentFormatter
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

from fmnist import config as config_lib
from fmnist import plots, textfile
from fmnist.atomic import atomic_write
from fmnist.augment import KINDS as AUGMENTATIONS
from fmnist.config import Config
from fmnist.data import FashionMNIST
from fmnist.errors import FmnistError
from fmnist.records import EpochRow
from fmnist.run_dir import RunDir
from fmnist.studies import hparams
from fmnist.studies import workers as workers_lib

STUDY_FILE = "study.json"
JOURNAL_FILE = "journal.log"
PRUNERS = ("median", "hyperband", "none")
HEARTBEAT_SECONDS = 60  # RDB storages: a trial silent for GRACE_FACTOR heartbeats is failed
GRACE_FACTOR = 3
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
POLL_SECONDS = 1.0
# Tries at opening an RDB storage whose tables another process is creating at the same moment; the
# jittered waits between them double from about 0.1 s (about 13 s in all).
OPEN_ATTEMPTS = 8  # how often a worker waiting for its invocation's last trials looks at the storage


@dataclass(frozen=True)
class StudySettings:
    name: str
    storage: str  # an Optuna storage URL; "" = the journal file in the study directory
    base: dict[str, Any]  # config values every trial starts from (epochs and val_size included)
    pruner: str = "median"
    sampler_seed: int = 0
    heartbeat: int = HEARTBEAT_SECONDS  # RDB storages: seconds between a running trial's heartbeats


def search_space(trial: optuna.Trial, base: Config) -> dict[str, Any]:
    """The config values one trial tries; options not drawn here keep the base config's values.

    One lr range for all optimizers keeps the TPE model simple; the lr values that make
    Adam diverge end as pruned trials (see make_objective).
    """
    v: dict[str, Any] = {}
    v["optimizer"] = trial.suggest_categorical("optimizer", ["sgd", "adam", "adamw"])
    v["lr"] = trial.suggest_float("lr", 1e-4, 0.3, log=True)
    if v["optimizer"] == "sgd":
        v["momentum"] = trial.suggest_float("momentum", 0.5, 0.99)
        v["nesterov"] = trial.suggest_categorical("nesterov", [False, True])
    else:
        v["betas"] = (trial.suggest_float("beta1", 0.8, 0.95), trial.suggest_float("beta2", 0.99, 0.9999))
        v["nesterov"] = False
    v["weight_decay"] = trial.suggest_float("weight_decay", 1e-6, 0.1, log=True)
    v["batch_size"] = trial.suggest_categorical("batch_size", [32, 64, 128, 256, 512])
    v["schedule"] = trial.suggest_categorical("schedule", ["none", "step", "cosine", "onecycle"])
    if v["schedule"] == "step":
        v["step_epochs"] = max(1, base.epochs // 3)  # decay by gamma at a third and two thirds of training
    v["warmup_epochs"] = trial.suggest_float("warmup_epochs", 0.0, 0.2 * base.epochs)
    depth = trial.suggest_int("depth", 1, 3)
    if base.model == "cnn":  # channels double per block
        width = trial.suggest_categorical("width", [16, 32, 64])
        v["hidden"] = tuple(width * 2**i for i in range(depth))
    else:
        width = trial.suggest_categorical("width", [128, 256, 512, 1024])
        v["hidden"] = (width,) * depth
    v["dropout"] = trial.suggest_float("dropout", 0.0, 0.5)
    v["batch_norm"] = trial.suggest_categorical("batch_norm", [False, True])
    v["label_smoothing"] = trial.suggest_float("label_smoothing", 0.0, 0.2)
    v["augment"] = tuple(k for k in AUGMENTATIONS if trial.suggest_categorical(f"augment_{k}", [False, True]))
    if v["augment"]:
        v["augment_strength"] = trial.suggest_float("augment_strength", 0.25, 2.0)
    return v


def make_pruner(name: str, epochs: int) -> optuna.pruners.BasePruner:
    if name == "median":
        # Epoch-1 accuracy says little about the end of a schedule: judge from epoch 2, after 5 trials.
        return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=min(2, epochs))
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=epochs, reduction_factor=3)
    if name == "none":
        return optuna.pruners.NopPruner()
    raise FmnistError(f"unknown pruner {name!r}; choose from {', '.join(PRUNERS)}")


def make_objective(
    base: Config, study_dir: str | Path, data: FashionMNIST, invocation: str = ""
) -> Callable[[optuna.Trial], float]:
    """Objective: train the trial's config in study_dir/trials/<number>; its value is the best
    validation accuracy over the epochs, reported per epoch so the pruner can stop it early.
    `invocation` tags the trial as part of one `optimize` call's budget."""
    from fmnist.training import NonFiniteLoss, UntrainableConfig, fit

    def objective(trial: optuna.Trial) -> float:
        trial.set_user_attr("worker", {"host": socket.gethostname(), "pid": os.getpid(), "invocation": invocation})
        cfg = base.replace(**search_space(trial, base))
        trial.set_user_attr("config", config_lib.to_dict(cfg))

        def on_epoch(row: EpochRow) -> None:
            trial.report(row["val_acc"], row["epoch"])
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned after epoch {row['epoch']} at val accuracy {row['val_acc']:.2%}")

        run_dir = Path(study_dir) / "trials" / str(trial.number)
        try:
            result = fit(cfg, run_dir, data, log=lambda _: None, progress=False, on_epoch=on_epoch)
        except UntrainableConfig as e:
            # Refused before any work (batch norm drawn for a training set of one image): pruned
            # like a diverging config, so that the study goes on and the sampler learns from it.
            trial.set_user_attr("untrainable", str(e))
            raise optuna.TrialPruned(f"untrainable: {e}") from None
        except (optuna.TrialPruned, NonFiniteLoss) as e:
            # A trial never resumes and a stopped one is never used: its weights would only fill the disk.
            RunDir(run_dir).drop_checkpoints(keep_best=False)
            if isinstance(e, NonFiniteLoss):
                # A diverging config is a bad one, not a broken worker: pruned trials still
                # teach the TPE sampler where not to look, failed ones do not.
                trial.set_user_attr("diverged", str(e))
                raise optuna.TrialPruned(f"diverged: {e}") from None
            raise
        RunDir(run_dir).drop_checkpoints(keep_best=True)  # `fmnist eval` takes best.pt
        s = result.summary
        assert s is not None  # one process: fit() returns the summary
        trial.set_user_attr(
            "result",
            {
                "test_accuracy": s["test_accuracy"],
                "wall_seconds": s["wall_seconds"],
                "images_per_second": s["train_images_per_second"],
            },
        )
        return s["val_accuracy"]

    return objective


# ---------------------------------------------------------------- storage and study directory


def open_storage(
    settings: StudySettings, study_dir: str | Path, log: Callable[[str], None] = print
) -> optuna.storages.BaseStorage:
    if not settings.storage:
        path = Path(study_dir).resolve() / JOURNAL_FILE
        return optuna.storages.JournalStorage(JournalFileBackend(str(path)))
    grace = GRACE_FACTOR * settings.heartbeat

    def stale(_: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        log(f"trial {trial.number}: no heartbeat for {grace} s; marked FAILED")

    for attempt in range(1, OPEN_ATTEMPTS + 1):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # heartbeat: stable in practice
                return optuna.storages.RDBStorage(
                    settings.storage,
                    engine_kwargs=engine_options(settings.storage),
                    heartbeat_interval=settings.heartbeat,
                    grace_period=grace,
                    heartbeat_stale_trial_callback=stale,
                )
        except Exception as e:  # SQLAlchemy's errors for bad URLs, missing drivers, unreachable servers
            if attempt < OPEN_ATTEMPTS and lost_creation_race(e):
                time.sleep(random.uniform(0.5, 1.5) * 0.05 * 2**attempt)  # jittered: the racers spread out
                continue
            raise FmnistError(
                f"cannot open the Optuna storage {settings.storage!r}: {str(e).splitlines()[0]}"
            ) from None
    raise AssertionError("unreachable: the last attempt returns or raises")


# SQLite: how long a connection waits for another process's write lock before "database is locked"
# (Python's sqlite3 waits 5 s): the processes of a study write a trial's rows at the same moments.
SQLITE_BUSY_SECONDS = 60


def engine_options(url: str) -> dict[str, Any]:
    """SQLAlchemy engine options for an RDB storage URL: SQLite's busy timeout, nothing for the others."""
    return {"connect_args": {"timeout": SQLITE_BUSY_SECONDS}} if url.startswith("sqlite") else {}


def lost_creation_race(error: Exception) -> bool:
    """Whether opening an RDB storage failed because another process created Optuna's tables or
    rows at the same moment. PostgreSQL reports a unique violation (in its own catalog,
    "pg_type_typname_nsp_index", for a table) or a table that already exists (ProgrammingError);
    SQLite reports a table that already exists, or a database locked by the creator
    (OperationalError). Opening again finds them."""
    if isinstance(error, sqlalchemy.exc.IntegrityError):
        return True
    message = str(error)
    return (
        isinstance(error, (sqlalchemy.exc.ProgrammingError, sqlalchemy.exc.OperationalError))
        and "already exists" in message
    ) or (isinstance(error, sqlalchemy.exc.OperationalError) and "database is locked" in message)


def new_settings(
    base: dict[str, Any],
    *,
    name: str,
    storage: str | None = None,
    pruner: str | None = None,
    sampler_seed: int | None = None,
    heartbeat: int | None = None,
) -> StudySettings:
    """Settings of a new study from the config values given explicitly in `base`; val_size 0
    is refused, since the objective is validation accuracy. A setting left None takes its default: a
    journal file in the study directory, the median pruner, sampler seed 0, HEARTBEAT_SECONDS."""
    storage, pruner = storage or "", pruner or "median"
    sampler_seed = sampler_seed or 0
    heartbeat = HEARTBEAT_SECONDS if heartbeat is None else heartbeat
    cfg = config_lib.from_dict(dict(base))
    if not cfg.val_size:
        raise FmnistError("tune maximises validation accuracy: val_size must be > 0")
    make_pruner(pruner, cfg.epochs)
    if heartbeat < 1:
        raise FmnistError(f"heartbeat must be >= 1 second, got {heartbeat}")
    return StudySettings(
        name=name,
        storage=storage,
        base=config_lib.to_dict(cfg),
        pruner=pruner,
        sampler_seed=sampler_seed,
        heartbeat=heartbeat,
    )


def create_study(study_dir: str | Path, settings: StudySettings) -> None:
    """Write study.json and create the study in its storage (or join it, when the storage already has it)."""
    study_dir = Path(study_dir)
    if (study_dir / STUDY_FILE).exists():
        raise FmnistError(f"{study_dir} already holds a study; continue it with --resume {study_dir}")
    study_dir.mkdir(parents=True, exist_ok=True)
    storage = open_storage(settings, study_dir)
    optuna.create_study(study_name=settings.name, storage=storage, direction="maximize", load_if_exists=True)
    atomic_write(study_dir / STUDY_FILE, json.dumps(asdict(settings), indent=2) + "\n")


def check_same_settings(study_dir: str | Path, settings: StudySettings) -> None:
    """Refuse in one line (FmnistError) to continue the study in `study_dir` with other settings than its own."""
    recorded, wanted = asdict(load_settings(study_dir)), asdict(settings)
    old, new = recorded.pop("base"), wanted.pop("base")
    changed = [(k, recorded[k], wanted[k]) for k in wanted if recorded[k] != wanted[k]]
    changed += [(k, old.get(k), new[k]) for k in new if old.get(k) != new[k]]
    if changed:
        k, was, now = changed[0]
        raise FmnistError(
            f"{study_dir} holds a study with {k}={was!r}, this command asks for {now!r}; "
            f"continue it with --resume {study_dir}, or choose another --out"
        )


def load_settings(study_dir: str | Path) -> StudySettings:
    path = Path(study_dir) / STUDY_FILE
    try:
        if not path.exists():
            raise FmnistError(f"{study_dir}: not a study directory (no {STUDY_FILE})")
        return StudySettings(**json.loads(textfile.read(path, "study settings")))
    except (ValueError, TypeError) as e:
        raise FmnistError(f"{path}: unreadable study settings: {e}") from None


def load_study(study_dir: str | Path, log: Callable[[str], None] = print) -> optuna.Study:
    """The study of `study_dir`, after failing its trials orphaned by a dead local worker."""
    settings = load_settings(study_dir)
    storage = open_storage(settings, study_dir, log)
    fail_orphaned_trials(storage, settings.name, log)
    epochs = config_lib.from_dict(settings.base).epochs
    return optuna.load_study(study_name=settings.name, storage=storage, pruner=make_pruner(settings.pruner, epochs))


def fail_orphaned_trials(
    storage: optuna.storages.BaseStorage, study_name: str, log: Callable[[str], None] = print
) -> list[int]:
    """Mark FAILED the RUNNING trials whose worker process, on this host, no longer exists;
    return their numbers. Trials of other hosts are left to the storage's heartbeat."""
    failed = []
    host = socket.gethostname()
    study_id = storage.get_study_id_from_name(study_name)
    for trial in storage.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,)):
        worker = trial.user_attrs.get("worker")
        if not worker or worker["host"] != host or _alive(worker["pid"]):
            continue
        try:
            trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, trial.number)
            if storage.set_trial_state_values(trial_id, TrialState.FAIL):
                failed.append(trial.number)
                log(f"trial {trial.number}: its worker (pid {worker['pid']}) is gone; marked FAILED")
        except optuna.exceptions.UpdateFinishedTrialError:
            pass  # another worker got there first
    return failed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


# ---------------------------------------------------------------- optimising


def check_budget(trials: int, timeout: float | None, workers: int) -> None:
    if trials < 1 or workers < 1:
        raise FmnistError(f"trials and workers must be >= 1, got {trials} and {workers}")
    if timeout is not None and timeout <= 0:
        raise FmnistError(f"timeout must be > 0 seconds, got {timeout}")


def optimize(
    study_dir: str | Path,
    data: FashionMNIST,
    *,
    trials: int,
    timeout: float | None = None,
    workers: int = 1,
    placement: workers_lib.Placement | None = None,
    in_all: bool = False,
    log: Callable[[str], None] = print,
) -> optuna.Study:
    """Finish (complete or prune) `trials` more trials of the study in `study_dir` (fewer if `timeout`
    seconds pass first) with `workers` processes (or those of `placement`, which also gives each its GPU) that
    share its storage and this budget; returns the study.
    `in_all`: until the study holds `trials` finished trials in all, counting every invocation's, on every
    machine (what a restarted job asks for: its earlier starts' trials count)."""
    placement = placement or workers_lib.place(workers, None, [])
    check_budget(trials, timeout, placement.workers)
    study_dir = Path(study_dir)
    load_settings(study_dir)
    left = trials
    if in_all:
        study = load_study(study_dir, log=log)
        left = trials - sum(t.state in FINISHED for t in study.get_trials(deepcopy=False))
        if left <= 0:
            log(f"the study holds {trials - left} finished trials, {trials} asked for in all: none to run")
            return study
    gpus = placement.gpus[:left]
    budget = Budget(uuid.uuid4().hex, trials, None if timeout is None else time.time() + timeout, in_all)
    if len(gpus) == 1:
        _optimize_here(study_dir, data, 0, budget, log)
    else:
        context = torch.multiprocessing.get_context("spawn")
        processes = [
            context.Process(target=_worker, args=(study_dir, data, i, budget, placement.threads, gpu))
            for i, gpu in enumerate(gpus)
        ]
        for p in processes:
            p.start()
        try:
            for p in processes:
                p.join()
        except BaseException:  # Ctrl-C or SIGTERM: stop every worker; the next start fails their trials
            for p in processes:
                p.terminate()
                p.join()
            raise
        for i, p in enumerate(processes):
            if p.exitcode:
                how = f"signal {-p.exitcode}" if p.exitcode < 0 else f"exit status {p.exitcode}"
                log(f"worker {i} (pid {p.pid}) stopped with {how}; the other workers went on")
    return load_study(study_dir, log=log)


@dataclass(frozen=True)
class Budget:
    """The trials one `optimize` call owes, shared by its workers: they are tagged with `invocation`."""

    invocation: str
    trials: int
    deadline: float | None  # time.time() after which no trial starts
    in_all: bool = False  # `trials` counts the study's finished trials, every invocation's

    def counts(self, trial: optuna.trial.FrozenTrial) -> bool:
        return self.in_all or trial.user_attrs.get("worker", {}).get("invocation") == self.invocation


def _worker(study_dir: Path, data: FashionMNIST, index: int, budget: Budget, threads: int, gpu: str | None) -> None:
    workers_lib.enter(threads, gpu)
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # one line per trial comes from describe_trial
    try:
        _optimize_here(study_dir, data, index, budget, lambda msg: print(f"[worker {index}] {msg}", flush=True))
    except KeyboardInterrupt:
        pass  # the parent reports the interruption


def _optimize_here(study_dir: Path, data: FashionMNIST, index: int, budget: Budget, log: Callable[[str], None]) -> None:
    from fmnist.training import inherit_split

    settings = load_settings(study_dir)
    study = load_study(study_dir, log=log)
    study.sampler = TrialSeededSampler(settings.sampler_seed)
    base = inherit_split(config_lib.from_dict(settings.base))  # a fine-tune's split seed, in every trial's record

    def after_trial(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        log(describe_trial(study, trial))
        if not _more_trials(study, settings, budget, log):
            study.stop()

    timeout = None if budget.deadline is None else max(0.0, budget.deadline - time.time())
    study.optimize(make_objective(base, study_dir, data, budget.invocation), timeout=timeout, callbacks=[after_trial])


class TrialSeededSampler(optuna.samplers.BaseSampler):
    """Optuna's TPESampler, seeded for each trial from (`seed`, the trial's number).

    The storage numbers a study's trials uniquely, so no two trials draw the same random numbers,
    whichever worker on whichever machine runs them (a seed per worker, from its local index, would
    repeat on every machine), and a study run by one worker replays exactly.
    """

    def __init__(self, seed: int) -> None:
        self._seed = seed
        self._tpe = optuna.samplers.TPESampler(seed=seed)

    def before_trial(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        seed = int(np.random.SeedSequence([self._seed, trial.number]).generate_state(1)[0])
        self._tpe = optuna.samplers.TPESampler(seed=seed)
        self._tpe.before_trial(study, trial)

    def infer_relative_search_space(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> dict[str, Any]:
        return self._tpe.infer_relative_search_space(study, trial)

    def sample_relative(
        self, study: optuna.Study, trial: optuna.trial.FrozenTrial, search_space: dict[str, Any]
    ) -> dict[str, Any]:
        return self._tpe.sample_relative(study, trial, search_space)

    def sample_independent(
        self,
        study: optuna.Study,
        trial: optuna.trial.FrozenTrial,
        param_name: str,
        param_distribution: optuna.distributions.BaseDistribution,
    ) -> Any:
        return self._tpe.sample_independent(study, trial, param_name, param_distribution)

    def after_trial(
        self, study: optuna.Study, trial: optuna.trial.FrozenTrial, state: TrialState, values: Sequence[float] | None
    ) -> None:
        self._tpe.after_trial(study, trial, state, values)


def _more_trials(study: optuna.Study, settings: StudySettings, budget: Budget, log: Callable[[str], None]) -> bool:
    """Whether this worker should start another trial of the budget. While the budget's finished and
    running trials cover it, wait: a running one may belong to a dead worker, and once the heartbeat
    (RDB) or the process check (this host) fails it, its place is free again."""
    while budget.deadline is None or time.time() < budget.deadline:
        ours = [t for t in study.get_trials(deepcopy=False) if budget.counts(t)]
        finished = sum(t.state in FINISHED for t in ours)
        running = sum(t.state == TrialState.RUNNING for t in ours)
        if finished >= budget.trials:
            return False
        if finished + running < budget.trials:
            return True
        time.sleep(POLL_SECONDS)
        if settings.storage:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                optuna.storages.fail_stale_trials(study)
        else:
            fail_orphaned_trials(study._storage, study.study_name, log)
    return False


def describe_trial(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> str:
    epochs = len(trial.intermediate_values)
    seconds = trial.duration.total_seconds() if trial.duration else 0.0
    text = f"trial {trial.number} {trial.state.name.lower()} after {epochs} epoch(s), {seconds:.0f}s"
    if trial.state == TrialState.COMPLETE:
        text += f": val {trial.value:.2%}"
    elif epochs:
        text += f": val {trial.intermediate_values[max(trial.intermediate_values)]:.2%}"
    if "diverged" in trial.user_attrs:
        text += " (diverged)"
    if "untrainable" in trial.user_attrs:
        text += " (untrainable on this data)"
    try:
        best = study.best_trial
        text += f"  | best: trial {best.number}, val {best.value:.2%}"
    except ValueError:
        pass
    return text


# ---------------------------------------------------------------- outputs


def write_outputs(study: optuna.Study, study_dir: str | Path, log: Callable[[str], None] = print) -> None:
    """best.toml, trials.csv, history.png and (with two or more completed trials) importances.png."""
    study_dir = Path(study_dir)
    trials = study.get_trials(deepcopy=False)
    atomic_write(study_dir / "trials.csv", trials_csv(trials))
    plot_history(trials, study_dir / "history.png")
    hparams.write(study_dir / hparams.DIRECTORY, entries(trials))
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    counts = collections.Counter(t.state.name.lower() for t in trials)
    log(f"study {study.study_name}: {len(trials)} trials ({', '.join(f'{n} {s}' for s, n in counts.items())})")
    if not complete:
        log("no completed trial yet: no best.toml")
        return
    best = study.best_trial
    cfg = config_lib.from_dict(best.user_attrs["config"])
    header = (
        f"# Best of {len(complete)} completed trials of study {study.study_name!r}: trial {best.number},\n"
        f"# validation accuracy {best.value:.2%} (best epoch of {cfg.epochs}, val_size {cfg.val_size}).\n"
        f"# Train it with: fmnist train --config best.toml\n"
    )
    atomic_write(study_dir / "best.toml", header + config_lib.dumps(cfg))
    test = best.user_attrs.get("result", {}).get("test_accuracy")
    aside = f" (test {test:.2%}, not used for the choice)" if test is not None else ""
    log(f"best: trial {best.number}, val {best.value:.2%}{aside}; config in {study_dir / 'best.toml'}")
    if len(complete) < 2:
        log("parameter importances need two or more completed trials: no importances.png yet")
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # few-trial accuracy warnings; the plot title says n
        importances = optuna.importance.get_param_importances(study)
    plot_importances(importances, study_dir / "importances.png", len(complete))


def entries(trials: list[optuna.trial.FrozenTrial]) -> Iterator[tuple[str, dict, dict]]:
    """TensorBoard HParams entries: each finished trial's parameters and state, its validation accuracy
    (a pruned trial's at its last report) and test accuracy where it completed."""
    for t in trials:
        if t.state not in FINISHED or not (t.value is not None or t.intermediate_values):
            continue
        val = t.value if t.value is not None else t.intermediate_values[max(t.intermediate_values)]
        test = t.user_attrs.get("result", {}).get("test_accuracy")
        metrics = {"val_acc": val, **({"test_acc": test} if test is not None else {})}
        yield f"trial{t.number}", {**t.params, "state": t.state.name}, metrics


def trials_csv(trials: list[optuna.trial.FrozenTrial]) -> str:
    params = sorted({name for t in trials for name in t.params})
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["number", "state", "val_acc", "test_acc", "epochs", "seconds", *params])
    for t in trials:
        result = t.user_attrs.get("result", {})
        writer.writerow(
            [
                t.number,
                t.state.name,
                "" if t.value is None else t.value,
                result.get("test_accuracy", ""),
                len(t.intermediate_values),
                f"{t.duration.total_seconds():.1f}" if t.duration else "",
                *(t.params.get(name, "") for name in params),
            ]
        )
    return buffer.getvalue()


def plot_history(trials: list[optuna.trial.FrozenTrial], path: Path) -> None:
    """Validation accuracy per trial (pruned trials at their last report) and the best so far."""
    fig = plots.new_figure(figsize=(8, 4.5))
    ax = fig.subplots()
    complete = sorted((t.number, t.value) for t in trials if t.state == TrialState.COMPLETE and t.value is not None)
    pruned = [t for t in trials if t.state == TrialState.PRUNED and t.intermediate_values]
    if complete:
        numbers, values = zip(*complete, strict=True)
        ax.scatter(numbers, values, s=18, label="completed")
        ax.step(numbers, np.maximum.accumulate(values), where="post", color="tab:red", label="best so far")
    if pruned:
        ax.scatter(
            [t.number for t in pruned],
            [t.intermediate_values[max(t.intermediate_values)] for t in pruned],
            s=18,
            marker="x",
            color="grey",
            label="pruned (last report)",
        )
    ax.set(title=f"Optimization history ({len(trials)} trials)", xlabel="trial", ylabel="validation accuracy")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.yaxis.set_major_formatter(PercentFormatter(xmax=1))
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend()
    plots.save_png(fig, path)


def plot_importances(importances: dict[str, float], path: Path, completed: int) -> None:
    """One horizontal bar per parameter, most important on top."""
    names = list(importances)[::-1]
    fig = plots.new_figure(figsize=(7, 1.2 + 0.28 * len(names)))
    ax = fig.subplots()
    bars = ax.barh(names, [importances[n] for n in names], color="tab:blue")
    ax.bar_label(bars, fmt="{:.2f}", fontsize=8, padding=2)
    ax.set(
        title=f"Parameter importance for validation accuracy ({completed} completed trials)",
        xlabel="importance (PED-ANOVA, sums to 1)",
    )
    ax.margins(x=0.12)  # room for the value labels
    ax.grid(axis="x", alpha=0.3)
    ax.set_axisbelow(True)
    plots.save_png(fig, path)
