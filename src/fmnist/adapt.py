"""Fine-tune a trained model on a user's labelled photos without forgetting Fashion-MNIST (`fmnist adapt`).

The photos (one folder per class, as `eval --images` reads them: folders.py) are framed exactly as
`predict` frames them. Part of each class is held out: it chooses the epoch and refits the model's
temperature and not-a-garment detector (trust.refit). The rest is trained on, each photo in `repeats`
augmented copies per epoch, mixed with experience replay: a fixed memory of Fashion-MNIST
training images from the parent's own training split, `rehearsal` of them per photo seen, so the
original task keeps its gradient (the exemplar memory of iCaRL, Rebuffi, Kolesnikov, Sperl and Lampert,
CVPR 2017; experience replay as in Chaudhry et al. 2019, "On Tiny Episodic Memories in Continual
Learning"). The training itself is train.fit's: the same step, checkpoints, exact resume, atomic writes.
The weights kept are then interpolated between the parent's and the fine-tuned ones (weight-space
ensembling, WiSE-FT: Wortsman et al., "Robust fine-tuning of zero-shot models", CVPR 2022): of the
mixes that keep Fashion-MNIST validation accuracy within `recipe.forgetting` of the parent's, the one
best on the held-out photos (`choose_mix`).

A run directory of `fmnist adapt` is a training run (run_dir.py) plus:

    parent.json          the parent checkpoint: path and SHA-256
    adapt.json           the recipe, the photos folder and each photo's SHA-256, label and part
    adapt-report.json    before and after: the held-out photos, the Fashion-MNIST test set (`Report`)
    before_after.png     the same, drawn
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from fmnist import checkpoint, data, folders, models, trust
from fmnist.atomic import atomic_write
from fmnist.augment import augment
from fmnist.config import AdaptRecipe as Recipe
from fmnist.config import Config
from fmnist.data import CLASSES, FashionMNIST
from fmnist.errors import FmnistError
from fmnist.evaluate import evaluate
from fmnist.folders import LabelledImages
from fmnist.images import Framed, skipped_line
from fmnist.inference import Predictor, TorchPredictor
from fmnist.records import Parent
from fmnist.run_dir import RunDir, trainable_path
from fmnist.training import Split, fit

# A class with fewer photos than this holds none out: each one is worth more trained on.
MIN_PHOTOS_TO_HOLD_OUT = 4
# The interpolation weights tried between the parent (0) and the fine-tuned model (1), as in WiSE-FT.
MIXES = tuple(i / 10 for i in range(11))
# best.pt's key for the fine-tuned weights before interpolation, so that a resumed run mixes them again.
TUNED_KEY = "tuned_model"


@dataclass
class Photos:
    """The user's photos, split: framed images and labels, which part each is in, and what was left out."""

    found: LabelledImages
    held_out: torch.Tensor  # bool [N]
    digests: list[str]  # SHA-256 of each file
    notes: list[str] = field(default_factory=list)

    def part(self, held_out: bool) -> tuple[torch.Tensor, torch.Tensor, list[Framed]]:
        index = torch.nonzero(self.held_out == held_out).flatten()
        framed = [Framed(self.found.images[i].numpy(), self.found.cues[i]) for i in index.tolist()]
        return self.found.images[index], self.found.labels[index], framed

    def manifest(self) -> list[dict[str, Any]]:
        return [
            {"path": str(p), "sha256": d, "label": int(y), "held_out": bool(h)}
            for p, d, y, h in zip(self.found.paths, self.digests, self.found.labels, self.held_out, strict=True)
        ]


