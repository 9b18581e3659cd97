"""fmnist in Python: `train` a run, `load` a model and ask it to `predict`, `evaluate`, `explain`, `export` and
`adapt`, as the `fmnist` commands do, with objects back instead of printed lines (docs/PYTHON.md).

Nothing here prints unless asked (`progress=True`: a tqdm.auto bar, which renders in a notebook, and the
training's epoch lines); nothing exits. A user's mistake raises FmnistError (or a subclass) with the one-line
message the CLI prints after "fmnist: error:".
"""

from __future__ import annotations

import dataclasses
import json
import numbers
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fmnist import config as config_lib
from fmnist import data, presets, textfile, trust
from fmnist.answer import Answer, answers
from fmnist.errors import FmnistError
from fmnist.evaluate import Evaluation, Report, evaluation_of
from fmnist.images import Picture, picture_of
from fmnist.inference import Predictor, load_predictor
from fmnist.records import EpochRow, Summary
from fmnist.run_dir import RunDir, new_run_path


def _quiet(_message: str) -> None:
    pass


def _say(progress: bool) -> Callable[[str], None]:
    return print if progress else _quiet


# ------------------------------------------------------------------------------------------------ train


@dataclass(frozen=True)
class Run:
    """A finished training run. `path`: its directory (fmnist.run_dir names the files); `summary`: summary.json
    (test accuracy and loss in [0, 1] and nats, the chosen epoch, wall seconds...); `metrics`: metrics.jsonl,
    one dict per epoch (train/val/test loss and accuracy, lr, seconds)."""

    path: Path
    summary: Summary
    metrics: list[EpochRow] = field(repr=False)
    adaptation: dict[str, Any] | None = field(default=None, repr=False)  # adapt-report.json of an `adapt` run

    @classmethod
    def read(cls, path: str | Path) -> Run:
        """The run in directory `path`; FmnistError when it holds no finished run."""
        run = RunDir(path)
        summary = run.read_summary()
        if summary is None:
            raise FmnistError(f"{path}: no finished run here (no {run.summary.name})")
        report = run.path / "adapt-report.json"
        adaptation = json.loads(textfile.read(report, "adaptation report")) if report.exists() else None
        return cls(run.path, summary, run.read_history(), adaptation)

    def load(self, device: str = "cpu") -> Model:
        """The run's chosen model, as `fmnist.load(run.path)`."""
        return load(self.path, device)

    def __repr__(self) -> str:
        s = self.summary
        return (
            f"Run('{self.path}': test accuracy {s['test_accuracy']:.2%}, {len(self.metrics)} epochs, "
            f"chosen epoch {s['chosen_epoch']} ({s['chosen_by']}), {s['wall_seconds']:.1f} s)"
        )


def train(
    *,
    out: str | Path | None = None,
    preset: str | None = None,
    config: str | Path | None = None,
    resume: bool = False,
    progress: bool = False,
    **values: Any,
) -> Run:
    """Train a model as `fmnist train` does and return the finished Run.

    The config is the defaults, then `preset` (a shipped recipe, such as "cnn"), then the TOML file `config`,
    then `values`: any Config field as a keyword (epochs=5, model="cnn", train_subset=2000). `out`: the run
    directory (default runs/<date-time>); with `resume=True`, the run there is continued. `progress`: a
    progress bar per epoch and one line per epoch.

    Raises FmnistError for an unknown field or a bad value, a directory that already holds a run, missing
    data; NonFiniteLoss when the loss diverges (the last good checkpoint stays).
    """
    from fmnist.training import fit, inherit_split

    asked = presets.requested(preset, config, values)
    if resume:
        if out is None:
            raise FmnistError("resume=True continues the run in `out`; name it")
        cfg = config_lib.for_resume(RunDir(out).read_config(), asked, out)
        run_dir = Path(out)
    else:
        cfg, run_dir = inherit_split(config_lib.from_dict(asked)), Path(out) if out is not None else new_run_path()
        if RunDir(run_dir).is_run():
            raise FmnistError(RunDir(run_dir).taken())
    dataset = data.load(cfg.data_dir or None, progress=_say(progress) if progress else None)
    fit(cfg, run_dir, dataset, resume=resume, log=_say(progress), progress=progress, fit_trust=True)
    return Run.read(run_dir)


# ------------------------------------------------------------------------------------------------ load


def load(path: str | Path, device: str = "cpu", tta: str = "none") -> Model:
    """The model at `path`: a run directory (its chosen checkpoint), a checkpoint (.pt), an export (.onnx, fp32
    or int8, with its sidecar .json; runs on the CPU), or a bare state dict fmnist recognises (the PyTorch
    Quickstart network). `device`: auto, cpu, cuda or mps; `tta`: "flip" averages each image with its mirror.

    Raises FmnistError when the file is missing, unreadable or not a model fmnist knows.
    """
    if not isinstance(path, (str, PathLike)):
        raise FmnistError(f"path: expected a run directory or model file, got {type(path).__name__}")
    return Model(load_predictor(path, device, tta), Path(path))


