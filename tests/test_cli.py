import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from support import heavy_modules_of, write_synthetic

from fmnist import data
from fmnist.cli import CLOSED_PIPE_STATUS, main
from fmnist.images import export_png, load_image
from fmnist.run_dir import model_path

TRAIN = ["train", "--hidden", "64", "--epochs", "2", "--batch-size", "32", "--val-size", "0", "--no-progress"]


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def trained_once(tmp_path_factory) -> tuple[Path, str]:
    """One run of TRAIN on the synthetic data for the module, and what it printed: trained_run copies it."""
    root = tmp_path_factory.mktemp("trained")
    out, err = io.StringIO(), io.StringIO()
    with pytest.MonkeyPatch.context() as patch:  # what synthetic_data and steady_threads set for one test
        patch.setattr(data, "FILES", write_synthetic(root / "synthetic"))
        patch.setenv("FMNIST_DATA_DIR", str(root / "synthetic"))
        patch.setenv("XDG_CACHE_HOME", str(root / "cache"))
        patch.setenv("OMP_NUM_THREADS", str(torch.get_num_threads()))
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main([*TRAIN, "--out", str(root / "run")])
    assert code == 0, err.getvalue()
    return root / "run", out.getvalue()


@pytest.fixture
def trained_run(synthetic_data, tmp_path, trained_once) -> tuple[Path, str]:
    """A copy of the module's trained run in this test's tmp_path (a test may add to it or resume it), and
    what training printed; the synthetic data is the same, written again for this test."""
    run_dir = tmp_path / "run"
    shutil.copytree(trained_once[0], run_dir)
    return run_dir, trained_once[1]


@pytest.mark.slow
def test_eval_finds_the_data_itself_not_at_the_training_machines_path(synthetic_data, tmp_path, capsys):
    there = tmp_path / "training-machine-data"
    shutil.copytree(synthetic_data, there)
    run_dir = tmp_path / "run"
    assert run(capsys, *TRAIN, "--epochs", "1", "--data-dir", str(there), "--out", str(run_dir))[0] == 0
    shutil.rmtree(there)  # the checkpoint moves to a machine without that directory
    code, out, err = run(capsys, "eval", str(run_dir), "--json")
    assert code == 0, err
    assert json.loads(out)["test_accuracy"] == json.loads((run_dir / "summary.json").read_text())["test_accuracy"]


@pytest.mark.slow
def test_train_prints_epochs_and_summary_and_writes_plots(trained_run):
    run_dir, out = trained_run
    assert out.count("epoch ") >= 2 and "test accuracy" in out and "img/s" in out and "peak memory" in out
    for name in ("curves.png", "confusion_matrix.png", "top_losses.png", "most_confused.png"):
        assert (run_dir / name).stat().st_size > 0


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
def test_predict_directories_globs_batches_and_saved_inputs(trained_run, tmp_path, capsys):
    run_dir, _ = trained_run
    _export_test_images(tmp_path / "a", range(7))
    (tmp_path / "a" / "notes.txt").write_text("not an image, and not picked from a directory")
    _export_test_images(tmp_path / "b", range(3))  # the same names as three files in a/
    saved = tmp_path / "seen"
    # A directory, a glob as a shell that does not expand it would pass it, and a file.
    argv = [
        "predict",
        str(run_dir),
        str(tmp_path / "a"),
        str(tmp_path / "b" / "img0[01].png"),
        str(tmp_path / "b" / "img02.png"),
        "--json",
        "--save-inputs",
        str(saved),
    ]
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
    code, out, _ = run(capsys, *argv[:-3], *argv[-2:])  # as text, each line names the view it saved
    assert code == 0 and [line.split(": ")[0] for line in out.splitlines()] == expected
    assert [line.rsplit("(view ", 1)[1] for line in out.splitlines()] == [f"{r['input']})" for r in rows]


@pytest.mark.slow
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
    assert lines[1].count(str(tmp_path / "b.png")) == 1  # named once, not again inside the message
    assert lines[2].startswith(f"{tmp_path / 'c.png'}: ") and "error" not in lines[2]


