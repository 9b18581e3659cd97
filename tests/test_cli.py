import json

import pytest
import torch

from fmnist import data
from fmnist.cli import main
from fmnist.images import export_png, load_image

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


def _export_test_images(directory, indices, suffix=".png"):
    ds = data.load()
    directory.mkdir(parents=True, exist_ok=True)
    for i in indices:
        export_png(ds.test_images[i], directory / f"img{i:02d}.png")
        if suffix != ".png":  # the same picture in another format, e.g. a product-style JPEG
            (directory / f"img{i:02d}.png").rename(directory / f"img{i:02d}{suffix}")


def test_predict_directories_globs_batches_and_saved_inputs(trained_run, tmp_path, capsys):
    run_dir, _ = trained_run
    _export_test_images(tmp_path / "a", range(7))
    (tmp_path / "a" / "notes.txt").write_text("not an image, and not picked from a directory")
    _export_test_images(tmp_path / "b", range(3))  # the same names as three files in a/
    saved = tmp_path / "seen"
    # A directory, a glob as a shell that does not expand it would pass it, and a file.
    argv = ["predict", str(run_dir), str(tmp_path / "a"), str(tmp_path / "b" / "img0[01].png"),
            str(tmp_path / "b" / "img02.png"), "--json", "--save-inputs", str(saved)]
    code, out, _ = run(capsys, *argv, "--batch-size", "4")
    rows = [json.loads(line) for line in out.splitlines()]
    expected = [str(tmp_path / "a" / f"img{i:02d}.png") for i in range(7)]
    expected += [str(tmp_path / "b" / f"img{i:02d}.png") for i in range(3)]
    assert code == 0 and [r["path"] for r in rows] == expected
    names = sorted(p.name for p in saved.iterdir())
    assert names == sorted([f"img{i:02d}.png" for i in range(7)] + [f"img{i:02d}-2.png" for i in range(3)])
    for r in rows:  # what the model saw is the converted image, byte for byte
        assert torch.equal(load_image(r["input"]), load_image(r["path"]))
    code, out, _ = run(capsys, *argv, "--batch-size", "256")
    one_batch = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and [r["top"][0][0] for r in one_batch] == [r["top"][0][0] for r in rows]
    assert [r["probability"] for r in one_batch] == pytest.approx([r["probability"] for r in rows], abs=1e-5)


def test_predict_keeps_input_order_around_failures(trained_run, tmp_path, capsys):
    run_dir, _ = trained_run
    _export_test_images(tmp_path, range(2))
    (tmp_path / "img00.png").rename(tmp_path / "a.png")
    (tmp_path / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    (tmp_path / "img01.png").rename(tmp_path / "c.png")
    code, out, _ = run(capsys, "predict", str(run_dir), str(tmp_path), "--batch-size", "2")
    lines = out.splitlines()
    assert code == 1 and len(lines) == 3
    assert lines[0].startswith(f"{tmp_path / 'a.png'}: ") and "error" not in lines[0]
    assert lines[1].startswith(f"{tmp_path / 'b.png'}: error: ")
    assert lines[2].startswith(f"{tmp_path / 'c.png'}: ") and "error" not in lines[2]


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
        (["predict", "missing.pt", "x.png", "--batch-size", "0"], "--batch-size must be >= 1"),
        (["predict", "missing.pt", "empty"], "no image files in empty"),
        (["predict", "missing.pt", "x.png", "--save-inputs", "file.txt"],
         "--save-inputs file.txt: exists and is not a directory"),
        (["data", "info", "--data-dir", "empty"], "empty"),
    ],
)
def test_user_mistakes_are_one_line_errors(argv, message, synthetic_data, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "empty").mkdir()
    (tmp_path / "file.txt").write_text("")
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


def test_predict_marks_non_garments_and_the_threshold_can_be_overridden(tmp_path, capsys):
    from serve_support import mosaic, product_photo, trusted_checkpoint

    model = trusted_checkpoint(tmp_path / "m.pt")
    (tmp_path / "clutter.jpg").write_bytes(mosaic())
    (tmp_path / "shirt.jpg").write_bytes(product_photo("shirt"))
    paths = [str(tmp_path / "clutter.jpg"), str(tmp_path / "shirt.jpg")]
    code, out, err = run(capsys, "predict", str(model), *paths)
    clutter, shirt = out.splitlines()
    assert code == 0 and "NOT A GARMENT" in clutter and "best guess" in clutter and "NOT A GARMENT" not in shirt
    code, out, _ = run(capsys, "predict", str(model), *paths, "--json")
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["garment"] for r in rows] == [False, True] and all(r["calibrated"] for r in rows)
    assert rows[0]["in_distribution_score"] < rows[0]["ood_threshold"] == 0.05
    code, out, _ = run(capsys, "predict", str(model), *paths, "--json", "--ood-threshold", "0")
    assert all(json.loads(line)["garment"] for line in out.splitlines())
    code, out, err = run(capsys, "predict", str(model), *paths, "--ood-threshold", "1.5")
    assert code == 2 and "--ood-threshold must be in [0, 1]" in err and len(err.strip().splitlines()) == 1


def test_predict_says_when_probabilities_are_uncalibrated(tmp_path, capsys):
    from serve_support import product_photo, tiny_checkpoint

    (tmp_path / "shirt.jpg").write_bytes(product_photo("shirt"))
    code, out, _ = run(capsys, "predict", str(tiny_checkpoint(tmp_path / "m.pt")), str(tmp_path / "shirt.jpg"))
    assert code == 0 and out.strip().endswith("[uncalibrated: no temperature fitted]")


def test_eval_reports_calibration_before_and_after_and_the_detector(synthetic_data, tmp_path, capsys):
    from serve_support import trusted_checkpoint

    model = trusted_checkpoint(tmp_path / "m.pt", temperature=3.0)
    code, out, err = run(capsys, "eval", str(model), "--json", "--plots", str(tmp_path / "plots"))
    assert code == 0, err
    figures = json.loads(out)["calibration_and_ood"]
    assert figures["temperature"] == 3.0 and figures["after"]["accuracy"] == figures["before"]["accuracy"]
    assert figures["before"]["nll"] != figures["after"]["nll"]
    assert [row["coverage"] for row in figures["risk_coverage"]][0] == 1.0
    assert (tmp_path / "plots" / "reliability.png").stat().st_size > 5_000
    code, out, _ = run(capsys, "eval", str(model))
    assert "with temperature 3.000" in out and "risk-coverage" in out


def test_train_with_a_validation_split_fits_trust_and_calibrate_needs_one(synthetic_data, tmp_path, capsys,
                                                                         monkeypatch):
    from fmnist import checkpoint, trust

    monkeypatch.setattr(trust.fit_and_store, "__defaults__", (30,))  # 30 reference photos, not 400
    run_dir = tmp_path / "run"
    code, out, err = run(capsys, *TRAIN, "--epochs", "1", "--val-size", "100", "--out", str(run_dir))
    assert code == 0, err
    assert "temperature" in out and checkpoint.load(run_dir)[trust.KEY]["temperature"] > 0
    code, _, err = run(capsys, *TRAIN, "--epochs", "1", "--out", str(tmp_path / "no-val"))
    code, _, err = run(capsys, "calibrate", str(tmp_path / "no-val"))
    assert code == 2 and "without a validation split" in err
