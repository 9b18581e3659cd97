"""Outlier exposure against the deployed "not a garment" detector, measured on benchmarks/ood.py's sets.

    python benchmarks/outlier_exposure.py RUN_DIR [--loss uniform|energy] [--epochs 2] [--weight W]

Outlier exposure (Hendrycks, Mazeika and Dietterich, 2019, "Deep Anomaly Detection with Outlier
Exposure") fine-tunes a trained classifier with one more loss term on outlier pictures, beside the
usual loss on the training split, here for --epochs epochs of Adam at a tenth of the run's learning
rate with a cosine decay (the paper fine-tunes for 10 epochs). `--loss uniform` is the paper's term:
the cross-entropy of the outliers' softmax to the uniform distribution (weight 0.5). `--loss energy`
is Liu, Wang, Owens and Li's (2020, "Energy-based Out-of-distribution Detection") squared hinges on
the energy E = -logsumexp(logits): E of training images pushed below m_in, E of outliers above m_out
(weight 0.1); their margins were set for their networks, so here m_in is the median and m_out the
1 % quantile of the run's own -E over the training split, measured before fine-tuning. The outliers
are fmnist.testing.outliers' "tune" part drawn with another seed than the benchmark's, framed to
28x28 as `predict` frames them; the "holdout" part, built from other source images, is never trained
on. After fine-tuning, the temperature and the detector are fitted again on the run's validation
split (trust.fit), as `fmnist train` fits them.

Prints, for the run's model and the fine-tuned one side by side: test accuracy, the detector's AUROC
against fresh validation photos, the share of garment photos, plain test images and non-garments it
keeps, and the share kept of each kind of the holdout part. RUN_DIR: a run trained with a validation
split (the default). Nothing is written.
"""

from __future__ import annotations

import argparse
import copy
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).parent))
from ood import auroc, framed  # noqa: E402  (benchmarks/ood.py: the same sets and measures)

from fmnist import data  # noqa: E402
from fmnist import trust as trust_lib  # noqa: E402
from fmnist.data import split_seed, validation_split  # noqa: E402
from fmnist.inference import TorchPredictor  # noqa: E402
from fmnist.testing import outliers, photos  # noqa: E402

TRAIN_SEED = 1  # draws of the "tune" part trained on; the benchmark's sets use seed 100


def fine_tune(
    model: torch.nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    outlier_images: torch.Tensor,
    *,
    loss_kind: str,
    epochs: int,
    weight: float,
    lr: float,
    label_smoothing: float,
    batch: int = 128,
    outlier_batch: int = 64,
) -> torch.nn.Module:
    """A copy of `model` fine-tuned with outlier exposure: loss = CE(in-distribution batch) + weight x the
    outlier term of `loss_kind` (module docstring), the outliers (uint8 [M, 28, 28]) drawn with replacement
    and mirrored at random."""
    with torch.inference_mode():
        lse = torch.cat([torch.logsumexp(model(data.as_input(c)), 1) for c in images.split(1000)])
    m_in, m_out = -float(lse.median()), -float(lse.quantile(0.01))
    model = copy.deepcopy(model).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    steps = epochs * math.ceil(len(images) / batch)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    g = torch.Generator().manual_seed(0)
    for _ in range(epochs):
        for idx in torch.randperm(len(images), generator=g).split(batch):
            out = outlier_images[torch.randint(len(outlier_images), (outlier_batch,), generator=g)]
            flip = torch.rand(outlier_batch, generator=g) < 0.5
            out = torch.where(flip[:, None, None], out.flip(-1), out)
            logits = model(data.as_input(torch.cat([images[idx], out])))
            inside, outside = logits[: len(idx)], logits[len(idx) :]
            if loss_kind == "uniform":  # CE to the uniform distribution
                term = (torch.logsumexp(outside, 1) - outside.mean(1)).mean()
            else:  # energy hinges
                e_in, e_out = -torch.logsumexp(inside, 1), -torch.logsumexp(outside, 1)
                term = F.relu(e_in - m_in).pow(2).mean() + F.relu(m_out - e_out).pow(2).mean()
            loss = F.cross_entropy(inside, labels[idx], label_smoothing=label_smoothing) + weight * term
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
    return model.eval()


def accepted(scores: np.ndarray, threshold: float) -> float:
    """The share of in-distribution `scores` at or above `threshold`: the pictures called garments."""
    return float((scores >= threshold).mean())