@pytest.mark.slow
def test_eval_on_labelled_folders_of_photos_for_a_run_a_checkpoint_and_an_export(trained_run, tmp_path, capsys):
    from support import labelled_folder

    run_dir, _ = trained_run
    photos = tmp_path / "photos"
    good = dict(labelled_folder(photos))
    plots_dir = str(tmp_path / "p")
    code, out, err = run(capsys, "eval", str(run_dir), "--images", str(photos), "--json", "--plots", plots_dir)
    result = json.loads(out)
    assert code == 0 and result["images"] == len(good) and result["data"] == str(photos)
    assert sorted(Path(p.split(": ")[0]).name for p in result["problems"]) == ["cut-short.jpg", "notes.txt"]
    code, out, _ = run(capsys, "eval", str(run_dir), "--images", str(photos))
    left_out = [line for line in out.splitlines() if "cut-short.jpg" in line or "notes.txt" in line]
    assert code == 0 and len(left_out) == 2 and all(line.endswith(", left out") for line in left_out)
    assert sum(sum(row) for row in result["confusion_matrix"]) == len(good)
    for name in ("confusion_matrix.png", "top_losses.png", "most_confused.png", "reliability.png"):
        assert (tmp_path / "p" / name).stat().st_size > 0 and name in err  # written, and said so
    # Framed as predict frames them: predict's answers on the same files give the same accuracy.
    code, out, _ = run(capsys, "predict", str(run_dir), *map(str, good), "--json")
    answers = [json.loads(line) for line in out.splitlines()]
    correct = sum(row["class_index"] == good[Path(row["path"])] for row in answers)
    assert result["accuracy"] == pytest.approx(correct / len(good))
    code, out, _ = run(capsys, "eval", str(run_dir / "checkpoints" / "last.pt"), "--images", str(photos))
    assert code == 0 and f"accuracy {correct / len(good):.2%}" in out and "most confused (true -> predicted)" in out
    assert run(capsys, "export", str(run_dir), "--out", str(tmp_path / "m.onnx"))[0] == 0
    code, out, _ = run(capsys, "eval", str(tmp_path / "m.onnx"), "--images", str(photos), "--json")
    assert code == 0 and json.loads(out)["accuracy"] == pytest.approx(result["accuracy"], abs=1.5 / len(good))


def test_eval_refuses_a_plots_path_that_is_a_file_before_any_work(tmp_path, capsys, monkeypatch):
    from fmnist import inference  # eval imports its loader when it runs

    (tmp_path / "plots").write_text("a file")
    monkeypatch.setattr(inference, "load_predictor", lambda *a: pytest.fail("the model was loaded before the check"))
    code, _, err = run(capsys, "eval", str(tmp_path / "m.pt"), "--plots", str(tmp_path / "plots"))
    assert code == 2 and err.count("\n") == 1 and "--plots" in err and "not a directory" in err
    # A run directory: its confusion_matrix.png and top_losses.png are its own, of its test set, not to be replaced.
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    (tmp_path / "run" / "config.toml").write_text("", encoding="utf-8")
    code, _, err = run(capsys, "eval", str(tmp_path / "m.pt"), "--plots", str(tmp_path / "run"))
    assert code == 2 and err.count("\n") == 1 and "a run directory, whose plots are its own" in err


def test_eval_names_the_accepted_folder_names(tmp_path, capsys):
    from support import tiny_checkpoint

    (tmp_path / "photos" / "hats").mkdir(parents=True)
    code, out, err = run(capsys, "eval", str(tiny_checkpoint(tmp_path / "m.pt")), "--images", str(tmp_path / "photos"))
    assert code == 2 and err.count("\n") == 1 and "hats: folder name is not a class" in err and "Ankle boot" in err


@pytest.mark.slow
def test_predict_explain_writes_a_heatmap_per_image(trained_run, tmp_path, capsys):
    from PIL import Image

    run_dir, _ = trained_run
    _export_test_images(tmp_path / "in", range(3))
    code, out, err = run(
        capsys, "predict", str(run_dir), str(tmp_path / "in"), "--json", "--explain", str(tmp_path / "why")
    )
    rows = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and "integrated gradients" in err
    assert [Path(r["explanation"]).name for r in rows] == ["img00.png", "img01.png", "img02.png"]
    assert all(Image.open(r["explanation"]).size == (224, 224) for r in rows)
    assert run(capsys, "export", str(run_dir), "--out", str(tmp_path / "m.onnx"))[0] == 0
    code, _, err = run(
        capsys, "predict", str(tmp_path / "m.onnx"), str(tmp_path / "in"), "--explain", str(tmp_path / "why-onnx")
    )
    assert code == 0 and "occlusion" in err and len(list((tmp_path / "why-onnx").iterdir())) == 3


