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
from support import hparams_sessions

from fmnist import config, training
from fmnist.cli import main
from fmnist.errors import FmnistError
from fmnist.studies import compare

# Tiny runs on the synthetic data: 800 training and 200 validation images, 2 epochs.
TINY = {"hidden": "16", "epochs": "2", "batch_size": "64", "val_size": "200", "eval_batch_size": "500"}
TINY_FLAGS = [arg for k, v in TINY.items() for arg in ("--set", f"{k}={v}")]


pytestmark = pytest.mark.usefixtures("one_thread")


def experiment(**grid):
    return compare.build_experiment(base=TINY, grid=grid, seeds=[0, 1], threshold=0.5)


@pytest.fixture
def fit_calls(monkeypatch):
    """Records (run_dir name, resume) of every fit() call made in this process."""
    calls = []
    real_fit = training.fit

    def counting_fit(cfg, run_dir, data, **kwargs):
        calls.append((f"{Path(run_dir).parent.name}/{Path(run_dir).name}", kwargs["resume"]))
        return real_fit(cfg, run_dir, data, **kwargs)

    monkeypatch.setattr(training, "fit", counting_fit)
    return calls


@pytest.mark.slow
def test_grid_runs_every_point_and_seed_writes_reports_and_skips_finished_runs_on_rerun(
    synthetic_data, tmp_path, fit_calls, record_plots
):
    from fmnist import data

    dataset = data.load()
    exp = experiment(optimizer=["sgd", "adam"], schedule=["none", "cosine"])
    out = tmp_path / "grid"
    results = compare.run_grid(exp, out, dataset, log=lambda _: None)
    assert len(results) == 8 and len(fit_calls) == 8 and all(r.summary for r in results)
    assert sorted(p for p, _, _ in record_plots.requests) == sorted(r.run.run_dir for r in results)
    assert {r.run.run_dir.relative_to(out).as_posix() for r in results} >= {"runs/optimizer=sgd,schedule=cosine/seed1"}

    markdown = compare.write_report(out, exp, results)
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert [r["point"] for r in rows] == [
        "optimizer=sgd,schedule=none",
        "optimizer=sgd,schedule=cosine",
        "optimizer=adam,schedule=none",
        "optimizer=adam,schedule=cosine",
    ]
    assert all(r["runs"] == "2" for r in rows)
    assert len(list(csv.DictReader((out / "runs.csv").open()))) == 8
    assert "| optimizer=adam,schedule=cosine | 2/2 |" in markdown and " ± " in markdown
    assert (out / "results.md").read_text() == markdown
    for name in ("accuracy.png", "curves-optimizer=sgd.png", "curves-optimizer=adam.png", "experiment.toml"):
        assert (out / name).stat().st_size > 0, name
    sessions = hparams_sessions(out / "hparams")  # TensorBoard's HParams view: one session per run
    assert len(sessions) == 8
    options, metrics = sessions["optimizer=adam,schedule=cosine,seed=1"]
    summary = json.loads((out / "runs" / "optimizer=adam,schedule=cosine" / "seed1" / "summary.json").read_text())
    assert options == {"optimizer": "adam", "schedule": "cosine", "seed": 1}
    assert metrics["hparam/test_acc"] == pytest.approx(summary["test_accuracy"])

    stamps = {r.run.run_dir: (r.run.run_dir / "summary.json").stat().st_mtime_ns for r in results}
    fit_calls.clear()
    again = compare.run_grid(exp, out, dataset, log=lambda _: None)
    assert fit_calls == [] and len(record_plots.requests) == 8
    assert {r.run.run_dir: (r.run.run_dir / "summary.json").stat().st_mtime_ns for r in again} == stamps


@pytest.mark.slow
def test_interrupted_grid_trains_only_the_missing_runs(synthetic_data, tmp_path, fit_calls, record_plots):
    from fmnist import data

    dataset = data.load()
    exp = compare.build_experiment(base=TINY, grid={"optimizer": ["sgd", "adam"]}, seeds=[0])
    out = tmp_path / "grid"
    compare.run_grid(exp, out, dataset, log=lambda _: None)
    runs = out / "runs"
    # Killed after its last checkpoint, before summary.json:
    (runs / "optimizer=sgd" / "seed0" / "summary.json").unlink()
    # Killed before its first checkpoint: only config.toml was written.
    started = runs / "optimizer=adam" / "seed0"
    for path in sorted(started.rglob("*"), reverse=True):
        if path.name != "config.toml":
            path.rmdir() if path.is_dir() else path.unlink()
    fit_calls.clear()
    results = compare.run_grid(exp, out, dataset, log=lambda _: None)
    assert sorted(fit_calls) == [("optimizer=adam/seed0", True), ("optimizer=sgd/seed0", True)]
    assert all(r.summary and len(r.history) == 2 for r in results) and len(record_plots.requests) == 4