def read_photos(images_dir: str | Path, holdout: float, seed: int, seen: frozenset[str] = frozenset()) -> Photos:
    """The photos under `images_dir` (folders.load_folders, duplicates counted once), each class's
    `holdout` share held out at random (`seed`), those whose SHA-256 is in `seen` (photos the parent was adapted on)
    last; one note per thing left out or short, and one when photos in `seen` had to be held out."""
    found = folders.without_duplicates(folders.load_folders(images_dir, skip_unknown=True))
    digests = [folders.digest(p) for p in found.paths]
    notes = list(found.problems)
    if summary := skipped_line(found.skipped):
        notes.append(summary)
    counts = torch.bincount(found.labels, minlength=len(CLASSES)).tolist()
    if missing := [CLASSES[c] for c, n in enumerate(counts) if n == 0]:
        notes.append(f"no photos of {', '.join(missing)}: adapting the other classes (these keep Fashion-MNIST's)")
    held_out = torch.zeros(len(found.labels), dtype=torch.bool)
    generator = torch.Generator().manual_seed(seed)
    for c, n in enumerate(counts):
        if 0 < n < MIN_PHOTOS_TO_HOLD_OUT:
            notes.append(
                f"{CLASSES[c]}: {n} photo{'s' if n > 1 else ''}, all trained on and none held out to check the result "
                f"({MIN_PHOTOS_TO_HOLD_OUT}+ let some be held out)"
            )
        elif n:
            members = torch.nonzero(found.labels == c).flatten()[torch.randperm(n, generator=generator)]
            unseen = torch.tensor([digests[i] not in seen for i in members.tolist()], dtype=torch.bool)
            members = torch.cat([members[unseen], members[~unseen]])  # the parent's own photos would flatter it
            take = max(1, round(holdout * n)) if holdout else 0
            held_out[members[:take]] = True
    if flattering := sum(bool(h) and d in seen for h, d in zip(held_out.tolist(), digests, strict=True)):
        notes.append(
            f"{flattering} of the {int(held_out.sum())} held-out photos are ones the parent was adapted on: the "
            "parent's figures on them flatter it; photos it has not seen would check both models fairly"
        )
    return Photos(found, held_out, digests, notes)


def build_split(
    photos: Photos, dataset: FashionMNIST, parent_cfg: Config, recipe: Recipe, parent: torch.nn.Module | None = None
) -> Split:
    """Training: `recipe.repeats` copies of each training photo, augmented once (`photo_copies`), then the
    Fashion-MNIST memory (a stratified draw from the parent's training split), replayed as the parent learned
    it; validation: the held-out photos; test: Fashion-MNIST's.

    With the `parent` model given, the targets are distributions [N, C]: one-hot for the photos, the parent's
    probabilities for the memory, so that rehearsal keeps the parent's answers rather than only its labels
    (distillation on the replay memory: learning without forgetting, Li and Hoiem, ECCV 2016, on stored
    images as in dark experience replay, Buzzega et al., NeurIPS 2020)."""
    x, y, _ = photos.part(held_out=False)
    if not len(x):
        raise FmnistError("no photo is left to train on once each class's share is held out; add photos")
    train_idx = data.training_indices(dataset.train_labels, parent_cfg)
    memory = min(round(recipe.rehearsal * recipe.repeats * len(x)), len(train_idx) - 1)
    if memory > 0:
        _, pick = data.stratified_split(dataset.train_labels[train_idx], memory, recipe.seed + 1)
        train_idx = train_idx[pick]
    else:
        train_idx = train_idx[:0]
    val_x, val_y, _ = photos.part(held_out=True)
    memory_x, memory_y = dataset.train_images[train_idx], dataset.train_labels[train_idx]
    photos_y = y.repeat(recipe.repeats)
    if parent is not None:  # distillation: the photos' one-hot labels, the memory's parent probabilities
        photos_y = F.one_hot(photos_y, len(CLASSES)).float()
        memory_y = trust.model_logits(parent)(memory_x).softmax(1) if len(memory_x) else photos_y[:0]
    return Split(
        torch.cat([photo_copies(x, recipe), memory_x]),
        torch.cat([photos_y, memory_y]),
        val_x,
        val_y,
        dataset.test_images,
        dataset.test_labels,
    )


def photo_copies(x: torch.Tensor, recipe: Recipe) -> torch.Tensor:
    """`recipe.repeats` copies of the photos uint8 [N, 28, 28], in order ([repeats * N, 28, 28]), each but the
    first augmented by `recipe.augment` (augment.py) with a draw of its own, seeded by `recipe.seed`.

    The copies are drawn once rather than every batch, so that the Fashion-MNIST memory beside them is not
    augmented: the parent learned those images unaugmented, and a memory shifted a pixel or two no longer
    rehearses the task it learned (on the reference MLP, translating the memory as well cost 2-3 points of
    Fashion-MNIST validation accuracy before the mix; docs/ADAPT.md)."""
    copies = x.repeat(recipe.repeats, 1, 1)
    if not recipe.augment or recipe.repeats < 2:
        return copies
    generator = torch.Generator().manual_seed(recipe.seed)
    shifted = augment(data.as_input(copies[len(x) :]), recipe.augment, generator)
    copies[len(x) :] = (shifted * 255).round().clamp(0, 255).to(torch.uint8).reshape(-1, *x.shape[1:])
    return copies


