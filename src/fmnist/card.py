"""`fmnist card RUN --out DIR`: a model card in the layout the Hugging Face Hub and timm use, written from the
run's own files, so it cannot drift from the model it describes.

    README.md          model-card YAML front matter (license, datasets, pipeline_tag, model-index with test
                       accuracy, ECE and AUROC) and the card: intended use and limits, per-class recall, the
                       most-confused pairs, calibration, what the not-a-garment detector accepts per kind of
                       picture, photo accuracy, how it was trained, on what, with which code and packages
    config.json        architecture and its arguments, label names, input spec; and what fmnist needs to
                       rebuild the model from model.safetensors (its config, temperature and detector)
    model.safetensors  the weights (safetensors, the Hub's format)
    model.onnx         `fmnist export`'s fp32 graph, with its facts inside, and model.json beside it
    reliability.png    the reliability diagram of the test set, before and after the temperature

Every number is measured here on the run's checkpoint, summary.json and the verified dataset, with fixed
seeds: writing the card twice gives identical bytes. `fmnist eval/predict/serve DIR` and `fmnist.load(DIR)`
load the directory (checkpoint.read_card).
"""

from __future__ import annotations

import importlib.metadata
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fmnist import checkpoint, data, export, plots, trust
from fmnist import config as config_lib
from fmnist.atomic import atomic_path, atomic_write
from fmnist.data import CLASSES, FashionMNIST
from fmnist.errors import FmnistError
from fmnist.evaluate import evaluation_of
from fmnist.images import load_picture
from fmnist.records import Summary
from fmnist.run_dir import RunDir

PHOTOS = 400  # product photos rendered from test images, seed 0 (fmnist.testing.photos)
OUTLIERS_PER_KIND = 40  # non-garment pictures per kind, the "holdout" part, seed 0 (fmnist.testing.outliers)
PAIRS = 5  # most-confused pairs listed
PACKAGES = ("fmnist", "torch", "numpy", "onnx", "onnxruntime", "safetensors", "pillow", "scipy")
HUB_DATASET = "zalando-datasets/fashion_mnist"


@dataclass(frozen=True)
class Measured:
    """What the card says about the model, all measured in `measure`."""

    images: int  # in the test set
    accuracy: float
    loss: float
    recall: list[float]  # per class, in CLASSES order
    confused: list[tuple[str, str, int, float]]  # (true, predicted, count, share of the true class)
    calibration: dict[str, Any]  # trust.Report.as_dict()
    photo_accuracy: float
    photo_accepted: float  # share of the photos the detector calls garments
    accepted_per_kind: dict[str, float]  # share of each kind of non-garment picture called a garment
    auroc: float | None  # garment photos against non-garment pictures, by in-distribution score


def write_card(run: str | Path, out: str | Path, dataset: FashionMNIST) -> Measured:
    """Write the card of `run` (a run directory) into `out`; return what was measured.

    Raises FmnistError when `run` is not a finished run, has no fitted detector, or `out` is a file.
    """
    run, out = Path(run), Path(out)
    summary = RunDir(run).read_summary() if run.is_dir() else None
    if summary is None:
        raise FmnistError(f"{run}: not a finished run directory (no summary.json); fmnist card describes a run")
    if out.exists() and not out.is_dir():
        raise FmnistError(f"--out {out}: exists and is not a directory")
    source = export.load_source(run)
    if not source.trust.has_detector:
        raise FmnistError(
            f"{run}: no temperature and detector fitted (trained with --val-size 0); run fmnist calibrate"
        )
    out.mkdir(parents=True, exist_ok=True)
    measured = measure(source, dataset, out / "reliability.png")
    write_weights(source, out / "model.safetensors")
    facts = export.export(source, out / "model.onnx", dataset)
    atomic_write(out / "config.json", json.dumps(config_json(source, facts), indent=2, sort_keys=True) + "\n")
    atomic_write(out / "README.md", readme(source, summary, measured, facts))
    return measured


