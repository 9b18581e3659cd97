"""What travels with a model so that its answers can be trusted: the temperature of its probabilities
(calibration.py) and its "not a garment" detector (ood.py), fitted on the validation split when
training ends, stored in the checkpoint under "trust" and in an export's sidecar, applied the same
way to every model's logits by `judge`, which fmnist.answer turns into the answer `predict`, `eval` and
`serve` give.

A model trained without a validation split (`--val-size 0`), or with one smaller than the fits need
(`shortfall`), has neither: its probabilities are the plain softmax, flagged as uncalibrated, and every
picture gets the verdict "garment" with no score. A fit from too few images is worse than none (a
temperature from one image made the test ECE seven times worse), so none is made.
"""

from __future__ import annotations

import numbers
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fmnist.data import FashionMNIST, as_input, split_seed, trained_on, validation_split
from fmnist.errors import FmnistError
from fmnist.images import Cues, Framed
from fmnist.trust import calibration, ood
from fmnist.trust.cache import framing, reference_photos

if TYPE_CHECKING:  # imported where a fit or a report runs: judging an ONNX model's logits needs no torch
    import torch
    from torch import nn

KEY = "trust"
# Garment photos rendered from validation images to fit the detector's references and threshold, at
# references.REFERENCE_SIDE (96-256 pixels before a turn): rendering and framing them cost a seventh of what photos
# of 200-800 pixels cost when they were all upright, and fresh photos of that size keep about as many (docs/TRUST.md).
REFERENCE_PHOTOS = 400
# The detector's cues: the model's energy, the shape of the 28x28 view the model saw (ood.view_cues), its
# distance from the garments' principal subspace (`residual`, from the stored basis) and its coarse layout
# against class Gaussians of training images (`coarse`, from the stored gaussians), and for a photo the
# framing's cues. Measured per kind and leaving one kind out by benchmarks/ood.py (docs/TRUST.md); all but the
# framing's need only the pixels and the logits, so an exported graph computes them as the checkpoint does.
CUES = (
    *("energy", "span", "ink", "stroke", "sharpness", "residual", "coarse"),
    *("border_fit", "coverage", "fill", "largest_part"),
)
# The training images the `coarse` cue's Gaussians are fitted on, at most (every k-th: 11,000 of the default
# 55,000): pooling all of them takes a second on two vCPUs, and 11,000 give each class about 1,100 images for
# its 98 means and their covariance.
GAUSSIAN_IMAGES = 12_000
# The fewest validation images the temperature is fitted from (benchmarks/fit_sample.py, docs/TRUST.md:
# below it some draws gave a worse test NLL than the plain softmax). The detector needs its reference
# photos, one per validation image: its threshold keeps ood.KEEP of them.
MIN_TEMPERATURE_IMAGES = 100