def adapted_config(parent_cfg: Config, parent_file: Path, recipe: Recipe) -> Config:
    """The parent's architecture and data settings (its validation split too: split_seed), with the recipe's
    optimisation, starting from its weights."""
    return parent_cfg.replace(
        init_from=str(parent_file),
        freeze=recipe.freeze,
        epochs=recipe.epochs,
        lr=recipe.lr,
        optimizer="adam",
        schedule="cosine",
        warmup_epochs=0.0,
        augment=(),  # the photos' copies are augmented once (photo_copies), the memory never
        mixup_alpha=0.0,
        cutmix_alpha=0.0,
        ema_decay=0.0,
        patience=0,
        max_time=0.0,
        train_subset=0,
        seed=recipe.seed,
        split_seed=data.split_seed(parent_cfg),
    )


@dataclass(frozen=True)
class Side:
    """One model's figures: on the held-out photos (accuracy, share judged a garment) and on Fashion-MNIST test."""

    photos_accuracy: float | None  # None when no photo was held out
    photos_kept: float | None  # None without a detector or without held-out photos
    test_accuracy: float


@dataclass(frozen=True)
class Mix:
    """The chosen interpolation: weights parent + alpha * (fine-tuned - parent), and its accuracies (0..1) on
    the held-out photos (None without any) and on the parent's Fashion-MNIST validation split, beside the parent's."""

    alpha: float
    photos_accuracy: float | None
    fashion_accuracy: float
    parent_fashion_accuracy: float


@dataclass(frozen=True)
class Report:
    run: Path
    parent: Parent  # path, sha256
    mix: Mix
    before: Side
    after: Side
    photos: dict[str, int]  # trained, held_out
    trust: dict[str, Any]  # trust.Trust.describe() of the adapted model
    notes: list[str]
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "run": str(self.run),
            "parent": self.parent,
            "mix": dataclasses.asdict(self.mix),
            "before": dataclasses.asdict(self.before),
            "after": dataclasses.asdict(self.after),
            "photos": self.photos,
            "trust": self.trust,
            "notes": self.notes,
            "seconds": self.seconds,
        }

    def text(self) -> str:
        def pct(value: float | None) -> str:
            return "-" if value is None else f"{value:.2%}"

        rows = [
            ("held-out photos: accuracy", self.before.photos_accuracy, self.after.photos_accuracy),
            ("held-out photos: kept as garments", self.before.photos_kept, self.after.photos_kept),
            ("Fashion-MNIST test: accuracy", self.before.test_accuracy, self.after.test_accuracy),
        ]
        lines = [
            f"parent {self.parent['path']} (sha256 {self.parent['sha256']})",
            f"{'':36}{'parent':>10}{'adapted':>10}",
        ]
        lines += [f"{name:36}{pct(b):>10}{pct(a):>10}" for name, b, a in rows]
        calibrated = "calibrated" if self.trust["calibrated"] else "uncalibrated"
        mix = self.mix
        lines.append(
            f"weights: parent + {mix.alpha:g} x (fine-tuned - parent); Fashion-MNIST validation accuracy "
            f"{mix.parent_fashion_accuracy:.2%} -> {mix.fashion_accuracy:.2%}"
        )
        if mix.alpha == 0:
            lines.append(
                "no mix of the fine-tune read your held-out photos better than the parent within --forgetting, so "
                "the adapted run keeps the parent's weights; its temperature and detector are refitted to your photos"
            )
        lines.append(
            f"{self.photos['trained']} photos trained on, {self.photos['held_out']} held out; "
            f"probabilities {calibrated}; {self.seconds:.1f} s"
        )
        return "\n".join(lines)


