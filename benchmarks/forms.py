"""Does a Fashion-MNIST image get the same answer in every file form? Per form: kept as a garment, same class.

    python benchmarks/forms.py RUN_DIR [--images 100] [--split val|test] [--json FILE]
    python benchmarks/forms.py RUN_DIR --digits [--images 100] [--json FILE]

Each image is saved in every form of fmnist.testing.forms (mode x format x size x polarity x margins),
read back by images.load_picture, and judged by the run's model and detector; the reference is the same
image as the dataset's own bytes (uint8 28x28). `--split val` takes images from the run's validation
split (for choosing); `--split test` from the test set (for the final report only). `--digits`: digits in
MNIST's style (28x28, light strokes in a 20-pixel box; half scikit-learn's handwritten digits, half characters
traced by fmnist.testing.outliers, their "holdout" part) in the same forms, and the share of each rejected.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from fmnist import data, trust
from fmnist.data import validation_split
from fmnist.images import load_picture
from fmnist.inference import TorchPredictor
from fmnist.testing import forms, outliers


def source_images(predictor: TorchPredictor, split: str, count: int, seed: int) -> torch.Tensor:
    dataset = data.load()
    if split == "test":
        images = dataset.test_images
    else:
        _, val = validation_split(dataset.train_labels, predictor.config)
        images = dataset.train_images[val]
    picks = np.random.default_rng(seed).choice(len(images), size=count, replace=False)
    return images[torch.from_numpy(picks)]


def digits(count: int, seed: int) -> torch.Tensor:
    """uint8 [count, 28, 28] digits in MNIST's style: handwritten, then traced."""
    rng = np.random.default_rng(seed)
    half = count // 2
    strokes = [outliers.handwritten_strokes(rng, "holdout") for _ in range(half)]
    strokes += [outliers.scrawl_strokes(rng, "holdout") for _ in range(count - half)]
    return torch.from_numpy(np.stack([outliers.mnist_style(s) for s in strokes]))


def rejected(predictor: TorchPredictor, count: int, seed: int, path: Path | None) -> None:
    images = digits(count, seed)
    _, base_kept = judged(predictor, images, [None] * len(images))
    print(f"{count} digits in MNIST's style; as 28x28 bytes: {1 - base_kept.mean():.1%} rejected\n")
    print("| form | rejected |\n|---|---|")
    rows = []
    for form in forms.all_forms():
        loaded = [load_picture(forms.save(image.numpy(), form), form.name) for image in images]
        _, kept = judged(predictor, torch.stack([p.image for p in loaded]), [p.cues for p in loaded])
        rows.append({"form": form.name, "rejected": float(1 - kept.mean())})
        print(f"| {form.name} | {rows[-1]['rejected']:.1%} |")
    share = np.mean([r["rejected"] for r in rows])
    print(f"\nall forms: {share:.1%} rejected")
    if path:
        path.write_text(json.dumps({"rows": rows, "rejected": share}, indent=1))


def judged(predictor: TorchPredictor, images: torch.Tensor, cues: list) -> tuple[np.ndarray, np.ndarray]:
    logits = predictor.logits(images)
    verdict = trust.judge(predictor.trust, logits, images, cues)
    return verdict.probabilities.argmax(1).numpy(), verdict.garment


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run")
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--split", choices=("val", "test"), default="val")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--digits", action="store_true", help="digits in MNIST's style: the share rejected")
    args = parser.parse_args()
    predictor = TorchPredictor(args.run)
    if args.digits:
        rejected(predictor, args.images, args.seed, args.json)
        return
    images = source_images(predictor, args.split, args.images, args.seed)
    base_class, base_kept = judged(predictor, images, [None] * len(images))
    rows = []
    print(f"{args.images} {args.split} images; the dataset's bytes: {base_kept.mean():.1%} kept\n")
    print("| form | kept | same class | same view |\n|---|---|---|---|")
    for form in forms.all_forms():
        loaded = [load_picture(forms.save(image.numpy(), form), form.name) for image in images]
        views = torch.stack([p.image for p in loaded])
        classes, kept = judged(predictor, views, [p.cues for p in loaded])
        same_view = float((views.int() - images.int()).abs().amax((1, 2)).le(8).double().mean())
        row = {"form": form.name, "kept": float(kept.mean()), "same_class": float((classes == base_class).mean())}
        row["same_view"] = same_view
        rows.append(row)
        print(f"| {form.name} | {row['kept']:.1%} | {row['same_class']:.1%} | {same_view:.1%} |")
    kept_all = np.mean([r["kept"] for r in rows])
    same_all = np.mean([r["same_class"] for r in rows])
    print(f"\nall forms: {kept_all:.1%} kept, {same_all:.1%} same class as the dataset's bytes")
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "kept": kept_all, "same_class": same_all}, indent=1))


if __name__ == "__main__":
    main()