def measure(model: torch.nn.Module, trust: trust_lib.Trust, sets: dict, kinds: np.ndarray, test_y) -> dict:
    logits_of = trust_lib.model_logits(model)
    logits = {name: logits_of(images) for name, (images, _) in sets.items()}
    scores = {name: trust.scores(logits[name], images, cues) for name, (images, cues) in sets.items()}
    right = (logits["plain test"].argmax(1) == test_y).numpy()
    keep = scores["plain test"] >= trust.threshold
    out = scores["non-garments (holdout)"]
    return {
        "test accuracy": float(right.mean()),
        "accuracy on accepted test": float(right[keep].mean()),
        "temperature": trust.temperature,
        "AUROC tune": auroc(scores["val photos"], scores["non-garments (tune)"]),
        "AUROC holdout": auroc(scores["val photos"], out),
        **{f"keeps {name}": accepted(v, trust.threshold) for name, v in scores.items()},
        **{f"keeps {k} (holdout)": accepted(out[kinds == k], trust.threshold) for k in outliers.KINDS},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model", help="a run directory trained with a validation split")
    parser.add_argument("--epochs", type=int, default=2, help="fine-tuning epochs (default: 2)")
    parser.add_argument("--loss", choices=("uniform", "energy"), default="uniform", help="the outlier term")
    parser.add_argument("--weight", type=float, help="weight of the outlier term (default: 0.5 uniform, 0.1 energy)")
    parser.add_argument("--per-kind", type=int, default=100, help="outliers per kind trained on (default: 100)")
    parser.add_argument("--photos", type=int, default=400, help="garment photos per set (default: 400)")
    args = parser.parse_args()
    weight = args.weight if args.weight is not None else {"uniform": 0.5, "energy": 0.1}[args.loss]
    torch.manual_seed(0)

    predictor = TorchPredictor(args.model)
    cfg = predictor.config
    if not cfg.val_size:
        raise SystemExit(f"{args.model}: trained without a validation split; nothing to refit the detector on")
    dataset = data.load()
    _, val_idx = validation_split(dataset.train_labels, cfg)
    train_idx = data.training_indices(dataset.train_labels, cfg)
    val_x, val_y = dataset.train_images[val_idx], dataset.train_labels[val_idx]

    t0 = time.perf_counter()
    trained_on = framed([o.data for o in outliers.build(args.per_kind, "tune", TRAIN_SEED)])[0]
    sets = {
        "val photos": framed([p.data for p in photos.render_set(val_x, args.photos, 101)]),
        "test photos": framed([p.data for p in photos.render_set(dataset.test_images, args.photos, 102)]),
        "plain test": (dataset.test_images, [None] * len(dataset.test_images)),
    }
    built = {part: outliers.build(60, part, 100) for part in outliers.PARTS}
    for part, pictures in built.items():
        sets[f"non-garments ({part})"] = framed([p.data for p in pictures])
    kinds = np.array([p.kind for p in built["holdout"]])
    print(f"material: {len(trained_on)} outliers to train on; rendered and framed in {time.perf_counter() - t0:.0f} s")

    t0 = time.perf_counter()
    tuned = fine_tune(
        predictor.model,
        dataset.train_images[train_idx],
        dataset.train_labels[train_idx],
        trained_on,
        loss_kind=args.loss,
        epochs=args.epochs,
        weight=weight,
        lr=cfg.lr / 10,
        label_smoothing=cfg.label_smoothing,
    )
    training = dataset.train_images[train_idx], dataset.train_labels[train_idx]
    tuned_trust = trust_lib.fit(trust_lib.model_logits(tuned), val_x, val_y, training, seed=split_seed(cfg))
    print(f"fine-tuned for {args.epochs} epochs and refitted in {time.perf_counter() - t0:.0f} s")

    before = measure(predictor.model, predictor.trust, sets, kinds, dataset.test_labels)
    after = measure(tuned, tuned_trust, sets, kinds, dataset.test_labels)
    variant = f"outlier exposure ({args.loss}, {args.epochs} epochs, weight {weight:g})"
    print(f"\n| | the run's model | {variant} |\n|---|---|---|")
    for key in before:
        fmt = (lambda v: f"{v:.3f}") if key.startswith(("AUROC", "temperature")) else (lambda v: f"{v:.1%}")
        print(f"| {key} | {fmt(before[key])} | {fmt(after[key])} |")


if __name__ == "__main__":
    main()
