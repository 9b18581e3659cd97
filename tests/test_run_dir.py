"""fmnist.run_dir: the run directory's files, named once, written by fit() whoever calls it."""

import pytest
import torch

from fmnist import checkpoint, data, training
from fmnist.config import Config
from fmnist.errors import FmnistError
from fmnist.run_dir import RunDir, model_path


def test_create_writes_the_config_once_and_refuses_a_second_run(tmp_path):
    run = RunDir(tmp_path / "run")
    assert not run.is_run() and run.create(Config(hidden=(8,))) is None
    assert run.is_run() and run.read_config().hidden == (8,)
    problem = run.create(Config(hidden=(16,)))
    assert problem == run.taken() and "already holds a run" in problem and "--resume" in problem
    assert run.read_config().hidden == (8,)  # the first config stays


def test_train_into_a_taken_directory_stops_before_loading_data_or_printing(tmp_path, capsys, monkeypatch):
    from fmnist import cli
    from fmnist.cli import train as train_cli  # the train command's module loads the data

    RunDir(tmp_path / "run").create(Config(hidden=(8,)))
    monkeypatch.setattr(train_cli, "load_data", lambda *a: pytest.fail("the data was loaded before the check"))
    assert cli.main(["train", "--out", str(tmp_path / "run")]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and "already holds a run" in err


def test_a_directory_stands_for_its_best_checkpoint_else_its_last(tmp_path):
    run = RunDir(tmp_path)
    with pytest.raises(FmnistError, match="no checkpoints/best.pt or checkpoints/last.pt"):
        model_path(tmp_path)
    run.record_epoch({"epoch": 1}, [], best=None)
    assert model_path(tmp_path) == run.last and not run.best.exists()
    run.record_epoch({"epoch": 2}, [], best={"epoch": 2})
    assert model_path(tmp_path) == run.best and checkpoint.load(run.best)["epoch"] == 2
    assert model_path(run.last) == run.last  # a file stands for itself


def test_dropping_a_trials_checkpoints_keeps_best_only_when_asked(tmp_path):
    run = RunDir(tmp_path)
    run.record_epoch({"epoch": 1}, [], best={"epoch": 1})
    run.drop_checkpoints(keep_best=True)
    assert run.best.exists() and not run.last.exists()
    run.drop_checkpoints(keep_best=False)
    assert not run.best.parent.exists()


def test_fit_writes_every_file_the_run_directory_names_plots_included(synthetic_data, tmp_path):
    """Before RunDir the plots were written by the CLI, so a run made by fit() directly (as compare
    and tune make theirs) had no curves.png."""
    cfg = Config(hidden=(32,), epochs=2, val_size=100, eval_batch_size=512)
    result = training.fit(cfg, tmp_path / "run", data.load(), log=lambda _: None, progress=False)
    run = RunDir(tmp_path / "run")
    assert run.read_summary() == result.summary
    assert [row["epoch"] for row in run.read_history()] == [1, 2]
    assert run.last.exists() and run.best.exists() and any(run.tensorboard.iterdir())
    for plot in ("curves.png", "confusion_matrix.png"):
        assert (run.path / plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", plot
    chosen = torch.load(run.chosen_checkpoint(), weights_only=True)
    assert chosen["epoch"] == result.summary["chosen_epoch"]
