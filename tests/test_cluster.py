"""The cluster recipes of examples/cluster/ run as their schedulers would run them: the SLURM scripts with bash
and the variables SLURM sets stubbed, the Kubernetes Indexed Job's command with JOB_COMPLETION_INDEX set
for each of its indexes; `srun` is a pass-through and `fmnist` the CLI on the synthetic data."""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support import ROOT

from fmnist import data

RECIPES = ROOT / "examples" / "cluster"
TINY = ["--set", "hidden=16", "--set", "epochs=1", "--set", "val_size=200", "--set", "eval_batch_size=500"]


@pytest.fixture
def scheduler_env(synthetic_data, tmp_path) -> dict[str, str]:
    """The environment of a task: `fmnist` runs the CLI on the synthetic data, `srun` runs its command."""
    shims = tmp_path / "bin"
    shims.mkdir()
    (shims / "fmnist").write_text(f'#!/bin/sh\nexec "{sys.executable}" "{ROOT / "tests" / "synthetic_cli.py"}" "$@"\n')
    (shims / "srun").write_text('#!/bin/sh\nexec "$@"\n')
    for shim in shims.iterdir():
        shim.chmod(0o755)
    return dict(
        os.environ,
        PATH=f"{shims}:{os.environ['PATH']}",
        PYTHONPATH=str(ROOT / "src"),
        FMNIST_TEST_FILES=json.dumps(data.FILES),
        OMP_NUM_THREADS="1",
        FMNIST_TEST_NO_RUN_PLOTS="1",
    )


def sbatch_options(script: Path) -> list[str]:
    return re.findall(r"^#SBATCH (\S+)", script.read_text(), flags=re.MULTILINE)


def finished_runs(out: Path) -> list[str]:
    return sorted(f"{p.parent.parent.name}/{p.parent.name}" for p in out.glob("runs/*/*/summary.json"))


def experiment(tmp_path: Path) -> Path:
    path = tmp_path / "experiment.toml"
    path.write_text('seeds = [0, 1]\n[grid]\noptimizer = ["sgd", "adam"]\n')
    return path


@pytest.mark.slow
def test_the_slurm_array_script_splits_the_grid_over_its_tasks(scheduler_env, tmp_path):
    """2 tasks of the array at once (the test stubs SLURM_ARRAY_TASK_COUNT=2): each of the 4 runs once."""
    script = RECIPES / "compare-array.sbatch"
    assert {"--array=0-3", "--requeue"} <= set(sbatch_options(script))
    out = tmp_path / "out"
    tasks = [
        subprocess.Popen(
            ["bash", str(script), str(experiment(tmp_path)), str(out), *TINY],
            env={**scheduler_env, "SLURM_ARRAY_TASK_ID": str(i), "SLURM_ARRAY_TASK_COUNT": "2"},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    outputs = [t.communicate(timeout=120) for t in tasks]
    assert [t.returncode for t in tasks] == [0, 0], outputs
    assert all("shard" in o and "2 of them" in o for o, _ in outputs)
    assert finished_runs(out) == [f"optimizer={o}/seed{s}" for o in ("adam", "sgd") for s in (0, 1)]
    assert len(list(csv.DictReader((out / "runs.csv").open()))) == 4  # the last task wrote the report


@pytest.mark.slow
def test_the_requeued_slurm_train_script_continues_its_killed_run(scheduler_env, tmp_path):
    """The same script started again after a SIGKILL (what --requeue does after preemption) finishes the run."""
    script = RECIPES / "train-requeue.sbatch"
    assert "--requeue" in sbatch_options(script)
    out = tmp_path / "run"
    argv = ["bash", str(script), str(out), "--hidden", "16", "--epochs", "40", "--val-size", "200"]
    argv += ["--batch-size", "500", "--eval-batch-size", "500", "--threads", "1"]
    first = subprocess.Popen(
        argv, env=scheduler_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    metrics = out / "metrics.jsonl"
    deadline = time.monotonic() + 60
    while not (metrics.exists() and metrics.read_text().count("\n") >= 2):
        assert time.monotonic() < deadline and first.poll() is None, first.communicate()
        time.sleep(0.005)
    os.killpg(first.pid, signal.SIGKILL)  # the job's processes, as preemption kills them: bash, then fmnist
    first.communicate()
    assert not (out / "summary.json").exists()
    done = len(metrics.read_text().splitlines())
    again = subprocess.run(argv, env=scheduler_env, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    rows = [json.loads(line) for line in metrics.open()]
    assert [r["epoch"] for r in rows] == list(range(1, 41)) and done < 40
    assert (out / "summary.json").exists()


@pytest.mark.slow
def test_the_kubernetes_indexed_job_splits_the_grid_and_the_server_is_probed_on_healthz(scheduler_env, tmp_path):
    yaml = pytest.importorskip("yaml")
    documents = list(yaml.safe_load_all((RECIPES / "compare-indexed-job.yaml").read_text()))
    (job,) = [d for d in documents if d["kind"] == "Job"]
    (deployment,) = [d for d in documents if d["kind"] == "Deployment"]
    spec = job["spec"]
    assert spec["completionMode"] == "Indexed" and spec["completions"] == 4
    (container,) = spec["template"]["spec"]["containers"]
    shell, flag, command = container["command"]
    assert (shell, flag) == ("sh", "-c")
    assert command == 'fmnist compare "$EXPERIMENT" --out "$OUT" --shard "$JOB_COMPLETION_INDEX/$SHARDS"'
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["SHARDS"] == str(spec["completions"])

    # Every index of the Job at once, the volumes' paths stubbed by local directories.
    out = tmp_path / "out"
    local = {**env, "EXPERIMENT": str(experiment(tmp_path)), "OUT": str(out)}
    pods = [
        subprocess.Popen(
            [shell, flag, f"{command} {' '.join(TINY)}"],
            env={**scheduler_env, **local, "JOB_COMPLETION_INDEX": str(i)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(spec["completions"])
    ]
    outputs = [p.communicate(timeout=120) for p in pods]
    assert [p.returncode for p in pods] == [0] * 4, outputs
    assert finished_runs(out) == [f"optimizer={o}/seed{s}" for o in ("adam", "sgd") for s in (0, 1)]
    assert (out / "results.csv").exists()

    (server,) = deployment["spec"]["template"]["spec"]["containers"]
    port = server["ports"][0]["containerPort"]
    assert server["command"][:2] == ["fmnist", "serve"] and server["command"][-2:] == ["--port", str(port)]
    for probe in ("readinessProbe", "livenessProbe"):
        assert server[probe]["httpGet"] == {"path": "/healthz", "port": port}