@pytest.mark.slow
def test_predict_takes_every_picture_by_content_and_skips_system_files(trained_run, tmp_path, capsys):
    from PIL import Image

    run_dir, _ = trained_run
    ds = data.load()
    photos = tmp_path / "photos"
    photos.mkdir()
    names = ["a.JPG", "b.jfif", "c.jpe", "d"]  # the same JPEG under four names, one without a suffix
    for i, name in enumerate(names):
        Image.fromarray(ds.test_images[i].numpy()).save(photos / name, format="JPEG", quality=95)
    (photos / "._a.JPG").write_bytes(b"\x00\x05\x16\x07" + bytes(80))  # macOS AppleDouble, copied along
    (photos / ".DS_Store").write_bytes(bytes(64))
    (photos / "Thumbs.db").write_bytes(bytes(64))
    code, out, err = run(capsys, "predict", str(run_dir), str(photos), "--json")
    rows = [json.loads(line) for line in out.splitlines()]
    assert code == 0, err
    assert [r["path"] for r in rows] == [str(photos / n) for n in names] and all("error" not in r for r in rows)
    assert err.strip() == "fmnist: skipped 3 files: hidden or system file: 3"
    # A folder of only such files is not "no image files".
    for name in ("a.JPG", "d"):
        (photos / name).unlink()
    code, out, _ = run(capsys, "predict", str(run_dir), str(photos))
    assert code == 0 and len(out.splitlines()) == 2
    # Nothing but what a file manager hides: one line that says so.
    for name in names[1:3]:
        (photos / name).unlink()
    code, _, err = run(capsys, "predict", str(run_dir), str(photos))
    assert code == 2
    assert err.strip() == f"fmnist: error: no image files in {photos} (skipped 3 files: hidden or system file: 3)"


def test_predict_keeps_each_file_on_one_line_and_names_a_folder_that_held_nothing(trained_run, tmp_path, capsys):
    run_dir, _ = trained_run
    _export_test_images(tmp_path / "photos", range(3))
    (tmp_path / "photos" / "img00.png").rename(tmp_path / "photos" / "a\\nb.png")  # a backslash and an n
    (tmp_path / "photos" / "img01.png").rename(tmp_path / "photos" / "new\nline.png")
    (tmp_path / "photos" / "img02.png").rename(tmp_path / "photos" / "t\u2028\x1b[31mred.png")
    (tmp_path / "none").mkdir()
    code, out, err = run(capsys, "predict", str(run_dir), str(tmp_path / "photos"), str(tmp_path / "none"))
    lines = out.splitlines()
    assert code == 0 and len(lines) == 3, out
    assert lines[0].startswith(f"{tmp_path}/photos/a\\\\nb.png: ")
    assert lines[1].startswith(f"{tmp_path}/photos/new\\nline.png: ")
    assert lines[2].startswith(f"{tmp_path}/photos/t\\u2028\\x1b[31mred.png: ")
    assert err.strip() == f"fmnist: no image files in {tmp_path / 'none'}"
    code, out, _ = run(capsys, "predict", str(run_dir), str(tmp_path / "photos"), "--json")
    assert [json.loads(line)["path"] for line in out.splitlines()] == [
        str(tmp_path / "photos" / "a\\nb.png"),
        str(tmp_path / "photos" / "new\nline.png"),
        str(tmp_path / "photos" / "t\u2028\x1b[31mred.png"),
    ]


@pytest.mark.slow
def test_resume_of_a_finished_run_and_conflicting_flags(trained_run, capsys):
    run_dir, _ = trained_run
    code, _, err = run(capsys, "train", "--resume", str(run_dir), "--lr", "0.5")
    assert code == 2 and "lr=0.5 conflicts with the run's lr=0.001" in err
    code, out, _ = run(capsys, "train", "--resume", str(run_dir), "--no-progress")
    assert code == 0 and "test accuracy" in out


