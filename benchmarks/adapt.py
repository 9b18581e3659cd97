"""`fmnist adapt` on shifted photo domains (fmnist.testing.domains): per domain, the parent's and the adapted
model's accuracy on fresh photos of the domain, Fashion-MNIST test accuracy before and after, the share of the
fresh garment photos the detector keeps and of non-garment pictures (fmnist.testing.outliers, the holdout part
benchmarks/ood.py uses) it rejects, and the wall time of each adaptation; over --seeds.

The photos adapted on are --per-class a class rendered from the parent's training split; the fresh photos are
--test-per-class a class rendered from the test set, never seen by either model nor used to choose anything.

    python benchmarks/adapt.py RUN [--domains wood,cloth,dim,covered] [--seeds 0,1,2] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from fmnist import data, trust
from fmnist.adapt import Recipe, adapt
from fmnist.checkpoint import load_model
from fmnist.data import CLASSES, stratified_split
from fmnist.images import Framed, load_picture
from fmnist.inference import Predictor, TorchPredictor
from fmnist.run_dir import model_path
from fmnist.testing import domains, outliers


def pick(labels: torch.Tensor, pool: torch.Tensor, per_class: int, seed: int) -> torch.Tensor:
    """`per_class` indices of each class drawn from `pool`."""
    generator = torch.Generator().manual_seed(seed)
    chosen = []
    for c in range(len(CLASSES)):
        members = pool[labels[pool] == c]
        chosen.append(members[torch.randperm(len(members), generator=generator)[:per_class]])
    return torch.cat(chosen)


def write_folder(root: Path, photos: list[bytes], labels: torch.Tensor) -> None:
    for i, (photo, label) in enumerate(zip(photos, labels.tolist(), strict=True)):
        folder = root / str(label)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{i}.jpg").write_bytes(photo)


def figures(predictor: Predictor, fresh: list[Framed], fresh_y: torch.Tensor, others: list[Framed], test) -> dict:
    views, other_views = torch.stack([f.image for f in fresh]), torch.stack([f.image for f in others])
    logits = predictor.logits(views)
    kept = trust.judge(predictor.trust, logits, views, [f.cues for f in fresh]).garment
    other_logits = predictor.logits(other_views)
    rejected = ~trust.judge(predictor.trust, other_logits, other_views, [f.cues for f in others]).garment
    test_pred = torch.cat([predictor.logits(c).argmax(1) for c in test.test_images.split(1000)])
    return {
        "photos_accuracy": float((logits.argmax(1) == fresh_y).double().mean()),
        "photos_kept": float(np.mean(kept)),
        "others_rejected": float(np.mean(rejected)),
        "test_accuracy": float((test_pred == test.test_labels).double().mean()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", help="the parent: a run directory or checkpoint")
    parser.add_argument("--domains", default=",".join(domains.DOMAINS))
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--per-class", type=int, default=20)
    parser.add_argument("--test-per-class", type=int, default=50)
    parser.add_argument("--others-per-kind", type=int, default=20)
    parser.add_argument("--json", help="write every figure as JSON")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a Recipe field")
    args = parser.parse_args()
    dataset = data.load()
    parent_file = model_path(args.run)
    _, parent_cfg, _ = load_model(parent_file)
    train_pool, _ = stratified_split(dataset.train_labels, parent_cfg.val_size, parent_cfg.seed)
    changes = {k: type(getattr(Recipe(), k))(v) for k, v in (item.split("=", 1) for item in args.set)}
    others = [load_picture(o.data, o.kind) for o in outliers.build(args.others_per_kind, "holdout")]
    parent = TorchPredictor(parent_file)
    results = {}
    for domain in args.domains.split(","):
        adapt_idx = pick(dataset.train_labels, train_pool, args.per_class, 0)
        test_idx = pick(dataset.test_labels, torch.arange(len(dataset.test_labels)), args.test_per_class, 1)
        fresh_y = dataset.test_labels[test_idx]
        fresh = [
            load_picture(p, f"{domain}-{i}")
            for i, p in enumerate(domains.render_many(dataset.test_images[test_idx].numpy(), domain, 1))
        ]
        row = {"parent": figures(parent, fresh, fresh_y, others, dataset), "adapted": []}
        with tempfile.TemporaryDirectory() as tmp:
            photos = domains.render_many(dataset.train_images[adapt_idx].numpy(), domain, 0)
            write_folder(Path(tmp) / "photos", photos, dataset.train_labels[adapt_idx])
            for seed in [int(s) for s in args.seeds.split(",")]:
                t0 = time.perf_counter()
                recipe = Recipe(**{**changes, "seed": seed})
                adapt(parent_file, Path(tmp) / "photos", Path(tmp) / f"run-{seed}", recipe, dataset=dataset)
                seconds = time.perf_counter() - t0
                adapted = figures(TorchPredictor(Path(tmp) / f"run-{seed}"), fresh, fresh_y, others, dataset)
                row["adapted"].append({**adapted, "seconds": seconds, "seed": seed})
                print(domain, seed, json.dumps(row["adapted"][-1]), flush=True)
        results[domain] = row
    print_table(results)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")


def print_table(results: dict) -> None:
    print(
        "\n| domain | held-out photos: parent | adapted | FMNIST test: parent | adapted | garment photos kept | "
        "non-garments rejected | seconds |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for domain, row in results.items():
        runs = row["adapted"]

        def spread(key: str, runs: list = runs) -> str:
            values = [100 * r[key] for r in runs]
            return f"{statistics.mean(values):.1f} ± {statistics.pstdev(values):.1f}"

        p = row["parent"]
        print(
            f"| {domain} | {100 * p['photos_accuracy']:.1f} | {spread('photos_accuracy')} | "
            f"{100 * p['test_accuracy']:.2f} | {spread('test_accuracy')} | {spread('photos_kept')} "
            f"(parent {100 * p['photos_kept']:.1f}) | {spread('others_rejected')} (parent "
            f"{100 * p['others_rejected']:.1f}) | {statistics.median(r['seconds'] for r in runs):.0f} |"
        )


if __name__ == "__main__":
    main()
