"""MLflow tracking (fmnist.tracking): train, compare and tune with --mlflow, and `fmnist log`, against a local
SQLite store and a real `mlflow server` on 127.0.0.1; a run logged twice is one MLflow run with each epoch once."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import torch
from support import interrupted_after_first_epoch, write_synthetic

from fmnist import config, data
from fmnist.cli import main

pytestmark = [
    pytest.mark.usefixtures("one_thread"),
    pytest.mark.skipif(importlib.util.find_spec("mlflow") is None, reason='needs pip install "fmnist[mlflow]"'),
]

TINY = ["--hidden", "16", "--epochs", "2", "--batch-size", "64", "--val-size", "200", "--eval-batch-size", "500"]
TINY_SET = ["--set", "hidden=16", "--set", "epochs=1", "--set", "val_size=200", "--set", "eval_batch_size=500"]
SERVER_START_SECONDS = 90


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> Path:
    """The synthetic dataset pointed at for the whole module (the runs are shared by its tests)."""
    root = tmp_path_factory.mktemp("tracking")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(data, "FILES", write_synthetic(root / "synthetic"))
        patch.setenv("FMNIST_DATA_DIR", str(root / "synthetic"))
        patch.setenv("XDG_CACHE_HOME", str(root / "cache"))
        patch.setenv("OMP_NUM_THREADS", str(torch.get_num_threads()))
        patch.chdir(root)  # a SQLite store's artifacts default to ./mlruns
        yield root


@pytest.fixture(scope="module")
def resumed_run(synthetic) -> tuple[Path, str]:
    """A run interrupted after its first epoch and logged (KILLED, one epoch), then resumed by `fmnist train
    --mlflow` to its end; (run directory, the SQLite store's URI)."""
    uri = f"sqlite:///{synthetic / 'mlflow.db'}"
    run = synthetic / "run"
    cfg = config.Config(hidden=(16,), epochs=2, batch_size=64, val_size=200, eval_batch_size=500)
    interrupted_after_first_epoch(cfg, run)
    assert main(["log", str(run), "--mlflow", uri]) == 0
    (only,) = client(uri).search_runs([experiment_id(uri)])
    assert only.info.status == "KILLED" and steps(uri, only.info.run_id, "val_acc") == [1]
    assert main(["train", "--resume", str(run), "--mlflow", uri, "--no-progress"]) == 0
    return run, uri


def client(uri: str):
    from mlflow import MlflowClient  # seconds of imports: only in the tests that log

    return MlflowClient(tracking_uri=uri)


def experiment_id(uri: str, name: str = "fmnist") -> str:
    found = client(uri).get_experiment_by_name(name)
    assert found is not None
    return found.experiment_id


def steps(uri: str, run_id: str, metric: str) -> list[int]:
    return sorted(m.step for m in client(uri).get_metric_history(run_id, metric))


def artifacts(uri: str, run_id: str, folder: str | None = None) -> set[str]:
    return {a.path for a in client(uri).list_artifacts(run_id, folder)}


def check_logged_run(uri: str, run_id: str, run_dir: Path) -> None:
    """The MLflow run holds the run directory: config, every epoch once, the summary, plots and checkpoint."""
    logged = client(uri).get_run(run_id)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert logged.info.status == "FINISHED"
    assert logged.data.params["hidden"] == "16" and logged.data.params["optimizer"] == summary["config"]["optimizer"]
    assert logged.data.metrics["summary.test_accuracy"] == pytest.approx(summary["test_accuracy"])
    assert logged.data.tags["fmnist.chosen_by"] == summary["chosen_by"]
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").open()]
    history = client(uri).get_metric_history(run_id, "val_acc")
    assert sorted((m.step, m.value) for m in history) == [(r["epoch"], pytest.approx(r["val_acc"])) for r in rows]
    assert {"config.toml", "summary.json", "metrics.jsonl", "plots", "checkpoints"} <= artifacts(uri, run_id)
    assert "plots/curves.png" in artifacts(uri, run_id, "plots")
    assert artifacts(uri, run_id, "checkpoints") == {"checkpoints/best.pt"}


@pytest.mark.slow
def test_a_run_logged_interrupted_then_resumed_with_mlflow_then_logged_again_is_one_run(resumed_run):
    run, uri = resumed_run
    (only,) = client(uri).search_runs([experiment_id(uri)])
    check_logged_run(uri, only.info.run_id, run)  # the epoch before the interruption and the one after, once each
    assert main(["log", str(run), "--mlflow", uri]) == 0
    (again,) = client(uri).search_runs([experiment_id(uri)])
    assert again.info.run_id == only.info.run_id and steps(uri, only.info.run_id, "val_acc") == [1, 2]


@pytest.fixture(scope="module")
def mlflow_server(synthetic) -> str:
    """`mlflow server` on a free 127.0.0.1 port with its own SQLite store and proxied artifacts; its URL.
    Killed after the module's tests, with its process group: the uvicorn and job-runner processes it starts
    would otherwise outlive the suite."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    root = synthetic / "server"
    root.mkdir()
    command = [str(Path(sys.executable).parent / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port)]
    command += ["--backend-store-uri", f"sqlite:///{root / 'store.db'}", "--artifacts-destination", str(root / "art")]
    command += ["--workers", "1"]
    log = (root / "server.log").open("w")
    server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + SERVER_START_SECONDS
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            assert server.poll() is None and time.monotonic() < deadline, (root / "server.log").read_text()[-2000:]
            time.sleep(0.2)
        yield url
    finally:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait(10)
        log.close()


@pytest.mark.slow
def test_log_to_a_server_twice_makes_one_run_with_its_artifacts(resumed_run, mlflow_server):
    run, _ = resumed_run
    for _ in range(2):
        assert main(["log", str(run), "--mlflow", mlflow_server, "--mlflow-experiment", "served"]) == 0
    (only,) = client(mlflow_server).search_runs([experiment_id(mlflow_server, "served")])
    check_logged_run(mlflow_server, only.info.run_id, run)
    path = client(mlflow_server).download_artifacts(only.info.run_id, "checkpoints/best.pt", str(run.parent))
    assert Path(path).read_bytes() == (run / "checkpoints" / "best.pt").read_bytes()


@pytest.mark.slow
def test_compare_with_mlflow_nests_its_runs_under_the_experiment_and_a_relog_adds_none(synthetic, resumed_run):
    _, uri = resumed_run  # its store: one SQLite database for the module
    out = synthetic / "grid"
    argv = ["compare", "--out", str(out), "--grid", "lr=0.01,0.03", "--seeds", "0", *TINY_SET]
    assert main([*argv, "--mlflow", uri, "--mlflow-experiment", "grid"]) == 0
    assert main(["log", str(out), "--mlflow", uri, "--mlflow-experiment", "grid"]) == 0
    runs = client(uri).search_runs([experiment_id(uri, "grid")])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 1 and len(children) == 2
    parent = parents[0]
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parent.info.run_id}
    assert {c.data.params["lr"] for c in children} == {"0.01", "0.03"}
    assert parent.data.params["grid.lr"] == "0.01,0.03" and parent.data.metrics["runs"] == 2
    assert {"results.csv", "results.md", "plots"} <= artifacts(uri, parent.info.run_id)
    assert steps(uri, parent.info.run_id, "runs") == [2]  # the relog added no point


@pytest.mark.slow
def test_tune_with_mlflow_logs_the_study_and_its_trials(synthetic, resumed_run):
    _, uri = resumed_run
    study = synthetic / "study"
    argv = ["tune", "--out", str(study), "--trials", "2", "--pruner", "none", "--epochs", "1", "--val-size", "200"]
    assert main([*argv, "--mlflow", uri, "--mlflow-experiment", "tune"]) == 0
    assert main(["log", str(study), "--mlflow", uri, "--mlflow-experiment", "tune"]) == 0
    runs = client(uri).search_runs([experiment_id(uri, "tune")])
    (parent,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    trials = sorted(int(r.data.tags["optuna.trial"]) for r in runs if r is not parent)
    assert trials == [0, 1] and parent.data.params["pruner"] == "none"
    assert {"best.toml", "trials.csv", "study.json"} <= artifacts(uri, parent.info.run_id)


@pytest.fixture
def started_run(tmp_path) -> Path:
    """A run directory as a run holds it before its first epoch: its config alone."""
    (tmp_path / "started").mkdir()
    (tmp_path / "started" / "config.toml").write_text(config.dumps(config.Config()))
    return tmp_path / "started"


def test_without_mlflow_the_flag_is_one_line_naming_the_extra(started_run, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "mlflow", None)  # import mlflow raises ImportError
    assert main(["log", str(started_run), "--mlflow", "sqlite:///x.db"]) == 2
    err = capsys.readouterr().err
    assert 'pip install "fmnist[mlflow]"' in err and err.count("\n") == 1


@pytest.mark.parametrize(
    "argv, message",
    [
        pytest.param(["log", "{run}", "--mlflow", "nope://x"], "MLflow at nope://x: ", marks=pytest.mark.slow),
        (["log", "{run}/..", "--mlflow", "sqlite:///{run}/e.db"], "not a run (config.toml), compare"),
        (["log", "{run}"], "log needs --mlflow URI"),
    ],
)
def test_log_errors_are_one_line(started_run, capsys, argv, message):
    assert main([a.format(run=started_run) for a in argv]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err


def test_the_key_of_a_directory_is_its_resolved_path(tmp_path, monkeypatch):
    from fmnist.tracking import key

    monkeypatch.chdir(tmp_path)
    (tmp_path / "a").mkdir()
    assert key("a") == key(tmp_path / "a") == key(tmp_path / "a" / ".." / "a") != key(tmp_path)