@pytest.mark.slow
def test_resume_auto_starts_continues_or_refuses_with_one_command_line(synthetic_data, tmp_path, capsys):
    run_dir = tmp_path / "run"
    argv = [*TRAIN, "--epochs", "1", "--resume", "auto", "--out", str(run_dir)]
    code, out, err = run(capsys, *argv)
    assert code == 0 and "test accuracy" in out and "resuming" not in out, err
    first = (run_dir / "metrics.jsonl").read_text()
    (run_dir / "summary.json").unlink()  # as if killed after its last epoch's checkpoint
    code, out, err = run(capsys, *argv, "--threads", "1")  # runtime options may change
    assert code == 0 and f"resuming {run_dir} after epoch 1" in out, err
    assert (run_dir / "metrics.jsonl").read_text() == first
    code, _, err = run(capsys, *argv, "--lr", "0.5")
    assert code == 2
    assert err.strip() == (
        f"fmnist: error: --resume auto --out {run_dir}: lr=0.5 conflicts with the run's lr=0.001; "
        "start a new run to change it"
    )
    i = argv.index("--batch-size")
    code, _, err = run(capsys, *argv[:i], *argv[i + 2 :])  # a default left out of the command line counts too
    assert code == 2 and "batch_size=" in err and "conflicts with the run's batch_size=32" in err


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
        (["train", "--seed", "-5"], "seed must be >= 0, got -5"),
        (["train", "--split-seed", "-5"], "split_seed must be >= 0, or -1 (--seed, or a fine-tune's parent's); got -5"),
        (["train", "--optimizer", "lion"], "optimizer: unknown value 'lion'"),
        (["train", "--config", "nope.toml"], "nope.toml: config file not found"),
        (["train", "--resume", "."], "not a run directory"),
        (["train", "--resume", "auto"], "--resume auto needs --out DIR"),
        (["train", "--resume", ".", "--out", "x"], "drop --out (or use --resume auto)"),
        (["train", "--frobnicate"], "unrecognized arguments: --frobnicate"),
        (["train", "--device", NO_SUCH_DEVICE], NO_SUCH_DEVICE),
        (["eval", "missing.pt"], "missing.pt: checkpoint not found"),
        (["predict", "missing.pt", "x.png"], "missing.pt: checkpoint not found"),
        (["predict", "missing.pt", "x.png", "--top-k", "0"], "top_k must be >= 1, got 0"),
        (["predict", "missing.pt", "x.png", "--batch-size", "0"], "batch_size must be >= 1, got 0"),
        (["predict", "missing.pt", "empty"], "no image files in empty"),
        (
            ["predict", "missing.pt", "x.png", "--save-inputs", "file.txt"],
            "save_inputs file.txt: exists and is not a directory",
        ),
        (
            ["predict", "missing.pt", "x.png", "--explain", "file.txt/maps"],
            "explain file.txt/maps: file.txt is a file, not a directory",
        ),
        (["data", "info", "--data-dir", "empty"], "empty"),
        (["train", "--ema-decay", "0.99", "--val-size", "0"], "ema_decay decides on the validation split"),
        (["train", "--patience", "3", "--val-size", "0"], "patience decides on the validation split"),
        (["train", "--threads", "many"], "threads must be auto or a positive integer"),
        (["lr-find", "--start-lr", "1", "--end-lr", "0.1", "--val-size", "0"], "lr-find needs 0 < start"),
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


def test_eval_with_flip_tta(trained_run, capsys):
    run_dir, _ = trained_run
    code, out, err = run(capsys, "eval", str(run_dir), "--json", "--tta", "flip")
    assert code == 0, err
    result = json.loads(out)
    plain = json.loads((run_dir / "summary.json").read_text())["test_loss"]
    assert result["tta"] == "flip" and result["test_loss"] != pytest.approx(plain, abs=1e-6)  # mirrors averaged in
    assert result["test_accuracy"] > 0.5