def side(predictor: Predictor, held: list[Framed], held_y: torch.Tensor, dataset: FashionMNIST) -> Side:
    """A model's figures: accuracy and detector verdicts on the held-out photos, accuracy on Fashion-MNIST test."""
    photos_accuracy = photos_kept = None
    if held:
        views = torch.stack([f.image for f in held])
        logits = predictor.logits(views)
        photos_accuracy = float((logits.argmax(1) == held_y).double().mean())
        if predictor.trust.has_detector:
            verdict = trust.judge(predictor.trust, logits, views, [f.cues for f in held])
            photos_kept = float(np.mean(verdict.garment))
    test = torch.cat([predictor.logits(c).argmax(1) for c in dataset.test_images.split(1000)])
    return Side(photos_accuracy, photos_kept, float((test == dataset.test_labels).double().mean()))


def adapt(
    parent: str | Path | None,
    images_dir: str | Path | None,
    out: str | Path,
    recipe: Recipe | None = None,
    *,
    resume: bool = False,
    dataset: FashionMNIST | None = None,
    log: Callable[[str], None] | None = None,
) -> Report:
    """Fine-tune `parent` (a checkpoint or run directory) on the labelled photos under `images_dir` into the
    new run directory `out`; with `resume`, continue the run in `out` (parent, photos and recipe come from
    its adapt.json). `log` receives the notes and progress lines (nothing is printed without it).

    Returns the before/after Report, also written to out/adapt-report.json and out/before_after.png.
    Raises FmnistError (one line) for a parent, folder or run directory that cannot be used, and when the
    photos or the parent changed under a run being resumed.
    """
    t0 = time.perf_counter()
    say = log or (lambda _line: None)
    run = RunDir(out)
    settings = _resume_settings(run) if resume else _new_settings(run, parent, images_dir, recipe)
    recipe = Recipe(**settings["recipe"])  # the JSON list of augmentations becomes its tuple there
    parent_file = Path(settings["parent"]["path"])
    if checkpoint.sha256(parent_file) != settings["parent"]["sha256"]:
        raise FmnistError(f"{parent_file}: the parent checkpoint changed since this run started; start a new run")
    parent_model, parent_cfg, parent_state = checkpoint.load_model(parent_file)
    models.check_freeze(parent_model, recipe.freeze)  # before the run directory is made
    photos = read_photos(settings["images"], recipe.holdout, recipe.seed, _adapted_on(parent_file))
    if resume and photos.manifest() != settings["photos"]:
        raise FmnistError(f"{_changed(settings['photos'], photos.manifest())}; start a new run")
    for note in photos.notes:
        say(note)
    if not resume:
        atomic_write(run.path / "adapt.json", json.dumps({**settings, "photos": photos.manifest()}, indent=2) + "\n")
    dataset = dataset or data.load(parent_cfg.data_dir or None, allow_download=False)
    cfg = adapted_config(parent_cfg, parent_file, recipe)
    split = build_split(photos, dataset, parent_cfg, recipe, parent_model if recipe.distill else None)
    trained = int((~photos.held_out).sum())
    say(
        f"adapting on {trained} photos x {recipe.repeats} and {len(split.train_x) - trained * recipe.repeats} "
        "Fashion-MNIST images per epoch"
    )
    result = fit(cfg, run.path, split, resume=resume and run.is_run(), log=say, progress=False)
    held_x, held_y, held = photos.part(held_out=True)
    fashion_x, fashion_y = _fashion_check(dataset, parent_cfg)
    mix = choose_mix(result.model, parent_model.state_dict(), run, (held_x, held_y), (fashion_x, fashion_y), recipe)
    fashion_train = _fashion_training(dataset, parent_cfg)
    # The parent's draw of reference photos (its split's seed), not the recipe's: a detector refitted on another draw
    # moves the share of non-garments rejected by several points with nothing learned.
    logits_of = trust.model_logits(result.model)
    same = trust.of_state(parent_state).temperature if mix.alpha == 0 else None
    refitted, notes = trust.refit(logits_of, held, held_y, fashion_x, fashion_train, data.split_seed(parent_cfg), same)
    trust.store(refitted, run.chosen_checkpoint())
    for note in notes:
        say(note)
    before = side(TorchPredictor(parent_file), held, held_y, dataset)
    after_predictor = TorchPredictor(run.path)
    _restate_summary(run, result.model, dataset, (held_x, held_y), mix)
    report = Report(
        run.path,
        settings["parent"],
        mix,
        before,
        side(after_predictor, held, held_y, dataset),
        {"trained": int((~photos.held_out).sum()), "held_out": len(held)},
        refitted.describe(),
        photos.notes + notes,
        time.perf_counter() - t0,
    )
    _write_report(run, report)
    return report


