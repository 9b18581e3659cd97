"""The Python API (fmnist.api): the lines docs/PYTHON.md shows, on the small synthetic data, answering as the
CLI answers, silent unless asked, failing with the CLI's messages."""

from __future__ import annotations

import json
import subprocess
import sys
import tracemalloc

import numpy as np
import pytest
import torch
from PIL import Image
from support import ROOT, mosaic, product_photo, trusted_checkpoint, write_synthetic

import fmnist
from fmnist import data
from fmnist.cli import main
from fmnist.errors import FmnistError, plain
from fmnist.images import export_png
from fmnist.inference import probabilities

SMALL = dict(hidden=(64,), epochs=2, batch_size=32, eval_batch_size=256, val_size=0)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One run on the synthetic data, shared by this module's tests; the data stays pointed at while they run."""
    root = tmp_path_factory.mktemp("api")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(data, "FILES", write_synthetic(root / "synthetic"))
        patch.setenv("FMNIST_DATA_DIR", str(root / "synthetic"))
        patch.setenv("XDG_CACHE_HOME", str(root / "cache"))
        patch.setenv("OMP_NUM_THREADS", str(torch.get_num_threads()))
        yield fmnist.train(out=root / "run", **SMALL)


@pytest.fixture(scope="module")
def picture(trained) -> torch.Tensor:
    """A test image the run classifies, uint8 [28, 28], its noisy border made black: the dataset's own format,
    which every form of input takes as it is."""
    image = torch.zeros(28, 28, dtype=torch.uint8)
    image[2:26, 2:26] = data.load().test_images[0][2:26, 2:26]
    return image


def test_train_returns_the_run_as_written(trained):
    run = trained
    assert run.summary == json.loads((run.path / "summary.json").read_text())
    rows = [json.loads(line) for line in (run.path / "metrics.jsonl").read_text().splitlines()]
    assert run.metrics == rows and [r["epoch"] for r in run.metrics] == [1, 2]
    assert run.summary["test_accuracy"] > 0.9  # the synthetic classes are easy
    assert f"'{run.path}'" in repr(run) and f"{run.summary['test_accuracy']:.2%}" in repr(run)


def test_predict_takes_a_path_a_pil_image_an_array_and_a_tensor_alike(trained, picture, tmp_path):
    model = fmnist.load(trained.path)
    path = tmp_path / "image.png"
    export_png(picture, path)
    channel = picture.numpy()[..., None]  # [H, W, 1] and [1, H, W]: one channel, grey
    answers = model.predict([str(path), Image.open(path), picture.numpy(), picture, channel, picture[None, None][0]])
    assert len(answers) == 6 and all(isinstance(a, fmnist.Answer) for a in answers)
    assert len({json.dumps(a.as_dict()) for a in answers}) == 1  # one picture given six ways, one answer
    expected = probabilities(model.predictor, picture[None])[0]
    first = answers[0]
    assert first.class_index == int(expected.argmax()) and first.class_name == data.CLASSES[first.class_index]
    assert first.probability == pytest.approx(float(expected.max()))
    assert [p for _, p in first.top] == sorted((p for _, p in first.top), reverse=True) and len(first.top) == 3
    assert first.garment and first.in_distribution_score is None and not first.calibrated  # trained without val
    assert first.image.shape == (28, 28) and first.image.dtype == np.uint8