def write_weights(source: export.Source, path: Path) -> None:
    from safetensors.torch import save_file

    weights = {k: v.detach().cpu().contiguous() for k, v in source.model.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(weights, str(tmp), metadata={"format": "pt"})


def config_json(source: export.Source, facts: dict[str, Any]) -> dict[str, Any]:
    """config.json: timm's keys (architecture, num_classes, label_names, pretrained_cfg) and transformers'
    id2label, then what fmnist reads back (checkpoint.read_card)."""
    cfg = config_lib.to_dict(source.config)
    return {
        "architecture": f"fmnist-{source.config.model}",
        "model_args": {k: cfg[k] for k in ("model", "hidden", "activation", "dropout", "batch_norm", "convs", "head")},
        "num_classes": len(CLASSES),
        "label_names": list(CLASSES),
        "id2label": {str(i): name for i, name in enumerate(CLASSES)},
        "pretrained_cfg": {
            "input_size": [1, data.SIDE, data.SIDE],
            "mean": [0.0],
            "std": [1.0],
            "num_classes": len(CLASSES),
            "label_names": list(CLASSES),
        },
        "input": facts["input"],
        checkpoint.CARD_KEY: {"config": cfg, "epoch": source.epoch, trust.KEY: source.trust.to_dict()},
    }


def measure(source: export.Source, dataset: FashionMNIST, reliability_png: Path) -> Measured:
    """Test-set accuracy, recall, confusions and calibration; accuracy and acceptance on rendered product photos;
    acceptance per kind of non-garment picture and the AUROC between the two. Draws the reliability diagram."""
    from fmnist.testing import outliers, photos

    logits_of = trust.model_logits(source.model)
    logits = logits_of(dataset.test_images)
    test = evaluation_of(logits, dataset.test_labels)
    report = trust.report(source.trust, logits, dataset.test_labels, dataset.test_images)
    before, after = report.confidence
    confidence = {"softmax": before, **({"temperature-scaled": after} if after is not None else {})}
    plots.plot_reliability(confidence, dict.fromkeys(confidence, report.correct), reliability_png)
    rendered = photos.render_set(dataset.test_images, PHOTOS, seed=0)
    photo_scores, photo_correct = scores(source, [p.data for p in rendered])
    labels = dataset.test_labels[[p.index for p in rendered]]
    others = outliers.build(OUTLIERS_PER_KIND, "holdout", seed=0)
    other_scores, _ = scores(source, [o.data for o in others])
    kinds = np.array([o.kind for o in others])
    threshold = source.trust.threshold
    return Measured(
        len(dataset.test_labels),
        test.accuracy,
        test.loss,
        [row["recall"] for row in test.per_class()],
        [(CLASSES[c.true], CLASSES[c.predicted], c.count, c.share) for c in test.most_confused()[:PAIRS]],
        report.as_dict(),
        float((photo_correct == labels).double().mean()),
        float((photo_scores >= threshold).mean()),
        {kind: float((other_scores[kinds == kind] >= threshold).mean()) for kind in outliers.KINDS},
        auroc(photo_scores, other_scores),
    )


def scores(source: export.Source, pictures: list[bytes]) -> tuple[np.ndarray, torch.Tensor]:
    """In-distribution scores [N] and predicted classes [N] of encoded pictures, framed as predict frames them."""
    framed = [load_picture(p, f"picture {i}") for i, p in enumerate(pictures)]
    views = torch.stack([f.image for f in framed])
    logits = trust.model_logits(source.model)(views)
    verdict = trust.judge(source.trust, logits, views, [f.cues for f in framed])
    assert verdict.scores is not None
    return verdict.scores, logits.argmax(1)


def auroc(garment: np.ndarray, other: np.ndarray) -> float:
    """Area under the ROC curve of the score separating garments (positive) from the rest (scikit-learn)."""
    from sklearn.metrics import roc_auc_score

    truth = np.r_[np.ones(len(garment)), np.zeros(len(other))]
    return float(roc_auc_score(truth, np.r_[garment, other]))


def readme(source: export.Source, summary: Summary, m: Measured, facts: dict[str, Any]) -> str:
    """README.md: YAML front matter the Hub reads, then the card."""
    return front_matter(source, m) + body(source, summary, m, facts)


def front_matter(source: export.Source, m: Measured) -> str:
    after = m.calibration["after"] or m.calibration["before"]
    metrics = [
        ("accuracy", "Test accuracy", m.accuracy),
        ("ece", "Expected calibration error (15 bins, temperature-scaled)", after["ece"]),
        ("roc_auc", "Not-a-garment AUROC (rendered product photos vs non-garment pictures)", m.auroc),
    ]
    lines = [
        "---",
        "license: mit",
        "library_name: fmnist",
        "pipeline_tag: image-classification",
        "datasets:",
        f"- {HUB_DATASET}",
        "tags:",
        "- image-classification",
        "- fashion-mnist",
        f"- {source.config.model}",
        "- onnx",
        "model-index:",
        f"- name: fmnist-{source.config.model}",
        "  results:",
        "  - task:",
        "      type: image-classification",
        "      name: Image Classification",
        "    dataset:",
        "      name: Fashion-MNIST",
        f"      type: {HUB_DATASET}",
        "      split: test",
        "    metrics:",
    ]
    for kind, name, value in metrics:
        lines += [f"    - type: {kind}", f"      name: {name}", f"      value: {value:.4f}"]
    return "\n".join(lines) + "\n---\n"


def body(source: export.Source, summary: Summary, m: Measured, facts: dict[str, Any]) -> str:
    cfg = summary["config"]
    before, after = m.calibration["before"], m.calibration["after"]
    hardware = summary.get("hardware", {})
    command = " ".join(["fmnist train", *(_flag(k, v) for k, v in sorted(cfg.items()) if k in changed_fields(cfg))])
    recall = "\n".join(f"| {name} | {r:.2%} |" for name, r in zip(CLASSES, m.recall, strict=True))
    pairs = "\n".join(f"| {t} | {p} | {n} | {s:.1%} |" for t, p, n, s in m.confused)
    kinds = "\n".join(f"| {kind} | {share:.1%} |" for kind, share in m.accepted_per_kind.items())
    digests = "\n".join(f"| {stem} | `{sha}` |" for stem, sha in data.FILES.values())
    packages = ", ".join(f"{name} {_version(name)}" for name in PACKAGES)
    revision = summary.get("code_version") or "unknown (not trained from a git checkout)"
    return f"""
# fmnist-{source.config.model}: Fashion-MNIST, calibrated, with a not-a-garment detector

A `{source.config.model}` ({summary["parameters"]:,} parameters) trained by fmnist on Fashion-MNIST. It takes a
28×28 grayscale picture framed as Fashion-MNIST's were and answers one of ten classes with a calibrated
probability, and whether the picture looks like a Fashion-MNIST product at all.

## Intended use and limits

Intended: classifying product photos of single clothing items, shoes and bags on a plain background, and
teaching or benchmarking. Not intended: people wearing clothes, several items in one picture, street
photos, or any decision about a person. Photos unlike Fashion-MNIST's (a busy background, a worn item)
lose accuracy; the detector flags many of them, not all (see below).

## Use

```bash
fmnist predict . photo.jpg          # this directory; or fmnist eval . / fmnist serve .
python -c "import fmnist; print(fmnist.load('.').predict(['photo.jpg']))"
```

`model.onnx` runs with onnxruntime alone: input `pixels` uint8 [N, 28, 28], outputs `logits`,
`probabilities` (calibrated) and `in_distribution_score`; class names, temperature and detector are in its
metadata (see fmnist's docs/EXPORT.md).

## Results (test set, {m.images:,} images)

| metric | value |
|---|---|
| accuracy | {m.accuracy:.2%} |
| loss (cross-entropy) | {m.loss:.4f} |
| ECE, plain softmax | {before["ece"]:.4f} |
| ECE, temperature {source.trust.temperature:.3f} | {after["ece"] if after else float("nan"):.4f} |
| accuracy on {PHOTOS} product photos rendered from test images | {m.photo_accuracy:.2%} |

Per-class recall:

| class | recall |
|---|---|
{recall}

Most-confused pairs:

| true | predicted | images | share of the true class |
|---|---|---|---|
{pairs}

![reliability diagram](reliability.png)

## What the not-a-garment detector accepts

The detector (the energy of the logits, cues of the 28x28 view and of the picture's framing, conformal
p-values against garment photos rendered from the validation split) calls a picture a garment when its
in-distribution score is at least {source.trust.threshold:.4f}. It accepts {m.photo_accepted:.1%} of the {PHOTOS}
product photos above; of the non-garment pictures ({OUTLIERS_PER_KIND} per kind, held-out sources), it accepts — what
still fools it:

| kind | accepted as a garment |
|---|---|
{kinds}

AUROC, product photos against all these: {m.auroc:.4f}.

## Training

```bash
{command} --out RUN
```

Epoch {summary["chosen_epoch"]} of {summary["epochs"]} ({summary["chosen_by"]}), {summary["wall_seconds"]:.0f} s on
{hardware.get("cpu") or hardware.get("gpu") or summary["device"]} ({hardware.get("cpu_count", "?")} CPUs), torch
{summary["torch_version"]}, seed {summary["seed"]}. Source revision: `{revision}` (`-dirty`: the tree had
uncommitted changes).

Data: Fashion-MNIST (Xiao, Rasul and Vollgraf, 2017; MIT licence), SHA-256 of the decompressed files:

| file | SHA-256 |
|---|---|
{digests}

Card written with {packages}. ONNX graph SHA-256: `{facts["onnx_sha256"]}`.
"""


def changed_fields(cfg: dict[str, Any]) -> set[str]:
    """The config fields that differ from the defaults: the flags that reproduce the run."""
    defaults = config_lib.to_dict(config_lib.Config())
    return {k for k, v in cfg.items() if defaults.get(k) != v}


def _flag(name: str, value: Any) -> str:
    """The `fmnist train` flag that sets config field `name` to `value`."""
    flag = "--" + name.replace("_", "-")
    if isinstance(value, bool):
        return flag if value else f"--no-{flag[2:]}"
    return f"{flag} {','.join(map(str, value)) if isinstance(value, list | tuple) else value}"


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "-"