@pytest.mark.slow
def test_a_changed_experiment_refuses_to_reuse_the_directory(synthetic_data, tmp_path, record_plots):
    from fmnist import data

    out = tmp_path / "grid"
    experiment = compare.build_experiment(base=TINY, seeds=[0])
    compare.run_grid(experiment, out, data.load(), log=lambda _: None)
    longer = compare.build_experiment(base={**TINY, "epochs": "3"}, seeds=[0])
    with pytest.raises(FmnistError, match="epochs=2.*asks for 3"):
        compare.run_grid(longer, out, data.load(), log=lambda _: None)


@pytest.mark.slow
def test_cli_grid_with_two_workers_completes_every_run(synthetic_data, tmp_path, capsys):
    out = tmp_path / "grid"
    code = main(
        [
            "compare",
            "--out",
            str(out),
            "--grid",
            "lr=0.003,0.01",
            "--seeds",
            "0",
            "--threshold",
            "0.3",
            "--workers",
            "2",
            *TINY_FLAGS,
        ]
    )
    stdout, err = capsys.readouterr()
    assert code == 0, err
    finished = sorted(p.parent.name + "/" + p.name for p in out.glob("runs/*/*") if (p / "summary.json").exists())
    assert finished == ["lr=0.003/seed0", "lr=0.01/seed0"]
    assert "| lr=0.01 | 1/1 |" in stdout and (out / "curves.png").exists()


def test_shards_split_the_grid_and_bad_shards_are_one_line(synthetic_data, tmp_path, capsys):
    assert compare.parse_shard("3/4") == compare.Shard(3, 4)
    for text, message in (("4/4", "runs from 0 to N-1"), ("-1/2", "runs from 0 to N-1"), ("1", "expected I/N")):
        with pytest.raises(FmnistError, match=message):
            compare.parse_shard(text)
    code = main(["compare", "--out", str(tmp_path / "out"), *TINY_FLAGS, "--shard", "a/b"])
    assert code == 2 and "--shard: expected I/N" in capsys.readouterr().err


def test_a_claim_is_held_by_one_holder_at_a_time(tmp_path):
    path = tmp_path / "run" / "claim.lock"
    with compare.claimed(path) as first:
        with compare.claimed(path) as second:  # another open file description: as another process
            assert first and not second
    with compare.claimed(path) as again:
        assert again


SHARE = re.compile(r"^\[\d+/\d+\] (\S+ seed\d+): val ", re.MULTILINE)
TIMED = (
    *("seconds_to_threshold", "seconds_to_threshold_mean", "seconds_to_threshold_std", "images_per_second"),
    *("wall_seconds", "run_dir", "epoch_seconds", "ms_per_batch"),
)


def untimed(path: Path) -> list[dict]:
    return [{k: v for k, v in row.items() if k not in TIMED} for row in csv.DictReader(path.open())]


