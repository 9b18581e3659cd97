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

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fmnist.data import FashionMNIST, as_input, validation_split
from fmnist.errors import FmnistError
from fmnist.images import Cues, Framed, load_picture
from fmnist.trust import calibration, ood
from fmnist.trust.references import REFERENCE_SIDE, render_set

if TYPE_CHECKING:  # imported where a fit or a report runs: judging an ONNX model's logits needs no torch
    import torch
    from torch import nn

KEY = "trust"
# Garment photos rendered from validation images to fit the detector's references and threshold, at
# references.REFERENCE_SIDE (96-256 pixels): rendering and framing them costs a seventh of what photos of
# 200-800 pixels cost, and fresh photos of that size keep about as many (docs/TRUST.md).
REFERENCE_PHOTOS = 400
# The detector's cues: the picture's framing cues and the model's energy. Chosen on benchmarks/ood.py
# against max-softmax and Mahalanobis distance (docs/TRUST.md); energy needs only the logits, so an
# exported model computes it exactly as the checkpoint does.
CUES = ("energy", *Cues.NAMES)
# The fewest validation images the temperature is fitted from (benchmarks/fit_sample.py, docs/TRUST.md:
# below it some draws gave a worse test NLL than the plain softmax). The detector needs its reference
# photos, one per validation image: its threshold keeps ood.KEEP of them.
MIN_TEMPERATURE_IMAGES = 100


@dataclass(frozen=True)
class Trust:
    temperature: float | None  # None: not fitted, probabilities are the plain softmax
    references: dict[str, np.ndarray]  # per cue, sorted values on validation garment photos; empty: no detector
    threshold: float  # the in-distribution score at or above which a picture counts as a garment

    @property
    def has_detector(self) -> bool:
        return bool(self.references)

    def to_dict(self) -> dict[str, Any]:
        return {
            "temperature": self.temperature,
            "threshold": self.threshold,
            "references": {k: [float(x) for x in v] for k, v in self.references.items()},
        }

    @classmethod
    def from_dict(cls, facts: dict[str, Any] | None) -> Trust:
        """From `to_dict`'s output; None (a model saved before any was fitted) gives an unfitted Trust."""
        if not facts:
            return UNFITTED
        return cls(
            facts.get("temperature"),
            {k: np.asarray(v, dtype=np.float64) for k, v in facts.get("references", {}).items()},
            float(facts.get("threshold", 0)),
        )

    def probabilities(self, logits: calibration.Array) -> calibration.Array:
        """softmax(logits / T) [N, C], of the kind `logits` is (calibration.scaled)."""
        return calibration.scaled(logits, self.temperature)

    def scores(self, logits: torch.Tensor | np.ndarray, cues: Sequence[Cues | None]) -> np.ndarray | None:
        """[N] in-distribution scores in [0, 1] (ood.combined) of logits [N, C] (a CPU tensor or a numpy
        array), or None without a detector."""
        if not self.has_detector:
            return None
        values: dict[str, np.ndarray] = {"energy": energies(logits), **ood.picture_cues(cues)}
        return ood.combined(values, self.references)

    def describe(self) -> dict[str, Any]:
        """For /healthz and `eval --json`: what was fitted."""
        return {
            "temperature": self.temperature,
            "calibrated": self.temperature is not None,
            "ood_detector": "energy + picture cues" if self.has_detector else None,
            "ood_threshold": self.threshold if self.has_detector else None,
        }


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


def check_threshold(threshold: float | None) -> None:
    """An --ood-threshold override must be an in-distribution score, 0..1 (None: the fitted one); FmnistError else."""
    if threshold is not None and not 0 <= threshold <= 1:
        raise FmnistError(f"--ood-threshold must be in [0, 1] (an in-distribution score), got {threshold}")


def judge(
    trust: Trust, logits: calibration.Array, cues: Sequence[Cues | None], threshold: float | None = None
) -> Verdict:
    """Probabilities, scores and verdicts for logits [N, C] (a CPU tensor or a numpy array) of pictures with
    framing `cues` (None for a plain 28x28 image); `threshold` overrides the fitted one."""
    scores = trust.scores(logits, cues)
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


def fit(
    logits_of: Logits, val_x: torch.Tensor, val_y: torch.Tensor, seed: int = 0, photos: int = REFERENCE_PHOTOS
) -> Trust:
    """Fit the temperature on the validation images (uint8 [N, 28, 28], labels [N]) and the detector's
    references and threshold on `photos` garment photos rendered from them (trust.references).

    The threshold keeps ood.KEEP of the reference photos, each scored against the others (leave one out).
    Raises FmnistError for fewer validation images than the fits need (`shortfall`).
    """
    if too_few := shortfall(len(val_x), photos):
        raise FmnistError(too_few)
    temperature = calibration.fit_temperature(logits_of(val_x), val_y)
    return Trust(temperature, *detector(logits_of, reference_photos(val_x, photos, seed)))


def reference_photos(val_x: torch.Tensor, photos: int, seed: int) -> list[Framed]:
    """`photos` garment photos rendered from validation images [N, 28, 28] (trust.references), framed."""
    rendered = render_set(val_x.cpu(), min(photos, len(val_x)), seed, REFERENCE_SIDE)
    return [load_picture(p.data, f"reference {p.index}") for p in rendered]