@dataclass(frozen=True)
class Trust:
    temperature: float | None  # None: not fitted, probabilities are the plain softmax
    references: dict[str, np.ndarray]  # per cue, sorted values on validation garment photos; empty: no detector
    threshold: float  # the in-distribution score at or above which a picture counts as a garment
    # Per cue, sorted values on plain 28x28 validation images (pictures without framing cues); empty in a
    # detector fitted before they were (then a plain image is scored by the photos' model cue alone).
    plain: dict[str, np.ndarray] = field(default_factory=dict)
    # Per kind of picture ("photo", "plain", "textured": a photo on a textured surface, ood.SURFACE_CUES), the
    # sorted ood.unusualness of held-out garment pictures of that kind: the score is the conformal p-value of a
    # picture's unusualness among them (ood.calibrated).
    held_out: dict[str, np.ndarray] = field(default_factory=dict)
    # The garment views' mean and principal directions (ood.basis_of) that the `residual` cue measures against.
    basis: np.ndarray | None = None
    # Each class's mean and precision matrix of pooled training views (ood.gaussians_of), for the `coarse` cue.
    gaussians: np.ndarray | None = None
    # Under which a picture's second smallest p-value counts in its unusualness (ood.GATE); 0 in a detector fitted
    # before it was stored: the smallest alone.
    gate: float = 0.0

    @property
    def has_detector(self) -> bool:
        return bool(self.references)

    def to_dict(self, tensors: bool = False) -> dict[str, Any]:
        """The fields as plain values: lists of floats for JSON (an export's sidecar, a model card), or with
        `tensors` float64 CPU tensors for a checkpoint (`store`): torch.load(weights_only=True) unpickles the
        100,000 floats of a detector one Python object at a time, 10 times slower than a few tensors."""
        if tensors:
            import torch

            def array(values: np.ndarray) -> Any:
                return torch.from_numpy(np.array(values, dtype=np.float64))
        else:

            def array(values: np.ndarray) -> Any:
                return np.asarray(values, dtype=np.float64).tolist()

        def table(values: dict[str, np.ndarray]) -> dict[str, Any]:
            return {k: array(v) for k, v in values.items()}

        return {
            "temperature": self.temperature,
            "threshold": self.threshold,
            "references": table(self.references),
            "plain": table(self.plain),
            "held_out": table(self.held_out),
            "basis": None if self.basis is None else array(self.basis),
            "gaussians": None if self.gaussians is None else array(self.gaussians),
            "gate": self.gate,
        }

    @classmethod
    def from_dict(cls, facts: dict[str, Any] | None) -> Trust:
        """From `to_dict`'s output, lists or CPU tensors (checkpoint.load reads onto the CPU); None (a model saved
        before any was fitted) gives an unfitted Trust. Raises FmnistError for a gate outside [0, 1]."""
        if not facts:
            return UNFITTED

        def array(values: Any) -> np.ndarray:
            return np.asarray(values, dtype=np.float64)

        def arrays(key: str) -> dict[str, np.ndarray]:
            return {k: array(v) for k, v in (facts.get(key) or {}).items()}

        gate = float(facts.get("gate", 0.0))
        check_gate(gate, "a not-a-garment detector's gate")
        return cls(
            facts.get("temperature"),
            arrays("references"),
            round(float(facts.get("threshold", 0)), 12),  # as ood.fitted rounds it: older files hold 1 - keep unrounded
            arrays("plain"),
            arrays("held_out"),
            None if facts.get("basis") is None else array(facts["basis"]),
            None if facts.get("gaussians") is None else array(facts["gaussians"]),
            gate,
        )

    def probabilities(self, logits: calibration.Array) -> calibration.Array:
        """softmax(logits / T) [N, C], of the kind `logits` is (calibration.scaled)."""
        return calibration.scaled(logits, self.temperature)

    def scores(
        self, logits: torch.Tensor | np.ndarray, images: torch.Tensor | np.ndarray, cues: Sequence[Cues | None]
    ) -> np.ndarray | None:
        """[N] in-distribution scores in [0, 1] of the pictures whose 28x28 views are uint8 `images` [N, 28, 28],
        with logits [N, C] and framing `cues` (None for a plain 28x28 image); CPU tensors or numpy arrays; None
        without a detector. One vectorised pass over the batch (ood.calibrated; ood.combined for a detector of
        the earlier form)."""
        if not self.has_detector:
            return None
        values = cue_values(
            logits, images, cues, self.basis, self.gaussians, judge_surface="textured" not in self.held_out
        )
        if not self.held_out:
            return ood.combined(values, self.references)
        photo = np.array([c is not None for c in cues], dtype=bool)
        return ood.calibrated(values, photo, self.references, self.plain, self.held_out, self.gate)

    def describe(self) -> dict[str, Any]:
        """For /healthz and Model.describe(): what was fitted (`ood_detector`: its cues, joined by " + ")."""
        return {
            "temperature": self.temperature,
            "calibrated": self.temperature is not None,
            "ood_detector": " + ".join(self.references) if self.has_detector else None,
            "ood_threshold": self.threshold if self.has_detector else None,
        }


