"""fmnist tune on a real PostgreSQL server: a throwaway cluster (initdb) on a Unix socket in a
temporary directory, removed afterwards. Skips only where no PostgreSQL server is installed."""

import glob
import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from fmnist import data

HERE = Path(__file__).parent

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


def _server_bin() -> Path | None:
    """Debian keeps the server programs in /usr/lib/postgresql/<version>/bin, off the PATH."""
    found = shutil.which("initdb") or max(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"), default=None, key=lambda p: int(Path(p).parts[-3])
    )
    return Path(found).resolve().parent if found else None


@pytest.fixture(scope="module")
def postgres_url():
    bindir = _server_bin()
    if bindir is None:
        pytest.skip(
            "PostgreSQL server not found (no initdb on PATH or in /usr/lib/postgresql/*/bin); "
            "scripts/setup.sh installs Debian's postgresql"
        )
    root = Path(tempfile.mkdtemp(prefix="fmnist-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:  # the server refuses to run as root
        user = pwd.getpwnam("postgres")
        os.chown(root, user.pw_uid, user.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    cluster, port = root / "data", 5432  # no TCP: the port only names the socket file in `root`
    pg_ctl = [*as_user, str(bindir / "pg_ctl"), "-D", str(cluster)]
    try:
        subprocess.run(
            [*as_user, str(bindir / "initdb"), "-D", str(cluster), "-U", "fmnist", "--auth=trust", "--no-sync"],
            check=True,
            capture_output=True,
        )
        subprocess.run(
            [
                *pg_ctl,
                "-l",
                str(root / "server.log"),
                "-w",
                "-o",
                f"-k {root} -p {port} -c listen_addresses='' -c fsync=off",
                "start",
            ],
            check=True,
            capture_output=True,
        )
        yield f"postgresql://fmnist@/postgres?host={root}&port={port}"
    finally:
        subprocess.run([*pg_ctl, "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


def wait_for(condition, seconds, what):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {seconds} s waiting for {what}")


@pytest.mark.slow
def test_a_worker_killed_mid_trial_is_failed_by_heartbeat_and_the_budget_still_finishes(
    synthetic_data, tmp_path, postgres_url
):
    study_dir, trials = tmp_path / "study", 3
    env = {
        **os.environ,
        "FMNIST_TEST_FILES": json.dumps(data.FILES),
        "OMP_NUM_THREADS": "1",
        "FMNIST_TEST_NO_RUN_PLOTS": "1",
    }
    tune = subprocess.Popen(
        [
            sys.executable,
            str(HERE / "synthetic_cli.py"),
            "tune",
            "--out",
            str(study_dir),
            "--storage",
            postgres_url,
            "--study-name",
            "pg",
            "--heartbeat",
            "1",
            "--trials",
            str(trials),
            "--workers",
            "2",
            "--pruner",
            "none",
            "--epochs",
            "4",
            "--val-size",
            "200",
            "--set",
            "eval_batch_size=500",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        storage = optuna.storages.RDBStorage(postgres_url)  # read directly: no orphan check of our own

        def a_trial_in_its_first_epochs():
            try:
                study_id = storage.get_study_id_from_name("pg")
            except KeyError:
                return None
            for t in storage.get_all_trials(study_id, states=(TrialState.RUNNING,)):
                if len(t.intermediate_values) == 1 and "worker" in t.user_attrs:
                    return t
            return None

        victim = wait_for(a_trial_in_its_first_epochs, 120, "a trial to report its first of 4 epochs")
        os.kill(victim.user_attrs["worker"]["pid"], signal.SIGKILL)
        out, _ = tune.communicate(timeout=300)
    finally:
        if tune.poll() is None:
            tune.kill()
            tune.wait()
    assert tune.returncode == 0, out

    final = storage.get_all_trials(storage.get_study_id_from_name("pg"))
    assert [t.number for t in final] == list(range(trials + 1))  # each number once, none skipped
    assert {t.number: t.state for t in final if t.state != TrialState.COMPLETE} == {victim.number: TrialState.FAIL}
    assert f"trial {victim.number}: no heartbeat for 3 s; marked FAILED" in out
    assert "stopped with signal 9; the other workers went on" in out
    summary = next(line for line in out.splitlines() if line.startswith(f"study pg: {trials + 1} trials ("))
    assert f"{trials} complete" in summary and "1 fail" in summary
    assert sorted(int(p.name) for p in (study_dir / "trials").iterdir()) == [t.number for t in final]


MACHINES, ROUNDS, TRIALS_EACH = 4, 4, 2


def stand_in_objective(base, study_dir, data, invocation=""):
    """tune.make_objective without the training: the trial draws its config from the search space
    and records it, tagged as the real objective tags it."""
    from fmnist import config as config_lib
    from fmnist.studies import tune

    def objective(trial):
        trial.set_user_attr("worker", {"host": "machine", "pid": os.getpid(), "invocation": invocation})
        trial.set_user_attr("config", config_lib.to_dict(base.replace(**tune.search_space(trial, base))))
        return 0.5

    return objective


def one_machine(urls: list[str], root: str, barrier, results) -> None:
    """What `fmnist tune --out DIR --storage URL --study-name array --trials 2` does on one machine of a
    job array (each with its own DIR), once per fresh database, started with the others at a barrier."""
    import uuid

    import optuna

    from fmnist.studies import tune

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    tune.make_objective = stand_in_objective
    base = {"epochs": 3, "val_size": 100}
    for round_, url in enumerate(urls):
        study_dir = Path(root) / f"round{round_}" / uuid.uuid4().hex
        settings = tune.new_settings(base, name="array", storage=url)
        barrier.wait()
        try:
            tune.create_study(study_dir, settings)
            budget = tune.Budget(uuid.uuid4().hex, TRIALS_EACH, None)
            tune._optimize_here(study_dir, None, 0, budget, lambda _: None)  # worker 0 on every machine
            results.put((round_, "joined"))
        except Exception as e:  # noqa: BLE001 - the test reports whatever stopped a machine
            results.put((round_, f"{type(e).__name__}: {' '.join(str(e).split())[:300]}"))


@pytest.mark.slow
def test_machines_starting_one_study_at_the_same_instant_all_join_and_draw_distinct_trials(tmp_path, postgres_url):
    import multiprocessing

    import psycopg

    urls = []
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        for round_ in range(ROUNDS):
            conn.execute(f"CREATE DATABASE array{round_}")
            urls.append(postgres_url.replace("/postgres?", f"/array{round_}?"))
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(MACHINES, timeout=60), context.Queue()
    machines = [
        context.Process(target=one_machine, args=(urls, str(tmp_path), barrier, results)) for _ in range(MACHINES)
    ]
    started = time.monotonic()
    for m in machines:
        m.start()
    try:
        outcomes = [results.get(timeout=90) for _ in range(MACHINES * ROUNDS)]
    finally:
        for m in machines:
            m.join(timeout=10)
            if m.is_alive():
                m.kill()
    assert time.monotonic() - started < 120
    assert [o for o in outcomes if o[1] != "joined"] == []  # no machine lost the table-creation race
    for url in urls:
        storage = optuna.storages.RDBStorage(url)
        trials = storage.get_all_trials(storage.get_study_id_from_name("array"))
        assert sorted(t.number for t in trials) == list(range(MACHINES * TRIALS_EACH))  # none lost or doubled
        assert all(t.state == TrialState.COMPLETE for t in trials)
        drawn = [json.dumps(t.user_attrs["config"], sort_keys=True) for t in trials]
        assert len(set(drawn)) == len(drawn)  # no two trials drew the same configuration
        storage.engine.dispose()