def detector(logits_of: Logits, pictures: Sequence[Framed]) -> tuple[dict[str, np.ndarray], float]:
    """The detector's references and threshold from framed garment pictures that have framing cues."""
    import torch

    logits = logits_of(torch.stack([f.image for f in pictures]))
    values = {"energy": energies(logits), **ood.picture_cues([f.cues for f in pictures])}
    references = {name: np.sort(values[name]) for name in CUES}
    return {name: ood.reference_of(v) for name, v in references.items()}, ood.threshold_of(values, references)


# The fewest held-out photos of a user's own kind that join the detector's references when a fine-tuned
# model's trust is refitted (refit), measured by benchmarks/refit_minimum.py (docs/ADAPT.md): from 30 on,
# 65 % or more of a new kind's fresh photos are kept on every domain tried and draws agree within
# 11 points. The temperature keeps the one rule of every fit, MIN_TEMPERATURE_IMAGES.
MIN_DETECTOR_PHOTOS = 30


def refit(
    logits_of: Logits, photos: Sequence[Framed], labels: torch.Tensor, val_x: torch.Tensor, seed: int = 0
) -> tuple[Trust, list[str]]:
    """The trust of a model fine-tuned on a user's photos (fmnist.adapt), and one line per part not fitted.

    The temperature is fitted on the user's held-out `photos` (labels [N]) when there are at least
    MIN_TEMPERATURE_IMAGES; the detector's references are the REFERENCE_PHOTOS garment photos rendered
    from the parent's validation images `val_x`, as `fit` draws them, joined by the user's photos when
    there are at least MIN_DETECTOR_PHOTOS, so that both kinds count as garments.
    """
    import torch

    notes = []
    temperature = None
    if len(photos) >= MIN_TEMPERATURE_IMAGES:
        temperature = calibration.fit_temperature(logits_of(torch.stack([p.image for p in photos])), labels)
    else:
        notes.append(
            f"uncalibrated: {len(photos)} held-out photos are fewer than the {MIN_TEMPERATURE_IMAGES} a temperature "
            "is fitted from, so the probabilities are the plain softmax"
        )
    pictures = reference_photos(val_x, REFERENCE_PHOTOS, seed)
    own = [p for p in photos if p.cues is not None]
    if len(own) >= MIN_DETECTOR_PHOTOS:
        pictures += own
    else:
        notes.append(
            f"the not-a-garment detector learns only Fashion-MNIST photos: {len(own)} held-out photos are fewer "
            f"than the {MIN_DETECTOR_PHOTOS} it needs to learn yours"
        )
    return Trust(temperature, *detector(logits_of, pictures)), notes


def fit_and_store(
    model: nn.Module,
    val_x: torch.Tensor,
    val_y: torch.Tensor,
    path: Path,
    seed: int,
    log: Callable[[str], None],
    photos: int = REFERENCE_PHOTOS,
) -> Trust | None:
    """At the end of a run: fit on the validation split and add the result to the checkpoint at `path`
    (the one whose weights `model` holds). Without a validation split of the size the fits need
    (`shortfall`), nothing is fitted, which `log` is told (None)."""
    too_few = shortfall(len(val_x), photos)
    if too_few or not path.exists():
        log(too_few or shortfall(0, photos) or "")
        return None
    t0 = time.perf_counter()
    trust = fit(model_logits(model), val_x, val_y, seed, photos)
    store(trust, path)
    log(
        f"trust: temperature {trust.temperature:.3f} and non-garment detector fitted on the validation split "
        f"in {time.perf_counter() - t0:.1f} s"
    )
    return trust


def calibrate_run(path: Path, load_data: Callable[[], FashionMNIST], log: Callable[[str], None]) -> Trust:
    """`fmnist calibrate`: fit the temperature and the detector of the checkpoint at `path` again, on the
    validation split its run held out (data.validation_split of its config: the images `fit` never trained
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
    fitted = fit_and_store(model, dataset.train_images[val_idx], dataset.train_labels[val_idx], path, cfg.seed, log)
    assert fitted is not None  # the split is large enough and the checkpoint exists
    return fitted


def store(trust_: Trust, path: Path) -> None:
    """Put `trust_` into the checkpoint at `path` (atomically: the file is the old one or the new one)."""
    from fmnist import checkpoint

    state = checkpoint.load(path)
    state[KEY] = trust_.to_dict()
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
    trust_: Trust, logits: torch.Tensor, labels: torch.Tensor, cues: Sequence[Cues | None] | None = None
) -> Report:
    """Calibration before and after the temperature (ECE, NLL, Brier), and the detector's verdicts on images
    with labels [N]: share accepted, accuracy on them, and accuracy against coverage when only the images
    with the highest in-distribution scores (then the highest confidence) are accepted. `cues`: each
    picture's framing cues, as `judge` (and so predict and the server) reads them; None: all plain 28x28."""
    import torch

    plain = logits.softmax(1)
    before = calibration.measure(plain, labels)
    scaled = trust_.probabilities(logits) if trust_.temperature is not None else None
    after = calibration.measure(scaled, labels) if scaled is not None else None
    probs = scaled if scaled is not None else plain
    confidence, predicted = probs.max(1)
    correct = predicted == labels
    verdict = judge(trust_, logits, [None] * len(logits) if cues is None else cues)
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