def cue_values(
    logits: torch.Tensor | np.ndarray,
    images: torch.Tensor | np.ndarray,
    cues: Sequence[Cues | None],
    basis: np.ndarray | None = None,
    gaussians: np.ndarray | None = None,
    judge_surface: bool = False,
) -> dict[str, np.ndarray]:
    """Every cue the detector may use, float64 [N] each: the energy of logits [N, C], the view cues of uint8
    images [N, 28, 28] (CPU tensors or numpy arrays), their `residual` from `basis` and their `coarse` distance
    from `gaussians` when there are those, and the framing cues (NaN for a plain 28x28 image; ood.picture_cues,
    `judge_surface` for a detector fitted before photos on a textured surface had a kind of their own)."""
    views = np.asarray(images)
    values = {"energy": energies(logits), **ood.view_cues(views), **ood.picture_cues(cues, judge_surface)}
    if basis is not None:
        values["residual"] = ood.residual(views, basis)
    if gaussians is not None:
        values["coarse"] = ood.coarse(views, gaussians)
    return values


UNFITTED = Trust(None, {}, 0.0)


def energies(logits: torch.Tensor | np.ndarray) -> np.ndarray:
    """The detector's energy cue, float64 [N], of logits [N, C] (a CPU tensor or a numpy array): computed the
    same way when the detector is fitted and when it scores, whatever runs the model."""
    return ood.energy(np.asarray(logits, dtype=np.float64))


@dataclass(frozen=True)
class Verdict:
    probabilities: torch.Tensor | np.ndarray  # [N, C] of the logits' kind, calibrated when a temperature was fitted
    scores: np.ndarray | None  # [N] in-distribution scores, None without a detector
    garment: np.ndarray  # bool [N]: looks like a Fashion-MNIST item (all True without a detector)


def check_threshold(threshold: float | None, name: str = "ood_threshold") -> None:
    """A threshold override must be an in-distribution score, 0..1 (None: the fitted one); FmnistError else, naming
    it as the caller knows it (`name`: "--ood-threshold" on the command line)."""
    if threshold is None:
        return
    if isinstance(threshold, bool) or not isinstance(threshold, numbers.Real) or not 0 <= threshold <= 1:
        raise FmnistError(f"{name} must be in [0, 1] (an in-distribution score), got {threshold!r}")


POOL = ("energy", *ood.VIEW_CUES, "residual", "coarse", *Cues.NAMES)  # the cues a detector can weigh


def check_cues(cues: Sequence[str], name: str = "cues") -> None:
    """A detector's cues must be known ones (POOL), each once, with the energy among them (the only cue of every
    kind of picture); FmnistError else, naming them as the caller knows them (`name`: "--cues")."""
    if not cues:
        raise FmnistError(f"{name}: no cue given; choose from {', '.join(POOL)}")
    unknown = [cue for cue in cues if cue not in POOL]
    if unknown:
        raise FmnistError(f"{name}: unknown cue(s) {', '.join(unknown)}; choose from {', '.join(POOL)}")
    if "energy" not in cues or len(set(cues)) != len(cues):
        raise FmnistError(f"{name} must hold the energy and each cue once, got {', '.join(cues)}")


def check_gate(gate: float, name: str = "gate") -> None:
    """A detector's gate (ood.GATE) must be in [0, 1], NaN refused (Python and the page would disagree on it);
    FmnistError else, naming it as the caller knows it (`name`: "--gate" on the command line)."""
    if not 0 <= gate <= 1:
        raise FmnistError(f"{name} must be in [0, 1], got {gate}")


def judge(
    trust: Trust,
    logits: calibration.Array,
    images: torch.Tensor | np.ndarray,
    cues: Sequence[Cues | None],
    threshold: float | None = None,
) -> Verdict:
    """Probabilities, scores and verdicts for logits [N, C] (a CPU tensor or a numpy array) of pictures whose
    28x28 views are uint8 `images` [N, 28, 28], with framing `cues` (None for a plain 28x28 image); `threshold`
    overrides the fitted one."""
    scores = trust.scores(logits, images, cues)
    limit = trust.threshold if threshold is None else threshold
    garment = np.ones(len(logits), dtype=bool) if scores is None else scores >= limit
    return Verdict(trust.probabilities(logits), scores, garment)


Logits = Callable[["torch.Tensor"], "torch.Tensor"]  # uint8 images [B, 28, 28] -> float32 logits [B, C] on the CPU


