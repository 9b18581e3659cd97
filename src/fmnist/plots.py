"""Plots for runs and comparisons, written as PNG files.

Figures are built with `matplotlib.figure.Figure` on an Agg canvas rather than through
pyplot: nothing here selects a backend or opens a window, and a figure is freed as soon
as the function returns because pyplot never registers it.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from typing import Literal

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, PercentFormatter

from fmnist.atomic import atomic_path
from fmnist.evaluate import Report

_DPI = 120
_SPLITS = ("train", "val", "test")  # plotting order; val is optional


def plot_curves(history: Sequence[Mapping[str, object]], path: str | os.PathLike) -> None:
    """Loss and accuracy per epoch for train, test and (when recorded) val.

    `history` has one records.EpochRow per epoch (any mapping with its keys); accuracies are
    fractions in 0..1. A split
    missing from some epochs is drawn only where it is present.
    """
    fig = new_figure(figsize=(10, 4))
    loss_ax, acc_ax = fig.subplots(1, 2)
    for ax, metric, title in ((loss_ax, "loss", "Loss"), (acc_ax, "acc", "Accuracy")):
        for split in _SPLITS:
            epochs, values = _series(history, f"{split}_{metric}")
            if epochs:
                ax.plot(epochs, values, marker="o", markersize=3, label=split)
        ax.set(title=title, xlabel="epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        if ax.lines:  # an empty history has nothing to label
            ax.legend()
    acc_ax.yaxis.set_major_formatter(PercentFormatter(xmax=1))
    save_png(fig, path)


def plot_confusion(
    matrix: torch.Tensor | Sequence[Sequence[float]],
    classes: Sequence[str],
    path: str | os.PathLike,
    title: str = "Confusion matrix",
) -> None:
    """Heat map of a square confusion matrix (rows true class, columns predicted) with each cell's value."""
    counts = torch.as_tensor(matrix).detach().cpu().numpy()
    n = len(classes)
    if counts.shape != (n, n):
        raise ValueError(f"confusion matrix has shape {counts.shape}, expected ({n}, {n}) for {n} classes")
    fig = new_figure(figsize=(8, 7))
    ax = fig.subplots()
    shown = ax.imshow(counts, cmap="Blues")
    fig.colorbar(shown, ax=ax, shrink=0.8)
    ax.set(title=title, xlabel="predicted", ylabel="true", xticks=range(n), yticks=range(n))
    ax.set_xticklabels(classes, rotation=45, ha="right", rotation_mode="anchor")
    ax.set_yticklabels(classes)
    _annotate_cells(ax, counts)
    save_png(fig, path)


def plot_image_grid(
    images: torch.Tensor,
    titles: Sequence[str],
    path: str | os.PathLike,
    ncols: int = 8,
    title: str | None = None,
) -> None:
    """Grayscale uint8 [N, 28, 28] images in a grid, each under its own title; N may be 0."""
    if len(images) != len(titles):
        raise ValueError(f"got {len(images)} images but {len(titles)} titles")
    pixels = images.detach().cpu().numpy()
    ncols = max(1, min(ncols, len(pixels)))
    nrows = max(1, math.ceil(len(pixels) / ncols))
    lines = max((t.count("\n") + 1 for t in titles), default=1)
    # Each cell (inches): a 1.2-inch image under room for its title lines, 1.5 wide; 0.4 on top for the
    # suptitle; at least 3 inches wide. The images are pasted as pixels (figimage, each pixel repeated to
    # about 1.2 inches) and the titles written as figure text: an axes per image, and a layout engine over
    # them, cost seconds for a grid of 24 titled images.
    cell_h, top = 1.2 + 0.18 * lines, 0.4
    width, height = max(3.0, 1.5 * ncols + 0.5), cell_h * nrows + top
    fig = new_figure(figsize=(width, height), layout=None)
    if title:
        fig.suptitle(title, y=1 - 0.1 / height, va="top")
    if not len(pixels):
        fig.text(0.5, 0.5, "no images", ha="center", va="center", fontsize=14)
    scale = round(1.2 * _DPI / pixels.shape[-1]) if len(pixels) else 1
    for i, (image, caption) in enumerate(zip(pixels, titles, strict=True)):
        row, col = divmod(i, ncols)
        left, bottom = 0.4 + 1.5 * col, height - top - cell_h * (row + 1) + 0.05
        big = image.repeat(scale, axis=0).repeat(scale, axis=1)
        fig.figimage(big, xo=round(left * _DPI), yo=round(bottom * _DPI), cmap="gray", vmin=0, vmax=255, origin="upper")
        centre = (left + big.shape[1] / _DPI / 2) / width
        fig.text(centre, (bottom + big.shape[0] / _DPI + 0.03) / height, caption, ha="center", va="bottom", fontsize=8)
    save_png(fig, path)