@pytest.mark.slow
def test_four_tasks_sharing_a_directory_one_killed_and_rerun_match_one_machine(
    synthetic_data, tmp_path, capsys, record_plots
):
    from fmnist import data

    grid = ["--grid", "lr=0.003,0.01", "--seeds", "0,1,2,3", "--threshold", "0.3", *TINY_FLAGS]
    grid += ["--set", "epochs=3", "--set", "threads=1"]
    env = dict(os.environ, FMNIST_TEST_FILES=json.dumps(data.FILES), OMP_NUM_THREADS="1", FMNIST_TEST_NO_RUN_PLOTS="1")
    out = tmp_path / "array"
    first_of_last = out / "runs" / "lr=0.003" / "seed3"  # the first run of task 3's share

    def task(index: int, stall: str = "") -> subprocess.Popen:
        argv = [sys.executable, str(Path(__file__).parent / "synthetic_cli.py"), "compare", "--out", str(out)]
        return subprocess.Popen(
            [*argv, *grid, "--shard", f"{index}/4"],
            env={**env, "FMNIST_TEST_STALL": stall},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    # Task 3 stalls once its first run has recorded epoch 1 of 3: killed there, it is killed mid-run.
    tasks = [*(task(i) for i in range(3)), task(3, stall=f"{first_of_last} 1")]
    metrics = first_of_last / "metrics.jsonl"
    deadline = time.monotonic() + 120
    while not (metrics.exists() and metrics.read_text().count("\n") == 1):
        assert time.monotonic() < deadline and tasks[3].poll() is None, tasks[3].communicate()
        time.sleep(0.005)
    tasks[3].send_signal(signal.SIGKILL)
    assert tasks[3].wait() == -signal.SIGKILL
    assert not (first_of_last / "summary.json").exists()  # killed in the middle of a run
    outputs = []
    for t in tasks[:3]:
        stdout, err = t.communicate(timeout=300)
        assert t.returncode == 0, err
        outputs.append(stdout)
    assert not (out / "results.csv").exists()  # task 3's runs are missing: no report yet
    assert any("run(s) of other tasks not finished yet" in o for o in outputs)

    requeued = task(3)
    stdout, err = requeued.communicate(timeout=300)
    assert requeued.returncode == 0, err
    assert "shard 3/4: 2 of them): 0 finished earlier, 1 to resume, 1 to start" in stdout
    trained = [SHARE.findall(o) for o in [*outputs, stdout]]
    assert trained == [[f"lr={lr} seed{i}" for lr in ("0.003", "0.01")] for i in range(4)]  # each run once

    code = main(["compare", "--out", str(tmp_path / "one"), *grid])  # its runs' plots recorded, not drawn
    assert code == 0, capsys.readouterr().err
    assert len(record_plots.requests) == 8
    for name in ("results.csv", "runs.csv"):
        assert untimed(out / name) == untimed(tmp_path / "one" / name), name
    for metrics in out.glob("runs/*/*/metrics.jsonl"):  # every epoch of every run, not only the summaries
        alone = tmp_path / "one" / metrics.relative_to(out)
        rows = [
            [{k: v for k, v in json.loads(line).items() if k not in TIMED} for line in p.open()]
            for p in (metrics, alone)
        ]
        assert rows[0] == rows[1] and len(rows[0]) == 3, metrics


def test_experiment_file_axes_tables_and_list_options(tmp_path):
    path = tmp_path / "exp.toml"
    path.write_text(
        "seeds = [3]\nthreshold = 0.9\n[base]\nepochs = 4\n[grid]\n"
        'optimizer = [{name = "sgd-nesterov", optimizer = "sgd", momentum = 0.9, nesterov = true, lr = 0.05},'
        ' {optimizer = "adamw", weight_decay = 0.05}]\n'
        "hidden = [[256], [512, 512]]\n"
    )
    exp = compare.build_experiment(compare.read_experiment(path), base={"epochs": "5"})
    runs = compare.grid_runs(exp, tmp_path / "out")
    assert [r.point for r in runs] == [
        "optimizer=sgd-nesterov,hidden=256",
        "optimizer=sgd-nesterov,hidden=512-512",
        "optimizer=optimizer=adamw+weight_decay=0.05,hidden=256",
        "optimizer=optimizer=adamw+weight_decay=0.05,hidden=512-512",
    ]
    first = runs[0].config
    assert (first.optimizer, first.momentum, first.nesterov, first.lr, first.hidden) == ("sgd", 0.9, True, 0.05, (256,))
    assert (first.epochs, first.seed, first.val_size, exp.threshold) == (5, 3, config.Config().val_size, 0.9)
    assert runs[0].run_dir == tmp_path / "out" / "runs" / "optimizer=sgd-nesterov,hidden=256" / "seed3"


def test_val_size_zero_is_refused():
    with pytest.raises(FmnistError, match="val_size must be > 0"):
        compare.build_experiment(base={"val_size": "0"})
    with pytest.raises(FmnistError, match="val_size must be > 0"):
        compare.build_experiment(grid={"val_size": ["0", "100"]})


def test_epochs_to_threshold_counts_training_seconds_up_to_the_first_epoch_reaching_it():
    history = [{"epoch": e, "val_acc": a, "epoch_seconds": 2.0} for e, a in ((1, 0.5), (2, 0.9), (3, 0.8))]
    assert compare.epochs_to(history, 0.85) == (2, 4.0)
    assert compare.epochs_to(history, 0.95) is None


def test_summary_rows_give_mean_and_sample_std_over_finished_seeds(tmp_path):
    exp = compare.Experiment(base={}, seeds=(0, 1, 2, 3), threshold=0.85)

    def result(point, seed, test_acc=None, val_accs=(), failure=None):
        run = compare.Run(point, {"lr": point}, seed, config.Config(), tmp_path / point / str(seed))
        history = [{"epoch": e, "val_acc": a, "epoch_seconds": 1.0} for e, a in enumerate(val_accs, 1)]
        summary = (
            None
            if test_acc is None
            else {
                "test_accuracy": test_acc,
                "val_accuracy": max(val_accs),
                "train_images_per_second": 100.0 * (seed + 1),
            }
        )
        return compare.RunResult(run, history, summary, failure)

    rows = compare.summarize(
        [
            result("a", 0, 0.80, (0.70, 0.90)),
            result("a", 1, 0.85, (0.86, 0.80)),
            result("a", 2, 0.90, (0.60, 0.70)),
            result("a", 3, failure="diverged"),
            result("b", 0),
        ],
        exp,
    )
    a, b = rows
    assert a["runs"] == 3 and a["diverged"] == 1 and a["missing"] == 0
    assert a["test_acc_mean"] == pytest.approx(0.85) and a["test_acc_std"] == pytest.approx(0.05)  # sample std
    assert a["val_acc_mean"] == pytest.approx((0.90 + 0.86 + 0.70) / 3)
    assert a["val_acc_last_mean"] == pytest.approx((0.90 + 0.80 + 0.70) / 3)
    assert a["reached_threshold"] == 2 and a["epochs_to_threshold_mean"] == pytest.approx(1.5)
    assert a["images_per_second"] == 200.0
    assert b["runs"] == 0 and b["missing"] == 1 and b["test_acc_mean"] is None and b["test_acc_std"] is None


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--grid", "foo=1,2"], "unknown option 'foo'"),
        (["--grid", "lr=fast,0.1"], "grid axis lr: expected a number, got 'fast'"),
        (["--grid", "optimizer=sgd,rmsprop"], "unknown value 'rmsprop'"),
        (["--grid", "lr"], "expected KEY=VALUE"),
        (["--seeds", "0,x"], "--seeds: expected comma-separated integers"),
        (["--set", "val_size=0"], "val_size must be > 0"),
        (["--grid", "seed=1,2"], "seed cannot be a grid axis"),
        (["--workers", "0"], "workers must be >= 1"),
        (["--preset", "nope"], "unknown preset 'nope'; known: cnn, cnn-best, cnn-fast, mlp-best, mlp-fast"),
    ],
)
def test_cli_errors_are_one_line(synthetic_data, tmp_path, capsys, argv, message):
    code = main(["compare", "--out", str(tmp_path / "out"), *TINY_FLAGS[2:], *argv])
    _, err = capsys.readouterr()
    assert code == 2 and message in err and err.count("\n") == 1, err