def model_logits(model: nn.Module, batch_size: int = 1000) -> Logits:
    """A PyTorch model as a Logits function, evaluated in eval mode without gradients, `batch_size` at a time."""
    import torch

    device = next(model.parameters()).device

    @torch.inference_mode()
    def call(images: torch.Tensor) -> torch.Tensor:
        was_training = model.training
        model.eval()
        try:
            return torch.cat([model(as_input(c.to(device))).float().cpu() for c in images.split(batch_size)])
        finally:
            model.train(was_training)

    return call


def shortfall(images: int, photos: int = REFERENCE_PHOTOS) -> str | None:
    """Why `images` validation images are too few to fit the temperature and the detector (on `photos`
    reference photos) from, in one sentence; None when they are enough. The one minimum-sample rule of
    every fit of a Trust (fit, fit_and_store, `calibrate`, an int8 export's refit)."""
    need = max(MIN_TEMPERATURE_IMAGES, photos)
    if images >= need:
        return None
    if not images:
        return (
            "no validation split (--val-size 0): probabilities stay uncalibrated and no non-garment detector "
            "is fitted; leave --val-size at its default (5000) for both"
        )
    return (
        f"a validation split of {images:,} images is below the {need:,} the temperature and the non-garment "
        f"detector are fitted from: probabilities stay uncalibrated and no detector is fitted; use --val-size {need} "
        "or more (default 5000)"
    )


# The images a model trained on, uint8 [N, 28, 28] (any device), with their labels: class indices [N] or target
# distributions [N, C]. The `coarse` cue's Gaussians are fitted on them (gaussians_of).
Training = tuple["torch.Tensor", "torch.Tensor"]


def fit(
    logits_of: Logits,
    val_x: torch.Tensor,
    val_y: torch.Tensor,
    training: Training,
    seed: int = 0,
    photos: int = REFERENCE_PHOTOS,
    *,
    gate: float = ood.GATE,
    cues: Sequence[str] = CUES,
) -> Trust:
    """Fit the temperature on the validation images (uint8 [N, 28, 28], labels [N]) and the detector on them,
    on `photos` garment photos rendered from them (trust.references, cached by trust.cache) and on the
    `training` images: `detector`, on `cues` with `gate`.

    Raises FmnistError for fewer validation images than the fits need (`shortfall`), or cues check_cues refuses.
    """
    check_cues(cues)
    if too_few := shortfall(len(val_x), photos):
        raise FmnistError(too_few)
    with framing(val_x, photos, seed) as pictures:  # framed in worker processes while the rest is fitted here
        logits = logits_of(val_x)
        temperature = calibration.fit_temperature(logits, val_y)
        gaussians = gaussians_of(training, cues=cues)
        fields = detector(logits_of, pictures(), val_x, logits, gaussians, gate=gate, cues=cues)
        return Trust(temperature, **fields)