def plot_bars(
    labels: Sequence[str],
    values: Sequence[float],
    path: str | os.PathLike,
    ylabel: str,
    title: str,
) -> None:
    """A bar per label with its value printed on top."""
    if len(labels) != len(values):
        raise ValueError(f"got {len(labels)} labels but {len(values)} values")
    fig = new_figure(figsize=(max(5.0, 0.8 * len(labels) + 2), 4))
    ax = fig.subplots()
    positions = range(len(labels))
    bars = ax.bar(positions, values, color="tab:blue")
    ax.bar_label(bars, fmt="{:.3g}", fontsize=8)
    names = [str(label) for label in labels]
    rotate = sum(map(len, names)) > 40  # long or many labels collide when horizontal
    ax.set_xticks(
        positions, names, rotation=30 if rotate else 0, ha="right" if rotate else "center", rotation_mode="anchor"
    )
    ax.set(title=title, ylabel=ylabel)
    ax.margins(y=0.12)  # headroom for the value labels
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)  # grid lines behind the bars
    save_png(fig, path)


def plot_before_after(
    labels: Sequence[str],
    before: Sequence[float | None],
    after: Sequence[float | None],
    path: str | os.PathLike,
    names: tuple[str, str] = ("parent", "adapted"),
    title: str = "",
) -> None:
    """Pairs of bars, one pair per label, of shares in 0..1 (None: not measured, left empty), under `title`:
    `fmnist adapt`."""
    fig = new_figure(figsize=(max(5.0, 1.4 * len(labels) + 2), 4))
    ax = fig.subplots()
    ax.set_title(title, fontsize=10)
    x = np.arange(len(labels))
    for offset, values, name in ((-0.2, before, names[0]), (0.2, after, names[1])):
        shown = [np.nan if v is None else v for v in values]
        bars = ax.bar(x + offset, shown, width=0.4, label=name)
        ax.bar_label(bars, labels=["" if v is None else f"{v:.1%}" for v in values], fontsize=8)
    ax.set_xticks(x, list(labels))
    ax.set_ylim(0, 1.1)
    ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax.legend(loc="lower right")
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    save_png(fig, path)


def plot_lr_find(
    lrs: Sequence[float], losses: Sequence[float], marks: Mapping[str, float], path: str | os.PathLike
) -> None:
    """The learning-rate range test: smoothed training loss against the learning rate (log axis), with
    a vertical line at each of `marks` (label -> learning rate), as fastai's lr_find draws it."""
    fig = new_figure(figsize=(7, 4.5))
    ax = fig.subplots()
    ax.plot(lrs, losses)
    for (label, lr), color in zip(marks.items(), ("tab:red", "tab:green", "tab:purple"), strict=False):
        ax.axvline(lr, color=color, linestyle="--", label=f"{label} {lr:.2g}")
    ax.set(xscale="log", xlabel="learning rate", ylabel="training loss (smoothed)", title="Learning-rate range test")
    ax.grid(alpha=0.3, which="both")
    if marks:
        ax.legend()
    save_png(fig, path)


def new_figure(figsize: tuple[float, float], layout: Literal["constrained"] | None = "constrained") -> Figure:
    fig = Figure(figsize=figsize, dpi=_DPI, layout=layout)
    FigureCanvasAgg(fig)
    return fig


def save_png(fig: Figure, path: str | os.PathLike) -> None:
    # The temporary name ends in .tmp, so the format must be given explicitly.
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")


def _series(history: Sequence[Mapping[str, object]], key: str) -> tuple[list, list]:
    rows = [row for row in history if row.get(key) is not None]
    return [row["epoch"] for row in rows], [row[key] for row in rows]


def _annotate_cells(ax, counts: np.ndarray) -> None:
    integral = np.all(np.mod(counts, 1) == 0)
    # White text on dark cells, black on light ones.
    threshold = counts.max() / 2
    for (row, col), value in np.ndenumerate(counts):
        text = f"{int(value)}" if integral else f"{value:.2f}"
        colour = "white" if value > threshold else "black"
        ax.text(col, row, text, ha="center", va="center", color=colour, fontsize=8)