def test_predict_answers_as_fmnist_predict_json(trained, tmp_path, capsys):
    paths = [tmp_path / "trouser.jpg", tmp_path / "shirt.png"]
    paths[0].write_bytes(product_photo("trouser"))
    paths[1].write_bytes(product_photo("shirt", fmt="PNG"))
    answers = fmnist.load(trained.path).predict(paths, top_k=2)
    assert main(["predict", str(trained.path), *map(str, paths), "--json", "--top-k", "2"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [{"path": str(p), **a.as_dict()} for p, a in zip(paths, answers, strict=True)] == rows


def test_a_uint8_batch_gives_one_answer_per_image(trained):
    images = data.load().test_images[:5].clone()
    # A dark border, as the dataset's own images have, so that each is taken as it is (the synthetic
    # images' noisy border would make them photos, framed and turned upright first).
    images[:, :3], images[:, -3:], images[:, :, :3], images[:, :, -3:] = 0, 0, 0, 0
    answers = fmnist.load(trained.path).predict(images)
    expected = fmnist.load(trained.path).predictor.logits(images).argmax(1).tolist()
    assert [a.class_index for a in answers] == expected


def test_calibrated_answers_and_the_non_garment_verdict(tmp_path):
    model = fmnist.load(trusted_checkpoint(tmp_path / "model.pt"))
    garment, clutter = model.predict([product_photo("trouser"), mosaic()])
    assert garment.calibrated and clutter.calibrated
    assert garment.in_distribution_score is not None and clutter.in_distribution_score is not None
    assert not clutter.garment and "NOT A GARMENT" in str(clutter)


def test_evaluate_the_test_set_and_labelled_folders(trained, tmp_path):
    from support import labelled_folder

    model = fmnist.load(trained.path)
    report = model.evaluate()
    assert report.accuracy == pytest.approx(trained.summary["test_accuracy"], abs=1e-6)
    assert report.confusion.shape == (10, 10) and report.confusion.sum() == 300
    assert report.accuracy == pytest.approx(np.trace(report.confusion) / 300)
    assert [row["class"] for row in report.per_class] == list(data.CLASSES)
    assert 0 <= report.ece <= 1 and report.as_dict()["test_accuracy"] == report.accuracy
    assert f"{report.accuracy:.2%}" in repr(report) and str(report).startswith("test set: accuracy")

    good = labelled_folder(tmp_path / "photos")
    folders = model.evaluate(images=tmp_path / "photos")
    assert folders.confusion.sum() == len(good) and folders.report.problems  # the truncated JPEG is named


def test_explain_gives_the_heatmap_and_its_method(trained, picture):
    explained = fmnist.load(trained.path).explain(picture)
    assert explained.heatmap.shape == (28, 28) and explained.heatmap.dtype == np.float32
    assert "integrated gradients" in explained.method and explained.class_name in data.CLASSES
    assert explained.png().startswith(b"\x89PNG") and np.abs(explained.heatmap).sum() > 0
    against = fmnist.load(trained.path).explain(picture, target="Bag")
    assert against.class_name == "Bag" and not np.array_equal(against.heatmap, explained.heatmap)


@pytest.mark.slow
def test_export_int8_and_load_the_export(trained, picture, tmp_path):
    model = fmnist.load(trained.path)
    facts = model.export(tmp_path / "m.onnx", int8=True, calibration_images=100)
    assert facts["precision"] == "int8" and (tmp_path / "m.onnx").exists() and (tmp_path / "m.json").exists()
    exported = fmnist.load(tmp_path / "m.onnx")
    assert exported.predict(picture)[0].class_index == model.predict(picture)[0].class_index
    assert "occlusion" in exported.explain(picture).method
    with pytest.raises(FmnistError, match="already an export"):
        exported.export(tmp_path / "again.onnx")


def test_library_calls_print_nothing_unless_asked(trained, picture, tmp_path, capfd):
    capfd.readouterr()
    run = fmnist.train(out=tmp_path / "quiet", **{**SMALL, "epochs": 1})
    model = fmnist.load(run.path)
    model.predict(picture)
    model.evaluate()
    model.explain(picture)
    assert capfd.readouterr() == ("", "")
    fmnist.train(out=tmp_path / "loud", progress=True, **{**SMALL, "epochs": 1})
    assert "epoch   1/1" in capfd.readouterr().out


def _cli_error(argv: list[str], capsys) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("fmnist: error: ")
    return err.removeprefix("fmnist: error: ").rstrip("\n")


def test_errors_are_fmnist_errors_with_the_cli_message(trained, tmp_path, capsys):
    cases = [
        (lambda: fmnist.load(tmp_path / "missing.pt"), ["eval", str(tmp_path / "missing.pt")]),
        (lambda: fmnist.train(out=trained.path), ["train", "--out", str(trained.path)]),
        (lambda: fmnist.train(preset="nope"), ["train", "--preset", "nope"]),
        (lambda: fmnist.train(lr=-1), ["train", "--lr", "-1"]),
        (
            lambda: fmnist.load(trained.path).evaluate(images=tmp_path / "none"),
            ["eval", str(trained.path), "--images", str(tmp_path / "none")],
        ),
    ]
    for call, argv in cases:
        with pytest.raises(FmnistError) as raised:
            call()
        assert plain(str(raised.value)) == _cli_error(argv, capsys)


def test_bad_pictures_and_options_are_fmnist_errors(trained, picture, tmp_path):
    model = fmnist.load(trained.path)
    with pytest.raises(FmnistError, match=r"image 1: float32 pixels; give uint8"):
        model.predict([picture, picture.float().numpy()])
    with pytest.raises(FmnistError, match=r"image 0: shape \(2, 3, 5, 5\) is not an image"):
        model.predict([np.zeros((2, 3, 5, 5), np.uint8)])
    with pytest.raises(FmnistError, match="no such file"):
        model.predict(tmp_path / "missing.jpg")
    with pytest.raises(FmnistError, match="image 0: dict is not a picture"):
        model.predict([{}])  # type: ignore[list-item]
    for empty in (np.zeros((0, 0), np.uint8), np.zeros((0, 28), np.uint8), torch.zeros(3, 28, 0, dtype=torch.uint8)):
        with pytest.raises(FmnistError, match=r"image 0: an empty picture \(\d+x\d+ pixels\)"):
            model.predict(empty)
    with pytest.raises(FmnistError, match=r"image: an empty picture \(0x0 pixels\)"):
        model.explain(np.zeros((0, 0), np.uint8))
    # Too many pixels is said before any copy of them: a 64 M-pixel view of one byte, and a tensor with no data at all
    # (on the meta device, where a copy fails).
    one_byte = np.broadcast_to(np.uint8(0), (8000, 8000, 3))
    for huge in (one_byte, torch.empty(3, 8000, 8000, dtype=torch.uint8, device="meta")):
        tracemalloc.start()
        with pytest.raises(FmnistError, match=r"image 0: 8000x8000 = 64,000,000 pixels, more than the 50,000,000"):
            model.predict(huge)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert peak < 8_000_000, peak
    with pytest.raises(FmnistError, match="unknown device 'tpu'; choose auto, cuda, mps or cpu"):
        fmnist.load(trained.path, device="tpu")
    for bad in (0, 2.5, "3", True):  # a wrong type too is one line, not a TypeError from inside
        with pytest.raises(FmnistError, match="top_k must be a whole number >= 1"):
            model.predict(picture, top_k=bad)
    assert len(model.predict(picture, top_k=np.int64(2), ood_threshold=np.float32(0.5))[0].top) == 2  # numpy's too
    with pytest.raises(FmnistError, match="batch_size must be a whole number >= 1, got None"):
        model.predict(picture, batch_size=None)  # type: ignore[arg-type]
    for bad in (1.5, "0.5"):  # the argument's name, not a flag
        with pytest.raises(FmnistError, match=r"^ood_threshold must be in \[0, 1\]"):
            model.predict(picture, ood_threshold=bad)
    with pytest.raises(FmnistError, match="path: expected a run directory or model file, got NoneType"):
        fmnist.load(None)  # type: ignore[arg-type]
    with pytest.raises(FmnistError, match="images: expected a folder of class folders, got int"):
        model.evaluate(123)  # type: ignore[arg-type]
    with pytest.raises(FmnistError, match="calibration_images must be a whole number >= 1, got '100'"):
        model.export(tmp_path / "m.onnx", int8=True, calibration_images="100")  # type: ignore[arg-type]
    truncated = tmp_path / "truncated.png"
    export_png(torch.randint(0, 256, (200, 200), dtype=torch.uint8), truncated)
    truncated.write_bytes(truncated.read_bytes()[:3000])
    with pytest.raises(FmnistError, match="image 0: image is truncated or corrupt"):
        model.predict(Image.open(truncated))  # opened lazily: its pixels are read by predict
    with pytest.raises(FmnistError, match="unknown class 'Hat'"):
        model.explain(picture, target="Hat")


def test_import_fmnist_stays_cheap_and_fmnist_train_is_the_api():
    code = (
        "import sys, fmnist\n"
        "assert 'torch' not in sys.modules, 'import fmnist imported torch'\n"
        "assert issubclass(fmnist.FmnistError, Exception) and 'torch' not in sys.modules\n"
        "from fmnist import training\n"  # the training loop's module does not shadow the API's train
        "from fmnist.api import train\n"
        "assert callable(training.fit) and fmnist.train is train\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr


@pytest.mark.slow
def test_compare_and_tune_return_their_tables(trained, tmp_path):
    tiny = {"hidden": (16,), "epochs": 1, "batch_size": 64, "eval_batch_size": 256, "val_size": 100}
    table = fmnist.compare(out=tmp_path / "compare", base=tiny, grid={"lr": [1e-3, 3e-3]}, seeds=[0])
    assert [row["runs"] for row in table.rows] == [1, 1] and (tmp_path / "compare" / "results.md").exists()
    assert table.text == (tmp_path / "compare" / "results.md").read_text() and repr(table) == table.text
    study = fmnist.tune(tmp_path / "tune", trials=2, **tiny)
    assert [row["number"] for row in study.rows] == ["0", "1"] and (tmp_path / "tune" / "best.toml").exists()
    assert study.text.startswith("| number | state | val_acc |")
    with pytest.raises(FmnistError, match="already holds a study"):
        fmnist.tune(tmp_path / "tune", trials=1, **tiny)