def gaussians_of(training: Training, limit: int | None = None, cues: Sequence[str] = CUES) -> np.ndarray | None:
    """The `coarse` cue's class-conditional Gaussians, float64 [K, 1 + 98, 98] (ood.gaussians_of), of every k-th
    training image, `limit` at most (default GAUSSIAN_IMAGES: 11,000 of 55,000), by their labels (a target
    distribution's most likely class); None when the cue is not among `cues`. Raises ValueError without any
    training image."""
    if "coarse" not in cues:
        return None
    images, labels = training
    step = max(1, -(-len(images) // (limit or GAUSSIAN_IMAGES)))
    classes = labels[::step] if labels.ndim == 1 else labels[::step].argmax(1)
    return ood.gaussians_of(np.asarray(images[::step].cpu()), np.asarray(classes.cpu()))


def detector(
    logits_of: Logits,
    pictures: Sequence[Framed],
    plain: torch.Tensor,
    plain_logits: torch.Tensor,
    gaussians: np.ndarray | None,
    *,
    gate: float = ood.GATE,
    cues: Sequence[str] = CUES,
) -> dict[str, Any]:
    """The detector's fields of a Trust (ood.fitted on `cues` with `gate`, the basis of the `residual` cue when it is
    one, fitted on the plain images that give the references, and the `coarse` cue's `gaussians`, gaussians_of)
    from framed garment photos and plain garment images uint8 [M, 28, 28] with their logits [M, C]."""
    import torch

    basis = ood.basis_of(np.asarray(plain)[0::2]) if "residual" in cues else None
    views = torch.stack([f.image for f in pictures])
    photos = cue_values(logits_of(views), views, [f.cues for f in pictures], basis, gaussians)
    plain_values = cue_values(plain_logits, plain, [None] * len(plain), basis, gaussians)
    return {**ood.fitted(photos, plain_values, cues, gate=gate), "basis": basis, "gaussians": gaussians}


# The fewest held-out photos of a user's own kind that join the detector's references when a fine-tuned
# model's trust is refitted (refit), measured by benchmarks/refit_minimum.py (docs/ADAPT.md): from 30 on,
# 65 % or more of a new kind's fresh photos are kept on every domain tried and draws agree within
# 11 points. The temperature keeps the one rule of every fit, MIN_TEMPERATURE_IMAGES.
MIN_DETECTOR_PHOTOS = 30
# The share of a user's held-out photos that the detector fitted on Fashion-MNIST photos alone must keep for
# them to stay out of its references: a kind it already takes for garments teaches it nothing, and more
# references can only widen what it keeps. 90 % is the least share of a garment kind the detector should keep.
KEPT_ENOUGH = 0.9


def refit(
    logits_of: Logits,
    photos: Sequence[Framed],
    labels: torch.Tensor,
    val_x: torch.Tensor,
    training: Training,
    seed: int = 0,
    same_weights: float | None = None,
) -> tuple[Trust, list[str]]:
    """The trust of a model fine-tuned on a user's photos (fmnist.adapt), and one line per part not fitted or
    not learned.

    The temperature is fitted on the user's held-out `photos` (labels [N]) when there are at least
    MIN_TEMPERATURE_IMAGES; with fewer, it is `same_weights`: a temperature fitted for these very weights (the
    parent's, when the adapted model keeps them), or none. The detector is fitted as `fit` fits it, on the
    REFERENCE_PHOTOS garment photos rendered from the parent's validation images `val_x` (drawn with `seed`: the
    parent run's, for the parent's own references) and on its `training` images; when it keeps fewer than
    KEPT_ENOUGH of the user's photos and there are at least MIN_DETECTOR_PHOTOS of them, it is fitted again with
    them joined to its references, so that both kinds count as garments.
    """
    import torch

    notes = []
    temperature = None
    if len(photos) >= MIN_TEMPERATURE_IMAGES:
        temperature = calibration.fit_temperature(logits_of(torch.stack([p.image for p in photos])), labels)
    elif same_weights is not None:
        temperature = same_weights
        notes.append(
            f"{len(photos)} held-out photos are fewer than the {MIN_TEMPERATURE_IMAGES} a temperature is fitted "
            "from: the parent's temperature stays, fitted for the same weights"
        )
    else:
        notes.append(
            f"uncalibrated: {len(photos)} held-out photos are fewer than the {MIN_TEMPERATURE_IMAGES} a temperature "
            "is fitted from, so the probabilities are the plain softmax"
        )
    pictures = reference_photos(val_x, REFERENCE_PHOTOS, seed)
    plain_logits = logits_of(val_x)
    gaussians = gaussians_of(training)
    fitted = Trust(temperature, **detector(logits_of, pictures, val_x, plain_logits, gaussians))
    own = [p for p in photos if p.cues is not None]
    if not own:
        return fitted, notes
    views = torch.stack([p.image for p in own])
    kept = float(judge(fitted, logits_of(views), views, [p.cues for p in own]).garment.mean())
    if kept >= KEPT_ENOUGH:
        notes.append(
            f"the not-a-garment detector keeps {kept:.0%} of your held-out photos as it is, so it learns only "
            "Fashion-MNIST photos"
        )
        return fitted, notes
    if len(own) < MIN_DETECTOR_PHOTOS:
        notes.append(
            f"the not-a-garment detector learns only Fashion-MNIST photos: {len(own)} held-out photos are fewer "
            f"than the {MIN_DETECTOR_PHOTOS} it needs to learn yours (it keeps {kept:.0%} of them)"
        )
        return fitted, notes
    return Trust(temperature, **detector(logits_of, pictures + own, val_x, plain_logits, gaussians)), notes


def fit_and_store(
    model: nn.Module,
    val_x: torch.Tensor,
    val_y: torch.Tensor,
    training: Training,
    path: Path,
    seed: int,
    log: Callable[[str], None],
    photos: int = REFERENCE_PHOTOS,
    *,
    gate: float = ood.GATE,
    cues: Sequence[str] = CUES,
) -> Trust | None:
    """At the end of a run: fit on the validation split (and the `training` images) and add the result to the
    checkpoint at `path` (the one whose weights `model` holds). Without a validation split of the size the fits need
    (`shortfall`), nothing is fitted, which `log` is told (None)."""
    too_few = shortfall(len(val_x), photos)
    if too_few or not path.exists():
        log(too_few or shortfall(0, photos) or "")
        return None
    val_x, val_y = val_x.cpu(), val_y.cpu()  # on the training device; the fit's image work is numpy's
    t0 = time.perf_counter()
    trust = fit(model_logits(model), val_x, val_y, training, seed, photos, gate=gate, cues=cues)
    store(trust, path)
    log(
        f"trust: temperature {trust.temperature:.3f} and non-garment detector fitted on the validation split "
        f"in {time.perf_counter() - t0:.1f} s"
    )
    return trust


def calibrate_run(
    path: Path,
    load_data: Callable[[], FashionMNIST],
    log: Callable[[str], None],
    gate: float = ood.GATE,
    cues: Sequence[str] = CUES,
) -> Trust:
    """`fmnist calibrate`: fit the temperature and the detector (on `cues`, with `gate`) of the checkpoint at `path`
    again, on the validation split its run held out (data.validation_split of its config: the images `fit` never trained
    on), and store them in it. `load_data` gives the dataset, called once the checkpoint is found fit for it.
    Raises FmnistError when the checkpoint records no validation split or one too small (`shortfall`)."""
    from fmnist import checkpoint

    model, cfg, _ = checkpoint.load_model(path, "cpu")
    if not cfg.val_size:
        raise FmnistError(
            f"{path}: no validation split on record (trained with --val-size 0, or a state dict whose "
            "training images are unknown): the temperature and the non-garment detector are fitted only "
            "on images the model did not train on; train with fmnist train, which holds out 5,000"
        )
    if too_few := shortfall(cfg.val_size):
        raise FmnistError(f"{path}: {too_few}")
    dataset = load_data()
    _, val_idx = validation_split(dataset.train_labels, cfg)
    val_x, val_y = dataset.train_images[val_idx], dataset.train_labels[val_idx]
    fitted = fit_and_store(
        model, val_x, val_y, trained_on(dataset, cfg), path, split_seed(cfg), log, gate=gate, cues=cues
    )
    assert fitted is not None  # the split is large enough and the checkpoint exists
    return fitted


def store(trust_: Trust, path: Path) -> None:
    """Put `trust_` into the checkpoint at `path` (atomically: the file is the old one or the new one)."""
    from fmnist import checkpoint

    state = checkpoint.load(path)
    state[KEY] = trust_.to_dict(tensors=True)
    checkpoint.save(path, state)


def of_state(state: dict[str, Any]) -> Trust:
    """The Trust stored in a checkpoint or sidecar dict (unfitted when there is none)."""
    return Trust.from_dict(state.get(KEY))


COVERAGES = (1.0, 0.99, 0.95, 0.9, 0.8, 0.5)  # shares of images accepted in the risk-coverage table


@dataclass(frozen=True)
class Report:
    """What `fmnist eval` says about a model's probabilities and its detector on a labelled set."""

    trust: Trust
    before: calibration.Calibration  # plain softmax
    after: calibration.Calibration | None  # with the fitted temperature; None when there is none
    accepted: float | None  # share of images the detector calls garments (None without a detector)
    accepted_accuracy: float | None  # accuracy on those
    risk_coverage: list[tuple[float, float, float]]  # (coverage, accuracy of the accepted, least score accepted)
    # For the reliability diagram: top-class confidence and correctness per image, before and after.
    confidence: tuple[torch.Tensor, torch.Tensor | None]
    correct: torch.Tensor

    def as_dict(self) -> dict[str, Any]:
        return {
            "temperature": self.trust.temperature,
            "before": self.before.as_dict(),
            "after": None if self.after is None else self.after.as_dict(),
            "ood_threshold": self.trust.threshold if self.trust.has_detector else None,
            "accepted": self.accepted,
            "accepted_accuracy": self.accepted_accuracy,
            "risk_coverage": [{"coverage": c, "accuracy": a, "min_score": s} for c, a, s in self.risk_coverage],
        }

    def text(self) -> str:
        """What `fmnist eval` prints: calibration before and after the temperature, the detector's share
        accepted and its risk-coverage table."""
        b, a = self.before, self.after
        lines = [f"calibration (15-bin ECE, NLL, Brier): softmax ECE {b.ece:.2%} NLL {b.nll:.4f} Brier {b.brier:.4f}"]
        if a is None:
            lines[0] += "; no temperature fitted (trained without a validation split): probabilities are uncalibrated"
        else:
            lines[0] += (
                f"; with temperature {self.trust.temperature:.3f} ECE {a.ece:.2%} NLL {a.nll:.4f} Brier {a.brier:.4f}"
            )
        if self.accepted is None:
            return "\n".join([*lines, "non-garment detector: none fitted (trained without a validation split)"])
        lines += [
            f"non-garment detector (threshold {self.trust.threshold:.4f}): {self.accepted:.2%} of these images "
            f"accepted as garments, accuracy on them {self.accepted_accuracy:.2%}",
            "risk-coverage (the images with the highest in-distribution scores accepted):",
        ]
        lines += [
            f"  coverage {coverage:>4.0%}  accuracy {accuracy:.2%}  least score accepted {least:.4f}"
            for coverage, accuracy, least in self.risk_coverage
        ]
        return "\n".join(lines)


def report(
    trust_: Trust,
    logits: torch.Tensor,
    labels: torch.Tensor,
    images: torch.Tensor,
    cues: Sequence[Cues | None] | None = None,
) -> Report:
    """Calibration before and after the temperature (ECE, NLL, Brier), and the detector's verdicts on images
    (uint8 views [N, 28, 28]) with labels [N]: share accepted, accuracy on them, and accuracy against coverage
    when only the images with the highest in-distribution scores (then the highest confidence) are accepted.
    `cues`: each picture's framing cues, as `judge` (and so predict and the server) reads them; None: all
    plain 28x28."""
    import torch

    plain = logits.softmax(1)
    before = calibration.measure(plain, labels)
    scaled = trust_.probabilities(logits) if trust_.temperature is not None else None
    after = calibration.measure(scaled, labels) if scaled is not None else None
    probs = scaled if scaled is not None else plain
    confidence, predicted = probs.max(1)
    correct = predicted == labels
    verdict = judge(trust_, logits, images, [None] * len(logits) if cues is None else cues)
    accepted = accepted_accuracy = None
    rows: list[tuple[float, float, float]] = []
    if verdict.scores is not None:
        garment = torch.from_numpy(verdict.garment)
        accepted = float(garment.double().mean())
        accepted_accuracy = float(correct[garment].double().mean()) if garment.any() else float("nan")
        order = np.lexsort((-confidence.numpy(), -verdict.scores))  # best score first, then most confident
        for coverage in COVERAGES:
            keep = order[: max(1, round(coverage * len(order)))]
            rows.append((coverage, float(correct[keep].double().mean()), float(verdict.scores[keep].min())))
    return Report(
        trust_,
        before,
        after,
        accepted,
        accepted_accuracy,
        rows,
        (plain.max(1).values, None if scaled is None else scaled.max(1).values),
        correct,
    )
