"""Every storage fmnist documents for sharing a study, joined by processes released at one instant:
SQLite (`--storage sqlite:///FILE`, each process with its own study directory, as on the machines of a
job array) and the default journal file (`--resume DIR` in several shells at once). PostgreSQL has the
same test against a real server in test_tune_postgres.py. All join, no trial is lost or doubled, and
no two trials draw the same configuration."""

import json
import multiprocessing
import os
import time
import uuid
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

PROCESSES, TRIALS_EACH, ROUNDS = 3, 2, 2

pytestmark = pytest.mark.slow


def stand_in_objective(base, study_dir, data, invocation=""):
    """tune.make_objective without the training: the trial draws its config and records it, tagged as
    the real objective tags it."""
    from fmnist import config as config_lib
    from fmnist.studies import tune

    def objective(trial):
        trial.set_user_attr("worker", {"host": "h", "pid": os.getpid(), "invocation": invocation})
        trial.set_user_attr("config", config_lib.to_dict(base.replace(**tune.search_space(trial, base))))
        return 0.5

    return objective


def one_process(kind: str, targets: list[str], root: str, barrier, results) -> None:
    """One `fmnist tune` process per round, started with the others at the barrier: on SQLite,
    `--out ITS_OWN_DIR --storage URL --study-name shared`; on the journal, `--resume DIR`."""
    import optuna

    from fmnist.studies import tune

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    tune.make_objective = stand_in_objective
    for round_, target in enumerate(targets):
        barrier.wait()
        try:
            if kind == "sqlite":
                study_dir = Path(root) / f"round{round_}" / uuid.uuid4().hex
                settings = tune.new_settings({"epochs": 3, "val_size": 100}, name="shared", storage=target)
                tune.create_study(study_dir, settings)
            else:
                study_dir = Path(target)
            tune._optimize_here(study_dir, None, 0, tune.Budget(uuid.uuid4().hex, TRIALS_EACH, None), lambda _: None)
            results.put((round_, "joined"))
        except Exception as e:  # noqa: BLE001 - the test reports whatever stopped a process
            results.put((round_, f"{type(e).__name__}: {' '.join(str(e).split())[:300]}"))


def targets_of(kind: str, root: Path) -> list[str]:
    """What each round's processes are pointed at: a fresh SQLite file (no tables yet), or a new study
    directory with its journal."""
    from fmnist.studies import tune

    if kind == "sqlite":
        return [f"sqlite:///{root}/round{r}.db" for r in range(ROUNDS)]
    dirs = [root / f"journal{r}" for r in range(ROUNDS)]
    for r, study_dir in enumerate(dirs):
        tune.create_study(study_dir, tune.new_settings({"epochs": 3, "val_size": 100}, name=f"j{r}"))
    return [str(d) for d in dirs]


def trials_of(kind: str, round_: int, target: str) -> list:
    from fmnist.studies import tune

    if kind == "sqlite":
        storage, name = optuna.storages.RDBStorage(target), "shared"
    else:
        storage, name = tune.open_storage(tune.load_settings(target), target), f"j{round_}"
    return storage.get_all_trials(storage.get_study_id_from_name(name))


@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_processes_starting_one_study_at_the_same_instant_all_join_and_none_duplicates_a_trial(tmp_path, kind):
    targets = targets_of(kind, tmp_path)
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(PROCESSES, timeout=60), context.Queue()
    processes = [
        context.Process(target=one_process, args=(kind, targets, str(tmp_path), barrier, results))
        for _ in range(PROCESSES)
    ]
    started = time.monotonic()
    for p in processes:
        p.start()
    try:
        outcomes = [results.get(timeout=120) for _ in range(PROCESSES * ROUNDS)]
    finally:
        for p in processes:
            p.join(timeout=10)
            if p.is_alive():
                p.kill()
    assert time.monotonic() - started < 150
    assert [o for o in outcomes if o[1] != "joined"] == []  # no process lost a race
    for round_, target in enumerate(targets):
        trials = trials_of(kind, round_, target)
        assert sorted(t.number for t in trials) == list(range(PROCESSES * TRIALS_EACH))  # none lost or doubled
        assert all(t.state == TrialState.COMPLETE for t in trials)
        drawn = [json.dumps(t.user_attrs["config"], sort_keys=True) for t in trials]
        assert len(set(drawn)) == len(drawn)  # no two trials drew the same configuration
