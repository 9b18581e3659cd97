import csv
import socket
import subprocess
import sys

import optuna
import pytest
from optuna.trial import TrialState
from support import hparams_sessions

from fmnist import config
from fmnist.cli import main
from fmnist.studies import tune

# Tiny trials on the synthetic data: 800 training and 200 validation images.
TINY = ["--epochs", "2", "--val-size", "200", "--set", "eval_batch_size=500"]


pytestmark = pytest.mark.usefixtures("one_thread")


def states(study_dir):
    return [t.state for t in tune.load_study(study_dir, log=lambda _: None).trials]


@pytest.mark.slow
def test_study_persists_in_its_journal_resumes_and_writes_a_trainable_best_config(
    synthetic_data, tmp_path, capsys, record_plots
):
    study_dir = tmp_path / "study"
    assert main(["tune", "--out", str(study_dir), "--trials", "2", "--pruner", "none", *TINY]) == 0
    assert (study_dir / "journal.log").stat().st_size > 0
    assert states(study_dir) == [TrialState.COMPLETE] * 2
    first_best = (study_dir / "best.toml").read_text()

    assert main(["tune", "--resume", str(study_dir), "--trials", "1"]) == 0
    out = capsys.readouterr().out
    assert "3 trials (3 complete)" in out and "best: trial" in out
    assert states(study_dir) == [TrialState.COMPLETE] * 3
    rows = list(csv.DictReader((study_dir / "trials.csv").open()))
    study = tune.load_study(study_dir, log=lambda _: None)
    assert [(r["number"], float(r["val_acc"])) for r in rows] == [(str(t.number), t.value) for t in study.trials]
    assert sorted(p.name for p in (study_dir / "trials").iterdir()) == ["0", "1", "2"]
    assert sorted(p.name for p, _, _ in record_plots.requests) == ["0", "1", "2"]  # each trial's run plots
    assert [p.name for p in (study_dir / "trials" / "0" / "checkpoints").iterdir()] == ["best.pt"]
    for name in ("history.png", "importances.png"):
        assert (study_dir / name).stat().st_size > 0
    sessions = hparams_sessions(study_dir / "hparams")  # TensorBoard's HParams view: one session per trial
    assert sorted(sessions) == ["trial0", "trial1", "trial2"]
    options, metrics = sessions["trial2"]
    assert options["optimizer"] == study.trials[2].params["optimizer"] and options["state"] == "COMPLETE"
    assert metrics["hparam/val_acc"] == pytest.approx(study.trials[2].value)

    best = config.resolve(study_dir / "best.toml")
    assert (best.epochs, best.val_size, best.eval_batch_size) == (2, 200, 500)
    assert config.to_dict(best) == study.best_trial.user_attrs["config"]
    assert first_best.startswith("# Best of 2 completed trials")


def test_a_pruner_stops_trials_through_on_epoch(synthetic_data, tmp_path):
    from fmnist import data

    base = config.from_dict({"epochs": 3, "val_size": 200, "eval_batch_size": 500})
    study = optuna.create_study(
        direction="maximize",
        pruner=optuna.pruners.ThresholdPruner(lower=1.01),
        sampler=optuna.samplers.RandomSampler(seed=0),
    )
    study.optimize(tune.make_objective(base, tmp_path, data.load()), n_trials=2)
    assert [t.state for t in study.trials] == [TrialState.PRUNED] * 2
    # Stopped after its first epoch, with that epoch's validation accuracy reported.
    assert all(list(t.intermediate_values) == [1] for t in study.trials)
    assert (tmp_path / "trials" / "0" / "metrics.jsonl").read_text().count("\n") == 1
    assert not (tmp_path / "trials" / "0" / "checkpoints").exists()  # a stopped trial keeps no weights


@pytest.mark.slow
def test_a_trial_this_data_cannot_train_is_pruned_and_the_study_goes_on(synthetic_data, tmp_path, record_plots):
    from fmnist import data

    # one training image: a trial drawing batch norm cannot train, one without it can
    base = config.from_dict({"epochs": 1, "val_size": 30, "train_subset": 1, "hidden": [8], "eval_batch_size": 500})
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0))
    for batch_norm in (True, False):
        study.enqueue_trial({"batch_norm": batch_norm, "depth": 1, "width": 128})
    study.optimize(tune.make_objective(base, tmp_path, data.load()), n_trials=2)
    assert [t.state for t in study.trials] == [TrialState.PRUNED, TrialState.COMPLETE]
    assert "batch norm needs at least 2 images" in study.trials[0].user_attrs["untrainable"]
    assert "(untrainable on this data)" in tune.describe_trial(study, study.trials[0])


def test_search_space_gives_buildable_models_for_mlp_and_cnn():
    import torch

    from fmnist import models

    for model in ("mlp", "cnn"):
        base = config.from_dict({"model": model, "epochs": 5, "val_size": 100, "nesterov": False})
        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
        for _ in range(20):
            trial = study.ask()
            cfg = base.replace(**tune.search_space(trial, base))  # Config validates every value
            assert models.build(cfg).eval()(torch.rand(2, 1, 28, 28)).shape == (2, 10)
            study.tell(trial, 0.5)


@pytest.mark.slow
def test_an_sqlite_storage_takes_the_rdb_path_and_resumes(synthetic_data, tmp_path, capsys, record_plots):
    study_dir, url = tmp_path / "study", f"sqlite:///{tmp_path / 'optuna.db'}"
    assert main(["tune", "--out", str(study_dir), "--storage", url, "--trials", "1", "--pruner", "none", *TINY]) == 0
    assert main(["tune", "--resume", str(study_dir), "--trials", "1"]) == 0
    assert not (study_dir / "journal.log").exists()
    assert isinstance(tune.open_storage(tune.load_settings(study_dir), study_dir), optuna.storages.RDBStorage)
    direct = optuna.load_study(study_name="study", storage=url)  # the database alone holds the trials
    assert [t.state for t in direct.trials] == [TrialState.COMPLETE] * 2 and len(record_plots.requests) == 2