def interpolate(
    parent: dict[str, torch.Tensor], tuned: dict[str, torch.Tensor], alpha: float
) -> dict[str, torch.Tensor]:
    """parent + alpha * (tuned - parent) for each floating-point tensor of two state dicts of one architecture
    (WiSE-FT); other tensors (counters) as `tuned` has them."""
    return {k: torch.lerp(parent[k], v, alpha) if v.is_floating_point() else v.clone() for k, v in tuned.items()}


def choose_mix(
    model: torch.nn.Module,
    parent: dict[str, torch.Tensor],
    run: RunDir,
    photos: tuple[torch.Tensor, torch.Tensor],
    fashion: tuple[torch.Tensor, torch.Tensor],
    recipe: Recipe,
) -> Mix:
    """Load into `model` and into the run's chosen checkpoint the interpolation of MIXES, between the parent's
    weights and the fine-tuned ones there, that is most accurate on the held-out `photos` (images uint8
    [N, 28, 28], labels [N]) among those within `recipe.forgetting` of the parent's accuracy on the
    Fashion-MNIST images `fashion`; ties go to the better on Fashion-MNIST, and without held-out photos the
    largest such alpha is taken. The fine-tuned weights stay in the checkpoint under TUNED_KEY."""
    path = run.chosen_checkpoint()
    state = checkpoint.load(path)
    tuned = state.get(TUNED_KEY, state["model"])

    def accuracy(x: torch.Tensor, y: torch.Tensor) -> float:
        return float((trust.model_logits(model)(x).argmax(1) == y).double().mean())

    tried = []
    for alpha in MIXES:
        model.load_state_dict(interpolate(parent, tuned, alpha))
        held = accuracy(*photos) if len(photos[1]) else None
        tried.append(Mix(alpha, held, accuracy(*fashion), 0.0))
    floor = tried[0].fashion_accuracy - recipe.forgetting
    allowed = [m for m in tried if m.fashion_accuracy >= floor]
    best = max(
        allowed,
        key=lambda m: (m.photos_accuracy, m.fashion_accuracy) if m.photos_accuracy is not None else (m.alpha, 0),
    )
    weights = interpolate(parent, tuned, best.alpha)
    model.load_state_dict(weights)
    checkpoint.save(path, {**state, "model": weights, TUNED_KEY: tuned, "mix": best.alpha})
    return dataclasses.replace(best, parent_fashion_accuracy=tried[0].fashion_accuracy)


def _restate_summary(
    run: RunDir, model: torch.nn.Module, dataset: FashionMNIST, held: tuple[torch.Tensor, torch.Tensor], mix: Mix
) -> None:
    """summary.json's validation (the `held` out photos, images uint8 [N, 28, 28] and labels [N]) and test
    figures and its weights, for the interpolated weights the run now stands for."""
    summary = run.read_summary()
    if summary is None:
        return
    test = evaluate(model, dataset.test_images, dataset.test_labels)
    summary["test_accuracy"], summary["test_loss"] = test.accuracy, test.loss
    if len(held[1]):
        val = evaluate(model, *held)
        summary["val_accuracy"], summary["val_loss"] = val.accuracy, val.loss
    summary["weights"] = f"parent + {mix.alpha:g} x (fine-tuned - parent)"
    run.write_summary(summary)


def _fashion_check(dataset: FashionMNIST, parent_cfg: Config) -> tuple[torch.Tensor, torch.Tensor]:
    """Fashion-MNIST images neither model trained on, and their labels: the parent's validation split (or,
    for a parent trained on every image, a slice of them all). They keep the mix from forgetting and give the
    detector its reference photos."""
    if parent_cfg.val_size:
        _, val_idx = data.validation_split(dataset.train_labels, parent_cfg)
    else:
        val_idx = torch.arange(trust.REFERENCE_PHOTOS)
    return dataset.train_images[val_idx], dataset.train_labels[val_idx]


def _fashion_training(dataset: FashionMNIST, parent_cfg: Config) -> tuple[torch.Tensor, torch.Tensor]:
    """The Fashion-MNIST images the parent trained on and their labels, less those _fashion_check gives the
    detector's references (a parent without a validation split trained on those too): the detector's `coarse`
    cue is fitted on them (trust.gaussians_of)."""
    train_idx = data.training_indices(dataset.train_labels, parent_cfg)
    if not parent_cfg.val_size:
        train_idx = train_idx[train_idx >= trust.REFERENCE_PHOTOS]
    return dataset.train_images[train_idx], dataset.train_labels[train_idx]


