"""fmnist.plots: every plot writes a readable PNG atomically, without touching pyplot."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from fmnist import plots

CLASSES = [f"class {i}" for i in range(10)]


def _history(epochs: int, with_val: bool) -> list[dict]:
    rows = []
    for epoch in range(1, epochs + 1):
        row = {
            "epoch": epoch,
            "train_loss": 1 / epoch,
            "train_acc": 1 - 0.5 / epoch,
            "test_loss": 1.1 / epoch,
            "test_acc": 1 - 0.6 / epoch,
            "lr": 0.1 / epoch,
        }
        if with_val:
            row.update(val_loss=1.05 / epoch, val_acc=1 - 0.55 / epoch)
        rows.append(row)
    return rows


def _assert_only_png(directory, name: str) -> None:
    """`name` is a valid PNG and the only file left in `directory` (no temp files)."""
    assert sorted(p.name for p in directory.iterdir()) == [name]
    with Image.open(directory / name) as image:
        assert image.format == "PNG"
        assert image.width > 0 and image.height > 0
        image.load()


@pytest.mark.parametrize("with_val", [False, True])
def test_plot_curves(tmp_path, with_val):
    plots.plot_curves(_history(5, with_val), tmp_path / "curves.png")
    _assert_only_png(tmp_path, "curves.png")


def test_plot_curves_val_on_some_epochs_and_single_epoch(tmp_path):
    history = _history(3, with_val=True)
    del history[1]["val_loss"], history[1]["val_acc"]
    plots.plot_curves(history, tmp_path / "some.png")
    plots.plot_curves(_history(1, with_val=False), tmp_path / "one.png")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one.png", "some.png"]


@pytest.mark.filterwarnings("error")  # e.g. matplotlib's "no artists with labels" for a legend
def test_plot_curves_empty_history(tmp_path):
    plots.plot_curves([], tmp_path / "empty.png")
    _assert_only_png(tmp_path, "empty.png")


@pytest.mark.parametrize("as_list", [False, True])
def test_plot_confusion(tmp_path, as_list):
    matrix = torch.randint(0, 50, (10, 10), generator=torch.Generator().manual_seed(0))
    matrix += torch.eye(10, dtype=matrix.dtype) * 900
    plots.plot_confusion(matrix.tolist() if as_list else matrix, CLASSES, tmp_path / "cm.png")
    _assert_only_png(tmp_path, "cm.png")


def test_plot_confusion_rejects_wrong_shape(tmp_path):
    with pytest.raises(ValueError, match="expected \\(10, 10\\)"):
        plots.plot_confusion(torch.zeros(9, 9), CLASSES, tmp_path / "cm.png")
    assert not any(tmp_path.iterdir())


def test_plot_image_grid(tmp_path):
    images = torch.randint(0, 256, (11, 28, 28), dtype=torch.uint8)
    titles = [f"true: {CLASSES[i % 10]}\npred: {CLASSES[(i + 1) % 10]} 0.81" for i in range(11)]
    plots.plot_image_grid(images, titles, tmp_path / "grid.png", ncols=4, title="misclassified")
    _assert_only_png(tmp_path, "grid.png")


def test_plot_image_grid_shows_each_image_whole_and_in_order(tmp_path):
    images = torch.stack([torch.full((28, 28), 128, dtype=torch.uint8), torch.full((28, 28), 64, dtype=torch.uint8)])
    plots.plot_image_grid(images, ["first\nof two", "second"], tmp_path / "grid.png", title="two")
    rgb = np.asarray(Image.open(tmp_path / "grid.png").convert("RGB"))
    columns = {}
    for value in (128, 64):
        mask = (rgb == value).all(axis=2)
        rows, columns[value] = np.nonzero(mask.sum(1) >= 100)[0], np.nonzero(mask.sum(0) >= 100)[0]
        assert len(rows) == len(columns[value]) >= 0.9 * 1.2 * 120, value  # a square of about 1.2 inches at 120 dpi
    assert columns[128].max() < columns[64].min()  # in order, left to right


def test_plot_image_grid_empty(tmp_path):
    plots.plot_image_grid(torch.zeros(0, 28, 28, dtype=torch.uint8), [], tmp_path / "none.png")
    _assert_only_png(tmp_path, "none.png")


def test_plot_image_grid_rejects_title_count(tmp_path):
    with pytest.raises(ValueError, match="2 images but 1 titles"):
        plots.plot_image_grid(torch.zeros(2, 28, 28, dtype=torch.uint8), ["a"], tmp_path / "g.png")


@pytest.mark.parametrize("labels", [["mlp", "cnn"], [f"a rather long model name {i}" for i in range(6)]])
def test_plot_bars(tmp_path, labels):
    values = [0.9 + 0.01 * i for i in range(len(labels))]
    plots.plot_bars(labels, values, tmp_path / "bars.png", ylabel="test accuracy", title="models")
    _assert_only_png(tmp_path, "bars.png")


def test_creates_parent_dirs_and_replaces_existing(tmp_path):
    path = tmp_path / "run" / "plots" / "bars.png"
    plots.plot_bars(["a"], [1.0], path, ylabel="y", title="first")
    first = path.read_bytes()
    plots.plot_bars(["a", "b"], [1.0, 2.0], path, ylabel="y", title="second")
    assert path.read_bytes() != first
    _assert_only_png(path.parent, "bars.png")


def test_pyplot_is_not_used(tmp_path):
    # Figures made through pyplot stay registered (and in memory) until closed.
    plt = pytest.importorskip("matplotlib.pyplot")
    before = plt.get_fignums()
    plots.plot_curves(_history(2, with_val=False), tmp_path / "c.png")
    plots.plot_confusion(torch.eye(10), CLASSES, tmp_path / "m.png")
    plots.plot_image_grid(torch.zeros(1, 28, 28, dtype=torch.uint8), ["x"], tmp_path / "g.png")
    plots.plot_bars(["a"], [1.0], tmp_path / "b.png", ylabel="y", title="t")
    assert plt.get_fignums() == before


@pytest.mark.parametrize("mistakes", [True, False])
def test_evaluation_plots_with_and_without_mistakes(tmp_path, mistakes):
    from fmnist.evaluate import Evaluation, Report

    labels = torch.arange(12) % 10
    predicted = (labels + (torch.arange(12) % 3 == 0).long()) % 10 if mistakes else labels
    e = Evaluation(0.5, 0.75, torch.nn.functional.one_hot(predicted, 10).float() * 0.9 + 0.01, labels)
    images = torch.randint(0, 256, (12, 28, 28), dtype=torch.uint8)
    report = Report("m.pt", "photos", e, images, [f"photo-{i}-with-a-long-name.jpg" for i in range(12)])
    paths = plots.write_evaluation_plots(tmp_path / "plots", report, CLASSES)
    assert [p.rsplit("/", 1)[1] for p in paths] == ["confusion_matrix.png", "top_losses.png", "most_confused.png"]
    for path in paths:
        assert Image.open(path).size[0] > 300


def test_plot_lr_find(tmp_path):
    lrs = [10 ** (-6 + i / 10) for i in range(60)]
    losses = [2.3 - 0.02 * i if i < 50 else 1.3 + 0.5 * (i - 50) for i in range(60)]
    plots.plot_lr_find(lrs, losses, {"valley": lrs[25], "steepest": lrs[30]}, tmp_path / "lr.png")
    _assert_only_png(tmp_path, "lr.png")