def plot_top_losses(
    report: Report, classes: Sequence[str], path: str | os.PathLike, k: int = 24, ncols: int = 8
) -> None:
    """The `k` images of a report with the highest loss (fastai's `plot_top_losses`), each as the 28x28
    view the model saw under its predicted class and probability, true class, loss (nats) and file name."""
    e = report.evaluation
    picks = e.top_losses(k)
    losses = e.losses
    confidence, predicted = e.probabilities.max(1)
    titles = []
    for i in picks.tolist():
        title = (
            f"pred {classes[int(predicted[i])]} {float(confidence[i]):.0%}\n"
            f"true {classes[int(e.labels[i])]}\nloss {float(losses[i]):.2f}"
        )
        if report.names is not None:
            title += "\n" + _shorten(report.names[i], 18)
        titles.append(title)
    plot_image_grid(report.images[picks], titles, path, ncols=ncols, title=f"Top losses, highest first ({report.data})")


def plot_most_confused(report: Report, classes: Sequence[str], path: str | os.PathLike, pairs: int = 12) -> None:
    """Horizontal bars of a report's most-confused pairs (fastai's `most_confused`): images of the true
    class predicted as another, count and share of the true class."""
    confused = report.evaluation.most_confused()[:pairs]
    fig = new_figure(figsize=(8, 1.2 + 0.35 * max(len(confused), 1)))
    ax = fig.subplots()
    ax.set(title=f"Most confused pairs, true \u2192 predicted ({report.data})", xlabel="images")
    if not confused:
        ax.text(0.5, 0.5, "no mistakes", ha="center", va="center", fontsize=14, transform=ax.transAxes)
        ax.set_yticks([])
    else:
        positions = range(len(confused))[::-1]  # the most confused on top
        bars = ax.barh(positions, [c.count for c in confused], color="tab:red")
        ax.bar_label(bars, [f" {c.count} ({c.share:.1%} of {classes[c.true]})" for c in confused], fontsize=8)
        ax.set_yticks(positions, [f"{classes[c.true]} \u2192 {classes[c.predicted]}" for c in confused])
        ax.margins(x=0.25)  # room for the labels
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(axis="x", alpha=0.3)
        ax.set_axisbelow(True)
    save_png(fig, path)


def write_evaluation_plots(directory: str | os.PathLike, report: Report, classes: Sequence[str]) -> list[str]:
    """confusion_matrix.png, top_losses.png and most_confused.png of a report; returns the paths."""
    directory = os.fspath(directory)
    os.makedirs(directory, exist_ok=True)
    paths = [os.path.join(directory, name) for name in ("confusion_matrix.png", "top_losses.png", "most_confused.png")]
    e = report.evaluation
    plot_confusion(
        e.confusion_matrix(), classes, paths[0], title=f"Confusion matrix ({report.data}, accuracy {e.accuracy:.2%})"
    )
    plot_top_losses(report, classes, paths[1])
    plot_most_confused(report, classes, paths[2])
    return paths


def write_run_plots(
    run_dir: str | os.PathLike,
    history: Sequence[Mapping[str, object]],
    test,
    test_images: torch.Tensor,
    classes: Sequence[str],
) -> None:
    """A run's plots: curves.png, and the test set's confusion_matrix.png, top_losses.png and
    most_confused.png. `test` is an evaluate.Evaluation of the run's chosen model on `test_images`."""
    plot_curves(history, os.path.join(os.fspath(run_dir), "curves.png"))
    write_evaluation_plots(run_dir, Report(os.fspath(run_dir), "test set", test, test_images), classes)


def _shorten(text: str, most: int) -> str:
    return text if len(text) <= most else text[: most - 1] + "\u2026"


def plot_reliability(
    confidence: Mapping[str, torch.Tensor], correct: Mapping[str, torch.Tensor], path: str | os.PathLike, bins: int = 15
) -> None:
    """Reliability diagram (Guo et al., 2017): accuracy against mean top-class confidence in `bins` equal-width
    bins, one line per entry of `confidence` (e.g. before and after temperature scaling), with the diagonal of
    perfect calibration. `confidence[k]` and `correct[k]` are [N] tensors (0..1 and bool)."""
    from fmnist.trust.calibration import expected_calibration_error, reliability

    fig = new_figure(figsize=(5.5, 5))
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="perfect calibration")
    for name, conf in confidence.items():
        count, mean_conf, accuracy = reliability(conf, correct[name].double(), bins)
        used = count > 0
        ece = expected_calibration_error(conf, correct[name].double(), bins)
        ax.plot(
            mean_conf[used].numpy(), accuracy[used].numpy(), marker="o", markersize=3, label=f"{name} (ECE {ece:.2%})"
        )
    ax.set(
        title="Reliability diagram",
        xlabel="confidence (top-class probability)",
        ylabel="accuracy",
        xlim=(0, 1),
        ylim=(0, 1),
    )
    ax.xaxis.set_major_formatter(PercentFormatter(xmax=1))
    ax.yaxis.set_major_formatter(PercentFormatter(xmax=1))
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left")
    save_png(fig, path)