@dataclass(frozen=True)
class Heatmap:
    """What drove one answer: `heatmap` float32 [28, 28], each pixel's attribution to the logit of `class_name`
    (positive: towards it), by `method`; `image` uint8 [28, 28], what the model saw. Shows itself as a PNG in a
    notebook."""

    heatmap: np.ndarray = field(repr=False)
    method: str
    class_name: str
    image: np.ndarray = field(repr=False)

    def png(self) -> bytes:
        """224 x 224 RGB: the image dimmed under the heatmap, red towards the class, blue against."""
        from fmnist.explain import heatmap_png

        return heatmap_png(torch.from_numpy(self.image), torch.from_numpy(self.heatmap))

    def _repr_png_(self) -> bytes:
        return self.png()


@dataclass(frozen=True)
class Evaluated:
    """`model.evaluate()`: accuracy (0..1), loss (nats per image), per_class (precision, recall, support per
    class), confusion (int64 [10, 10], rows true classes, columns predicted), ece (15-bin expected calibration
    error, 0..1, of the probabilities the model gives: with its temperature when one was fitted), and the
    reports behind them (`report`: fmnist.evaluate.Report, `calibration`: fmnist.trust.Report)."""

    report: Report = field(repr=False)
    calibration: trust.Report = field(repr=False)

    @property
    def evaluation(self) -> Evaluation:
        return self.report.evaluation

    @property
    def accuracy(self) -> float:
        return self.evaluation.accuracy

    @property
    def loss(self) -> float:
        return self.evaluation.loss

    @property
    def per_class(self) -> list[dict[str, Any]]:
        return self.evaluation.per_class()

    @property
    def confusion(self) -> np.ndarray:
        return self.evaluation.confusion_matrix().numpy()

    @property
    def ece(self) -> float:
        return (self.calibration.after or self.calibration.before).ece

    def as_dict(self) -> dict[str, Any]:
        """What `fmnist eval --json` writes (without its "tta")."""
        return {**self.report.as_dict(), "calibration_and_ood": self.calibration.as_dict()}

    def __str__(self) -> str:
        return self.report.text()

    def __repr__(self) -> str:
        return (
            f"Evaluated({self.report.data}: accuracy {self.accuracy:.2%}, loss {self.loss:.4f}, ECE {self.ece:.2%}, "
            f"{len(self.evaluation.labels):,} images)"
        )