def test_lr_find_prints_a_suggestion_and_plots(synthetic_data, tmp_path, capsys):
    plot = tmp_path / "lr.png"
    code, out, err = run(
        capsys,
        "lr-find",
        "--hidden",
        "32",
        "--batch-size",
        "32",
        "--steps",
        "40",
        "--start-lr",
        "1e-5",
        "--val-size",
        "0",
        "--plot",
        str(plot),
    )
    assert code == 0, err
    assert "suggested lr" in out and plot.stat().st_size > 0
    assert err.count("step ") >= 5


# ---------------------------------------------------------------- output as Unix tools behave


def _with_a_closed_pipe(commands: list[list[str]]) -> list[tuple[int, str]]:
    """(status, stderr) of each command, run at once in child processes whose standard output is a
    pipe that nobody reads any more (`| head -1` once head has exited): the first write fails."""
    read, write = os.pipe()
    os.close(read)
    env = {**os.environ, "FMNIST_TEST_FILES": json.dumps(data.FILES), "OMP_NUM_THREADS": "1"}
    script = str(Path(__file__).parent / "synthetic_cli.py")
    try:
        children = [
            subprocess.Popen([sys.executable, script, *argv], stdout=write, stderr=subprocess.PIPE, text=True, env=env)
            for argv in commands
        ]
    finally:
        os.close(write)
    return [(child.wait(timeout=120), child.stderr.read()) for child in children if child.stderr]


@pytest.mark.slow
def test_every_command_ends_quietly_on_a_closed_pipe(trained_run, tmp_path):
    run_dir, _ = trained_run
    photos = tmp_path / "photos"
    _export_test_images(photos, range(3))
    commands = [
        ["data", "info"],
        ["data", "verify"],
        ["predict", str(run_dir), str(photos)],
        ["eval", str(run_dir)],
        [*TRAIN, "--epochs", "1", "--out", str(tmp_path / "piped")],
        ["--help"],
    ]
    *ours, help_text = _with_a_closed_pipe(commands)
    assert ours == [(CLOSED_PIPE_STATUS, "")] * len(ours)
    assert help_text in [(0, ""), (CLOSED_PIPE_STATUS, "")]  # argparse ignores the error itself


def test_a_whole_pickled_module_gets_plain_whole_sentences_and_a_next_step(tmp_path, capsys):
    path = tmp_path / "model.pth"
    torch.save(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10)), path)  # as tutorials do
    for command in (
        ["eval", str(path)],
        ["predict", str(path), str(path)],
        ["export", str(path), "--out", str(tmp_path / "m.onnx")],
    ):
        code, _, err = run(capsys, *command)
        assert code == 2 and err.count("\n") == 1, err
        assert "\x1b" not in err and "weights_only" not in err and "safe_globals" not in err
        assert err.rstrip().endswith(".") and "torch.save(model)" in err and "fmnist train" in err
        assert "torch.nn.modules.container.Sequential" in err


def test_error_messages_reach_the_terminal_as_one_plain_line(monkeypatch, capsys):
    from fmnist.cli import data as data_cli  # the data command's module owns its handler
    from fmnist.errors import FmnistError, plain

    assert plain("first \x1b[1;31mred\x1b[0m part.\n\tsecond\x07 line\r") == "first red part. second line"

    def relayed(_args):
        raise FmnistError("a library said: \x1b[1mbold\x1b[0m\nand more")

    monkeypatch.setattr(data_cli, "cmd_data", relayed)
    assert main(["data", "info"]) == 2
    assert capsys.readouterr().err == "fmnist: error: a library said: bold and more\n"


def test_the_machines_errors_are_whole_sentences_with_a_next_step(monkeypatch, capsys):
    import errno

    from fmnist.cli import data as data_cli  # the data command's module owns its handler

    def full_disk(_args):
        raise OSError(errno.ENOSPC, "No space left on device", "/runs/r/checkpoints/last.pt")

    monkeypatch.setattr(data_cli, "cmd_data", full_disk)
    assert main(["data", "info"]) == 1
    assert capsys.readouterr().err == (
        "fmnist: error: /runs/r/checkpoints/last.pt: No space left on device. Free some disk space and run the "
        "command again (fmnist train --resume DIR continues a run).\n"
    )


