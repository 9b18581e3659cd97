import json

import pytest
import torch

from fmnist import data
from fmnist.cli import main
from fmnist.images import export_png

TRAIN = ["train", "--hidden", "64", "--epochs", "2", "--batch-size", "32", "--no-progress"]


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def trained_run(synthetic_data, tmp_path, capsys):
    run_dir = tmp_path / "run"
    code, out, err = run(capsys, *TRAIN, "--out", str(run_dir))
    assert code == 0, err
    return run_dir, out


def test_eval_finds_the_data_itself_not_at_the_training_machines_path(synthetic_data, tmp_path, capsys):
    import shutil

    there = tmp_path / "training-machine-data"
    shutil.copytree(synthetic_data, there)
    run_dir = tmp_path / "run"
    assert run(capsys, *TRAIN, "--epochs", "1", "--data-dir", str(there), "--out", str(run_dir))[0] == 0
    shutil.rmtree(there)  # the checkpoint moves to a machine without that directory
    code, out, err = run(capsys, "eval", str(run_dir), "--json")
    assert code == 0, err
    assert json.loads(out)["test_accuracy"] == json.loads((run_dir / "summary.json").read_text())["test_accuracy"]


def test_train_prints_epochs_and_summary_and_writes_plots(trained_run):
    run_dir, out = trained_run
    assert out.count("epoch ") >= 2 and "test accuracy" in out and "img/s" in out and "peak memory" in out
    for name in ("curves.png", "confusion_matrix.png", "misclassified.png"):
        assert (run_dir / name).stat().st_size > 0


def test_eval_reproduces_the_reported_accuracy(trained_run, capsys):
    run_dir, _ = trained_run
    summary = json.loads((run_dir / "summary.json").read_text())
    checkpoint = str(run_dir / "checkpoints" / "last.pt")
    code, out, _ = run(capsys, "eval", checkpoint, "--json", "--plots", str(run_dir / "ev"))
    result = json.loads(out)
    assert code == 0 and result["test_accuracy"] == pytest.approx(summary["test_accuracy"], abs=1e-9)
    assert len(result["per_class"]) == 10 and len(result["confusion_matrix"]) == 10
    assert sum(map(sum, result["confusion_matrix"])) == len(data.load().test_labels)
    assert (run_dir / "ev" / "confusion_matrix.png").exists()
    code, out, _ = run(capsys, "eval", str(run_dir))
    assert code == 0 and f"{summary['test_accuracy']:.2%}" in out and "Ankle boot" in out


def test_predict_reports_bad_files_and_keeps_going(trained_run, tmp_path, capsys):
    run_dir, _ = trained_run
    ds = data.load()
    paths = []
    for i in range(10):
        export_png(ds.test_images[i], tmp_path / f"img{i}.png")
        paths.append(str(tmp_path / f"img{i}.png"))
    broken = tmp_path / "broken.png"
    broken.write_text("not an image")
    code, out, _ = run(capsys, "predict", str(run_dir), *paths, str(broken), "--json", "--top-k", "2")
    rows = [json.loads(line) for line in out.splitlines()]
    assert code == 1 and len(rows) == 11
    assert "error" in rows[-1] and rows[-1]["path"] == str(broken)
    good = rows[:-1]
    assert all(len(r["top"]) == 2 and r["class_name"] == data.CLASSES[r["class_index"]] for r in good)
    correct = sum(r["class_index"] == int(ds.test_labels[i]) for i, r in enumerate(good))
    assert correct >= 8


def test_resume_of_a_finished_run_and_conflicting_flags(trained_run, capsys):
    run_dir, _ = trained_run
    code, _, err = run(capsys, "train", "--resume", str(run_dir), "--lr", "0.5")
    assert code == 2 and "lr=0.5 conflicts with the run's lr=0.001" in err
    code, out, _ = run(capsys, "train", "--resume", str(run_dir), "--no-progress")
    assert code == 0 and "test accuracy" in out


def exit_code(argv):
    """main()'s status, also when argparse exits by itself."""
    try:
        return main(argv)
    except SystemExit as e:
        return e.code


NO_SUCH_DEVICE = "tpu" if torch.cuda.is_available() else "cuda"


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "--epochs", "0"], "epochs must be > 0"),
        (["train", "--optimizer", "lion"], "optimizer: unknown value 'lion'"),
        (["train", "--config", "nope.toml"], "nope.toml: config file not found"),
        (["train", "--resume", "."], "not a run directory"),
        (["train", "--frobnicate"], "unrecognized arguments: --frobnicate"),
        (["train", "--device", NO_SUCH_DEVICE], NO_SUCH_DEVICE),
        (["eval", "missing.pt"], "missing.pt: checkpoint not found"),
        (["predict", "missing.pt", "x.png"], "missing.pt: checkpoint not found"),
        (["predict", "missing.pt", "x.png", "--top-k", "0"], "--top-k must be >= 1"),
        (["data", "info", "--data-dir", "empty"], "empty"),
    ],
)
def test_user_mistakes_are_one_line_errors(argv, message, synthetic_data, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "empty").mkdir()
    code = exit_code(argv)
    err = capsys.readouterr().err
    assert code == 2
    assert message in err and len(err.strip().splitlines()) == 1, err


def test_data_commands(synthetic_data, tmp_path, capsys):
    code, out, _ = run(capsys, "data", "info")
    assert code == 0 and "FMNIST_DATA_DIR" in out and "Ankle boot" in out
    code, out, _ = run(capsys, "data", "verify")
    assert code == 0 and out.count("ok ") == 4
    code, out, _ = run(capsys, "data", "show", "--out", str(tmp_path / "grid.png"), "--count", "20")
    assert code == 0 and (tmp_path / "grid.png").stat().st_size > 0


@pytest.mark.parametrize("command", ["train", "bench"])
def test_help_states_each_default_once(capsys, command):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert exit_info.value.code == 0
    assert "(default: None)" not in out and out.count("(default: search, then download)") == 1
    assert "download) (default" not in out
    if command == "train":
        assert out.count("(default: 15)") == 1 and "passes over the training images (default: 15)" in out
    else:
        assert "(default: auto: cuda, then mps, then cpu)" in out