class Model:
    """A trained model, whatever file holds it (see `load`): predict, evaluate, explain, export."""

    def __init__(self, predictor: Predictor, path: Path):
        self.predictor, self.path = predictor, path

    def describe(self) -> dict[str, Any]:
        """Plain facts: format, architecture, source file, device, accuracy on record, calibration."""
        return self.predictor.describe()

    def __repr__(self) -> str:
        facts = self.describe()
        return f"Model('{self.path}': {facts['format']} {facts['model']}, calibrated {facts['calibrated']})"

    def predict(
        self,
        images: Picture | Sequence[Picture],
        *,
        top_k: int = 3,
        ood_threshold: float | None = None,
        batch_size: int = 256,
    ) -> list[Answer]:
        """One Answer per picture, in order. `images`: one picture or a list of them, each a path, bytes, a PIL
        image, a uint8 array or tensor (see fmnist.images.picture_of); or a uint8 batch [N, 28, 28] of
        Fashion-MNIST-style images. `top_k` classes per answer; `ood_threshold` (0..1) replaces the fitted
        in-distribution threshold.

        Raises FmnistError for a picture that cannot be read (naming it, or "image I" by its place) or a bad
        option; no answer is given then.
        """
        trust.check_threshold(ood_threshold)
        for name, value in (("top_k", top_k), ("batch_size", batch_size)):
            _check_count(name, value)
        pictures = [picture_of(item, f"image {i}") for i, item in enumerate(_as_list(images))]
        built: list[Answer] = []
        for start in range(0, len(pictures), batch_size):
            batch = pictures[start : start + batch_size]
            stacked = torch.stack([p.image for p in batch])
            logits = self.predictor.logits(stacked)
            built += answers(self.predictor.trust, logits, stacked, [p.cues for p in batch], top_k, ood_threshold)
        return built

    def evaluate(
        self,
        images: str | Path | None = None,
        *,
        data_dir: str | Path | None = None,
        dataset: data.FashionMNIST | None = None,
    ) -> Evaluated:
        """Accuracy, per-class figures, confusion matrix and calibration on the Fashion-MNIST test set (found in
        `data_dir`, else where `fmnist data` looks; or the test split of `dataset`, already loaded), or on
        `images`: a folder of class folders (fmnist.folders). `fmnist eval` is this call.

        Raises FmnistError when the data or the folders cannot be read.
        """
        if images is not None:
            from fmnist.folders import load_folders

            if not isinstance(images, (str, PathLike)):
                raise FmnistError(f"images: expected a folder of class folders, got {type(images).__name__}")

            folders = load_folders(images)
            pixels, labels, cues = folders.images, folders.labels, folders.cues
            names, problems, skipped = [p.name for p in folders.paths], folders.problems, folders.skipped
        else:
            dataset = dataset if dataset is not None else data.load(data_dir)
            pixels, labels, names, problems, skipped = dataset.test_images, dataset.test_labels, None, [], {}
            cues = None  # 28x28 already: no framing, no picture cues
        logits = torch.cat([self.predictor.logits(chunk) for chunk in pixels.split(1000)])
        where = str(images) if images is not None else "test set"
        report = Report(str(self.path), where, evaluation_of(logits, labels), pixels, names, problems, skipped)
        return Evaluated(report, trust.report(self.predictor.trust, logits, labels, pixels, cues))

    def explain(self, image: Picture, target: str | int | None = None) -> Heatmap:
        """What drove the answer for one picture (any form `predict` takes): integrated gradients for a PyTorch
        model, occlusion for an export (fmnist.explain, Captum). `target`: the class to explain, by name or
        index (default: the predicted one). Raises FmnistError for an unreadable picture or unknown class."""
        from fmnist.explain import Explainer

        pixels = picture_of(image, "image").image[None]
        targets = None if target is None else torch.tensor([_class_index(target)])
        explained = Explainer(self.predictor)(pixels, targets)
        index = int(explained.targets[0])
        return Heatmap(explained.maps[0].numpy(), explained.method, data.CLASSES[index], pixels[0].numpy())

    def export(
        self, out: str | Path, *, int8: bool = False, calibration_images: int | None = None, data_dir: str | None = None
    ) -> dict[str, Any]:
        """Write the model as ONNX to `out` and its sidecar (same name, .json) as `fmnist export` does; return the
        sidecar: precision, opset, test accuracy with onnxruntime beside PyTorch's, the carried calibration.
        `int8`: quantized with `calibration_images` training images (default 2,000, at least 100). Needs a PyTorch
        model.

        Raises FmnistError when `out` is taken by a directory, the model is an export, or the data is missing.
        """
        from fmnist import export as export_lib

        export_lib.check_out(Path(out))
        source = export_lib.load_source(self.path)
        count = export_lib.CALIBRATION_IMAGES if calibration_images is None else calibration_images
        _check_count("calibration_images", count)
        return export_lib.export(source, out, data.load(data_dir), int8=int8, calibration_images=count)

    def adapt(
        self,
        images: str | Path,
        *,
        out: str | Path | None = None,
        data_dir: str | Path | None = None,
        progress: bool = False,
        **recipe: Any,
    ) -> Run:
        """Fine-tune this model on labelled photos as `fmnist adapt` does (docs/ADAPT.md) and return the new Run;
        its `adaptation` holds the before/after report (held-out photos, Fashion-MNIST test, the weights' mix).

        `images`: a folder of class folders (fmnist.folders); `out`: the new run directory (default
        runs/<date-time>); `recipe`: fields of fmnist.config.AdaptRecipe (epochs=5, lr=1e-3, freeze=1...).
        `progress`: the notes and epoch lines printed. An interrupted run continues with
        `fmnist.adapt.adapt(None, None, out, resume=True)` or `fmnist adapt --resume OUT`.

        Raises FmnistError for an export (adapt its checkpoint), an unknown recipe field or a bad value, a
        folder with no usable photos, `out` already holding a run, or missing data.
        """
        from fmnist.adapt import adapt, parent_checkpoint
        from fmnist.config import AdaptRecipe

        parent_checkpoint(self.path)  # an export: refused before any data is read
        if unknown := sorted(set(recipe) - {f.name for f in dataclasses.fields(AdaptRecipe)}):
            raise FmnistError(f"unknown adapt setting {', '.join(unknown)}; see fmnist.config.AdaptRecipe")
        checked = AdaptRecipe(**recipe)  # each value checked and converted as on the command line
        run_dir = Path(out) if out is not None else new_run_path()
        dataset = data.load(str(data_dir) if data_dir else None)
        adapt(self.path, images, run_dir, checked, dataset=dataset, log=_say(progress))
        return Run.read(run_dir)