def test_presets_load_and_train_takes_them_under_config_and_flags(tmp_path, capsys):
    from fmnist import cli, presets
    from fmnist.cli.train import resolve_train_config  # the train command's module resolves its config

    assert presets.names() == ["cnn", "cnn-best", "cnn-fast", "mlp-best", "mlp-fast"]
    for name in presets.names():
        config.from_dict(presets.load(name))
    (tmp_path / "c.toml").write_text("lr = 0.02\nepochs = 7\n")
    flags = ["train", "--preset", "cnn", "--config", str(tmp_path / "c.toml"), "--epochs", "2"]
    args = cli.build_parser().parse_args(flags)
    cfg, _, _ = resolve_train_config(args)
    assert (cfg.model, cfg.schedule, cfg.lr, cfg.epochs) == ("cnn", "onecycle", 0.02, 2)
    assert main(["train", "--preset", "nope"]) == 2
    assert "unknown preset 'nope'; known: cnn, cnn-best, cnn-fast, mlp-best, mlp-fast" in capsys.readouterr().err


def test_a_preset_that_extends_another_is_its_values_with_the_changes_on_top():
    from fmnist import presets

    cnn, fast = presets.load("cnn"), presets.load("cnn-fast")
    assert "extends" not in fast
    assert fast == {**cnn, "epochs": 15, "val_size": 0} and cnn["epochs"] == 25