def _new_settings(run: RunDir, parent: str | Path | None, images_dir: str | Path | None, recipe: Recipe | None) -> dict:
    if parent is None or images_dir is None:
        raise FmnistError("a new adaptation needs a parent model and a folder of photos (--images)")
    if run.is_run() or (run.path / "adapt.json").exists():
        raise FmnistError(run.taken())
    parent_file = parent_checkpoint(parent)
    home = _home(parent_file)
    if RunDir(home).is_run() and (home == run.path.resolve() or home in run.path.resolve().parents):
        raise FmnistError(f"{run.path}: inside the parent's run {home}; give the adapted run a directory of its own")
    return {
        "parent": {"path": str(parent_file.resolve()), "sha256": checkpoint.sha256(parent_file)},
        "images": str(Path(images_dir).resolve()),
        "recipe": (recipe or Recipe()).as_dict(),
    }


def _home(checkpoint_file: Path) -> Path:
    """The folder a checkpoint is in (not a linked file's target's), or, for a run's checkpoint, its run directory."""
    home = checkpoint_file.absolute().parent.resolve()
    return home.parent if home.name == "checkpoints" else home


def _adapted_on(parent_file: Path) -> frozenset[str]:
    """SHA-256 of the photos the parent was trained on by `fmnist adapt`, and its own parents before it (their runs'
    adapt.json); none for a parent that no adaptation made, or whose adapt.json cannot be read."""
    seen: set[str] = set()
    path, visited = parent_file, set()
    while path not in visited:
        visited.add(path)
        try:
            settings = json.loads((_home(path) / "adapt.json").read_text())
            seen |= {photo["sha256"] for photo in settings["photos"] if not photo["held_out"]}
            path = Path(settings["parent"]["path"])
        except (OSError, ValueError, KeyError, TypeError):
            break
    return frozenset(seen)


def parent_checkpoint(parent: str | Path) -> Path:
    """The checkpoint a parent names (run_dir.model_path). Raises FmnistError for an ONNX export."""
    return trainable_path(parent, f"{parent}: an export cannot be fine-tuned; adapt the checkpoint or run it came from")


def _changed(started: list[dict[str, Any]], now: list[dict[str, Any]]) -> str:
    """What differs between the photos an adaptation started with and those found now (manifests), in words."""
    before, after = {p["path"]: p for p in started}, {p["path"]: p for p in now}
    if gone := sorted(set(before) - set(after)):
        return f"{gone[0]}: gone (or no longer read) since this run started, with {len(gone) - 1} more"
    if new := sorted(set(after) - set(before)):
        return f"{new[0]}: added since this run started, with {len(new) - 1} more"
    path = next(p for p in sorted(after) if after[p] != before[p])
    return f"{path}: changed since this run started"


def _resume_settings(run: RunDir) -> dict:
    if not run.path.is_dir():
        raise FmnistError(f"{run.path}: no such directory; nothing to resume")
    path = run.path / "adapt.json"
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise FmnistError(f"{run.path}: not an adaptation run (no adapt.json); nothing to resume") from None
    except (OSError, json.JSONDecodeError) as e:
        raise FmnistError(f"{path}: cannot read it: {e}") from None


def _write_report(run: RunDir, report: Report) -> None:
    from fmnist import plots  # matplotlib: only when a run finishes

    atomic_write(run.path / "adapt-report.json", json.dumps(report.as_dict(), indent=2) + "\n")
    held = f"held-out photos\n{{}} (n={report.photos['held_out']})"
    names = [held.format("accuracy"), held.format("kept"), "Fashion-MNIST\ntest accuracy"]
    values = [
        [getattr(s, k) for k in ("photos_accuracy", "photos_kept", "test_accuracy")]
        for s in (report.before, report.after)
    ]
    title = (
        f"fmnist adapt: {report.photos['trained']} photos trained on, "
        f"weights {report.mix.alpha:g} of the way to fine-tuned"
    )
    plots.plot_before_after(names, values[0], values[1], run.path / "before_after.png", title=title)