def _check_count(name: str, value: Any) -> None:
    """FmnistError unless `value` is a whole number >= 1 (a Python or numpy integer; a bool is not one)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise FmnistError(f"{name} must be a whole number >= 1, got {value!r}")


def _as_list(images: Picture | Sequence[Picture]) -> list[Picture]:
    if isinstance(images, (list, tuple)):
        return list(images)
    if isinstance(images, (np.ndarray, torch.Tensor)) and images.ndim == 3 and tuple(images.shape[1:]) == (28, 28):
        return list(images)  # a batch [N, 28, 28]
    return [images]  # type: ignore[list-item]  # one picture


def _class_index(target: str | int) -> int:
    if isinstance(target, int) and 0 <= target < len(data.CLASSES):
        return target
    if isinstance(target, str) and target in data.CLASSES:
        return data.CLASSES.index(target)
    raise FmnistError(f"unknown class {target!r}; one of: {', '.join(data.CLASSES)} (or an index 0-9)")


# ------------------------------------------------------------------------------------------------ studies


@dataclass(frozen=True)
class Table:
    """A study's result table: `rows`, one dict per row, and `text`, the table as Markdown (shown rendered in a
    notebook); `path`, the study's directory with the files the command writes."""

    path: Path
    rows: list[dict[str, Any]] = field(repr=False)
    text: str = field(repr=False)

    def __repr__(self) -> str:
        return self.text

    def _repr_markdown_(self) -> str:
        return self.text


def compare(
    experiment: str | Path | None = None,
    *,
    out: str | Path,
    preset: str | None = None,
    base: dict[str, Any] | None = None,
    grid: dict[str, list[Any]] | None = None,
    seeds: list[int] | None = None,
    threshold: float | None = None,
    workers: int = 1,
    progress: bool = False,
) -> Table:
    """Train a grid of configs over seeds, as `fmnist compare`, into `out`; return one row per grid point (mean
    and std over seeds of validation and test accuracy, epochs and seconds to `threshold`, speed).

    `experiment`: an experiment file (TOML); `base`, `grid` ({"optimizer": ["sgd", "adam"]}), `seeds` and
    `threshold` (a validation accuracy) add to or replace its values. Runs finished earlier in `out` are kept.
    Raises FmnistError for a bad experiment (val_size 0 included: runs are ranked on validation).
    """
    from fmnist.studies import compare as compare_lib

    plan = compare_lib.build_experiment(
        compare_lib.read_experiment(experiment) if experiment else {},
        preset=preset,
        base=base,
        grid=grid,
        seeds=seeds,
        threshold=threshold,
    )
    runs = compare_lib.grid_runs(plan, out)  # config errors before the data is loaded
    dataset = data.load(runs[0].config.data_dir or None)
    results = compare_lib.run_grid(plan, out, dataset, workers=workers, log=_say(progress))
    text = compare_lib.write_report(out, plan, results, workers=workers)
    return Table(Path(out), compare_lib.summarize(results, plan), text)


def tune(
    out: str | Path,
    *,
    trials: int = 20,
    resume: bool = False,
    preset: str | None = None,
    config: str | Path | None = None,
    timeout: float | None = None,
    workers: int = 1,
    progress: bool = False,
    **values: Any,
) -> Table:
    """Search hyperparameters with Optuna (TPE, median pruning), as `fmnist tune`: `trials` more trials of the study
    in `out`, each a training run scored by its best validation accuracy; return one row per trial (number,
    state, val_acc, test_acc, epochs, seconds and the sampled values), the best config in out/best.toml.

    A new study's base config is `preset`, then `config`, then `values` (Config fields); `resume=True` runs
    more trials of the study in `out` with its recorded settings. Raises FmnistError for a bad budget or config,
    `out` holding a study already (without resume) or none (with it).
    """
    import csv

    import optuna

    from fmnist.studies import tune as tune_lib

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    tune_lib.check_budget(trials, timeout, workers)
    if resume and (preset or config or values):
        raise FmnistError("resume=True continues a study with its recorded settings; give no config values")
    if not resume:
        settings = tune_lib.new_settings(presets.requested(preset, config, values), name=Path(out).resolve().name)
        tune_lib.create_study(out, settings)
    dataset = data.load(tune_lib.load_settings(out).base.get("data_dir") or None)
    say = _say(progress)
    study = tune_lib.optimize(out, dataset, trials=trials, timeout=timeout, workers=workers, log=say)
    tune_lib.write_outputs(study, out, log=say)
    rows = list(csv.DictReader(textfile.read(Path(out) / "trials.csv", "trials table").splitlines()))
    return Table(Path(out), rows, _markdown(rows))


def _markdown(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "(no rows)"
    lines = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
    return "\n".join(lines + ["| " + " | ".join(str(v) for v in row.values()) + " |" for row in rows])