@pytest.mark.slow
def test_predict_into_a_reader_that_stops_early_ends_quietly(tmp_path):
    """`fmnist predict MODEL DIR | head -1`: no "error: Broken pipe", no "Exception ignored", status 141."""
    import os
    import subprocess
    import sys

    from torch import nn

    torch.manual_seed(0)
    stack = nn.Sequential(nn.Linear(784, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 10))
    model = tmp_path / "model.pth"
    torch.save({f"linear_relu_stack.{k}": v for k, v in stack.state_dict().items()}, model)  # PyTorch Quickstart's
    folder = tmp_path / "pictures"
    images = torch.randint(0, 256, (400, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    for i, image in enumerate(images):
        export_png(image, folder / f"{i:04d}.png")  # 400 lines of output: several buffers' worth
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).parents[1] / "src"), OMP_NUM_THREADS="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "fmnist", "predict", str(model), str(folder), "--batch-size", "8"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stdout is not None and proc.stderr is not None
    first = proc.stdout.readline()
    proc.stdout.close()  # what head -1 does after its line
    err = proc.stderr.read()
    assert proc.wait(timeout=120) == 141, err
    assert first.startswith(str(folder / "0000.png") + ": ")
    assert "Broken pipe" not in err and "Exception ignored" not in err and "Traceback" not in err, err


def test_predict_marks_non_garments_and_the_threshold_can_be_overridden(tmp_path, capsys):
    from support import mosaic, product_photo, trusted_checkpoint

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
    from support import product_photo, tiny_checkpoint

    (tmp_path / "shirt.jpg").write_bytes(product_photo("shirt"))
    code, out, _ = run(capsys, "predict", str(tiny_checkpoint(tmp_path / "m.pt")), str(tmp_path / "shirt.jpg"))
    assert code == 0 and out.strip().endswith("[uncalibrated: no temperature fitted]")


def test_eval_reports_calibration_before_and_after_and_the_detector(synthetic_data, tmp_path, capsys):
    from support import trusted_checkpoint

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


@pytest.mark.slow
def test_train_with_a_validation_split_fits_trust_and_calibrate_needs_one(
    synthetic_data, tmp_path, capsys, monkeypatch
):
    from fmnist import checkpoint, trust

    monkeypatch.setattr(trust.fit_and_store, "__defaults__", (30,))  # 30 reference photos, not 400
    run_dir = tmp_path / "run"
    code, out, err = run(capsys, *TRAIN, "--epochs", "1", "--val-size", "100", "--out", str(run_dir))
    assert code == 0, err
    assert "temperature" in out and checkpoint.load(model_path(run_dir))[trust.KEY]["temperature"] > 0
    assert checkpoint.load(model_path(run_dir))[trust.KEY]["gate"] == trust.ood.GATE
    code, _, err = run(capsys, *TRAIN, "--epochs", "1", "--out", str(tmp_path / "no-val"))
    code, _, err = run(capsys, "calibrate", str(tmp_path / "no-val"))
    assert code == 2 and "no validation split on record" in err


def test_the_command_line_imports_no_torch_until_a_command_runs():
    """`fmnist --help` and a usage error answer without torch, matplotlib or the image stack (seconds of imports)."""
    import subprocess
    import sys

    heavy = ("torch", "matplotlib", "PIL", "onnxruntime", "fastapi", "mlflow", "fmnist.trust", "fmnist.inference")
    code = f"import sys, fmnist.cli; print([m for m in {heavy!r} if m in sys.modules])"
    shown = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert shown.strip() == "[]"


def test_data_info_reads_the_dataset_without_torch(real_data_dir):
    """`fmnist data info` counts the classes with numpy: torch's seconds of imports are not part of its wait."""
    loaded, out = heavy_modules_of("data", "info", "--data-dir", str(real_data_dir))
    assert loaded == [] and "train      60,000 images (28, 28) uint8" in out
    assert [int(line.split()[-2]) for line in out.splitlines()[4:]] == [6000] * 10


def test_the_ood_threshold_help_states_the_keep_level_the_detector_is_fitted_with():
    from fmnist.cli.common import OOD_THRESHOLD_DEFAULT
    from fmnist.trust import ood

    assert f"keeps {ood.KEEP:.1%}%" in OOD_THRESHOLD_DEFAULT  # argparse shows %% as %