@pytest.mark.slow
def test_two_workers_share_one_study_without_losing_trials(synthetic_data, tmp_path, capsys):
    study_dir = tmp_path / "study"
    assert main(["tune", "--out", str(study_dir), "--trials", "3", "--workers", "2", "--pruner", "none", *TINY]) == 0
    trials = tune.load_study(study_dir, log=lambda _: None).trials
    assert [t.number for t in trials] == [0, 1, 2]
    assert all(t.state == TrialState.COMPLETE for t in trials)
    assert len({t.user_attrs["worker"]["pid"] for t in trials}) == 2


@pytest.mark.slow
def test_a_trial_of_a_dead_worker_is_failed_and_the_study_goes_on(synthetic_data, tmp_path, record_plots):
    from fmnist import data

    study_dir = tmp_path / "study"
    tune.create_study(study_dir, tune.new_settings({"epochs": 1, "val_size": 200}, name="s"))
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    orphan = tune.load_study(study_dir, log=lambda _: None).ask()  # RUNNING, as a kill -9 leaves it
    orphan.set_user_attr("worker", {"host": socket.gethostname(), "pid": dead.pid})
    messages = []
    tune.optimize(study_dir, data.load(), trials=1, log=messages.append)
    assert states(study_dir) == [TrialState.FAIL, TrialState.COMPLETE]
    assert any("trial 0: its worker" in m and "marked FAILED" in m for m in messages)


@pytest.mark.slow
def test_fewer_than_two_completed_trials_write_no_importances(synthetic_data, tmp_path, capsys, record_plots):
    study_dir = tmp_path / "study"
    assert main(["tune", "--out", str(study_dir), "--trials", "1", "--epochs", "1", "--val-size", "200"]) == 0
    assert (study_dir / "best.toml").exists() and (study_dir / "history.png").exists()
    assert not (study_dir / "importances.png").exists()
    assert "need two or more completed trials" in capsys.readouterr().out


@pytest.mark.slow
def test_resume_auto_creates_the_study_then_runs_it_to_its_total_and_refuses_other_settings(
    synthetic_data, tmp_path, capsys, record_plots
):
    study_dir = tmp_path / "study"
    argv = ["tune", "--out", str(study_dir), "--resume", "auto", "--pruner", "none", *TINY]
    assert main([*argv, "--trials", "1"]) == 0  # no study yet: created
    assert main([*argv, "--trials", "2"]) == 0  # the same command restarted: one more, 2 in all
    assert states(study_dir) == [TrialState.COMPLETE] * 2
    assert main([*argv, "--trials", "2"]) == 0  # a restart after the budget is spent runs none
    assert "the study holds 2 finished trials, 2 asked for in all: none to run" in capsys.readouterr().out
    assert states(study_dir) == [TrialState.COMPLETE] * 2 and len(record_plots.requests) == 2
    assert main([*argv[:-1], "eval_batch_size=300", "--trials", "2"]) == 2  # another study
    err = capsys.readouterr().err
    assert f"{study_dir} holds a study with eval_batch_size=500, this command asks for 300" in err
    assert err.count("\n") == 1


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--trials", "1"], "tune needs --out DIR for a new study, --resume auto --out DIR, or --resume DIR"),
        (["--resume", "auto"], "tune needs --out DIR for a new study, --resume auto --out DIR"),
        (["--out", "{tmp}/s", "--workers", "0"], "--workers must be >= 1"),
        (["--out", "{tmp}/s", "--workers-per-device", "2", "--set", "device=cpu"], "--workers-per-device needs a GPU"),
        (["--out", "{tmp}/s", "--val-size", "0"], "val_size must be > 0"),
        (["--out", "{tmp}/s", "--set", "lr=fast"], "lr: expected a number"),
        (["--out", "{tmp}/s", "--storage", "nosuchdb://x"], "cannot open the Optuna storage"),
        (["--resume", "{tmp}/none"], "not a study directory"),
        (["--resume", "{tmp}/s", "--epochs", "3"], "drop --epochs"),
        (["--out", "{tmp}/s", "--trials", "0"], "trials and workers must be >= 1"),
        (["--out", "{tmp}/s", "--timeout", "-1"], "timeout must be > 0"),
    ],
)
def test_cli_errors_are_one_line(tmp_path, capsys, argv, message):
    code = main(["tune", *(a.replace("{tmp}", str(tmp_path)) for a in argv)])
    _, err = capsys.readouterr()
    assert code == 2 and message in err and err.count("\n") == 1, err


def test_an_unknown_pruner_is_a_one_line_usage_error(capsys):
    with pytest.raises(SystemExit) as caught:
        main(["tune", "--out", "s", "--pruner", "sometimes"])
    err = capsys.readouterr().err
    assert caught.value.code == 2 and "invalid choice: 'sometimes'" in err and err.count("\n") == 1


def test_an_existing_study_directory_is_not_overwritten(tmp_path, capsys):
    study_dir = tmp_path / "s"
    tune.create_study(study_dir, tune.new_settings({"epochs": 1}, name="s"))
    assert main(["tune", "--out", str(study_dir), "--epochs", "1"]) == 2
    assert f"continue it with --resume {study_dir}" in capsys.readouterr().err
