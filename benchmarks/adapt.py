"""`fmnist adapt` on shifted photo domains (fmnist.testing.domains): per domain, the parent's and the adapted
model's accuracy on fresh photos of the domain, Fashion-MNIST test accuracy before and after, the share of the
fresh garment photos the detector keeps and of non-garment pictures (fmnist.testing.outliers, the holdout part
benchmarks/ood.py uses) it rejects, and the wall time of each adaptation; over --seeds.

The photos adapted on are --per-class a class rendered from the parent's training split; the fresh photos are
--test-per-class a class rendered from the test set, never seen by either model nor used to choose anything.
To choose a recipe there are also --val-per-class validation photos a class rendered from the parent's
validation split, and the Fashion-MNIST validation accuracy: `--choose` picks, for each domain, the recipe
best on the validation photos of the OTHER domains (leave one domain out) and shows that domain's fresh figures.

    python benchmarks/adapt.py RUN [--domains wood,cloth,dim,covered,opaque] [--seeds 0,1,2] [--set lr=1e-3]
        [--json FILE]
        [--recipe 'lr=1e-3 distill=1' --recipe 'rehearsal=10' ...]   several recipes on the same photos
    python benchmarks/adapt.py --choose A.json B.json ...
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fmnist import data, trust
from fmnist.adapt import MIXES, TUNED_KEY, Recipe, adapt, interpolate
from fmnist.checkpoint import load, load_model
from fmnist.data import CLASSES, validation_split
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


def accuracy(predictor: Predictor, images: torch.Tensor, labels: torch.Tensor) -> float:
    predicted = torch.cat([predictor.logits(c).argmax(1) for c in images.split(1000)])
    return float((predicted == labels).double().mean())


def photos(domain: str, images: torch.Tensor, seed: int) -> list[Framed]:
    return [load_picture(p, f"{domain}-{i}") for i, p in enumerate(domains.render_many(images.numpy(), domain, seed))]


def figures(predictor: Predictor, sets: dict, others: list[Framed], dataset) -> dict:
    fresh, fresh_y = sets["fresh"]
    val, val_y = sets["val"]
    views, other_views = torch.stack([f.image for f in fresh]), torch.stack([f.image for f in others])
    logits = predictor.logits(views)
    kept = trust.judge(predictor.trust, logits, views, [f.cues for f in fresh]).garment
    other_logits = predictor.logits(other_views)
    rejected = ~trust.judge(predictor.trust, other_logits, other_views, [f.cues for f in others]).garment
    return {
        "photos_accuracy": float((logits.argmax(1) == fresh_y).double().mean()),
        "photos_kept": float(np.mean(kept)),
        "others_rejected": float(np.mean(rejected)),
        "test_accuracy": accuracy(predictor, dataset.test_images, dataset.test_labels),
        "val_photos_accuracy": accuracy(predictor, torch.stack([f.image for f in val]), val_y),
        "fashion_val_accuracy": accuracy(predictor, *sets["fashion_val"]),
    }


def mix_curve(run: Path, parent: Predictor, sets: dict) -> list[dict]:
    """Per WiSE-FT mix alpha (MIXES): accuracy on the fresh photos, the validation photos and Fashion-MNIST
    validation: where the fine-tuned weights gain and what they cost, whatever alpha the run chose."""
    predictor = TorchPredictor(run)
    tuned, base = load(predictor.file)[TUNED_KEY], parent.model.state_dict()
    fresh = torch.stack([f.image for f in sets["fresh"][0]]), sets["fresh"][1]
    val = torch.stack([f.image for f in sets["val"][0]]), sets["val"][1]
    curve = []
    for alpha in MIXES:
        predictor.model.load_state_dict(interpolate(base, tuned, alpha))
        curve.append(
            {"alpha": alpha}
            | {
                k: accuracy(predictor, *v)
                for k, v in (("fresh", fresh), ("val", val), ("fashion_val", sets["fashion_val"]))
            }
        )
    return curve


def parse(field: str, text: str):
    """A --set value as the Recipe field's type."""
    kind = type(getattr(Recipe(), field))
    if kind is bool:
        return text.lower() in ("1", "true", "yes")
    return tuple(k for k in text.split("+") if k) if kind is tuple else kind(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", nargs="?", help="the parent: a run directory or checkpoint")
    parser.add_argument("--domains", default=",".join(domains.DOMAINS))
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--per-class", type=int, default=20)
    parser.add_argument("--test-per-class", type=int, default=50)
    parser.add_argument("--val-per-class", type=int, default=30)
    parser.add_argument("--choose", nargs="+", metavar="JSON", help="leave-one-domain-out choice among --json files")
    parser.add_argument("--others-per-kind", type=int, default=20)
    parser.add_argument("--json", help="write every figure as JSON")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a Recipe field of every recipe (augment: kinds joined by +, none: empty)",
    )
    parser.add_argument(
        "--recipe",
        action="append",
        metavar="'KEY=VALUE ...'",
        help="a recipe to measure (its fields over --set's; repeat to measure several on the same photos)",
    )
    args = parser.parse_args()
    if args.choose:
        choose([json.loads(Path(f).read_text(encoding="utf-8")) for f in args.choose])
        return
    if not args.run:
        parser.error("name the parent run (or --choose JSON files)")
    common = fields(args.set)
    recipes = [{**common, **fields(spec.split())} for spec in args.recipe or [""]]
    studies = measure(args, recipes)
    for study in studies:
        print(" ".join(f"{k}={v}" for k, v in study["recipe"].items()))
        print_table(study["domains"])


def fields(items: list[str]) -> dict[str, Any]:
    """Recipe fields from KEY=VALUE strings."""
    return {k: parse(k, v) for k, v in (item.split("=", 1) for item in items)}


def measure(args: argparse.Namespace, recipes: list[dict[str, Any]]) -> list[dict]:
    """Per recipe, per domain: the parent's figures and each seed's adapted ones, on one set of photos."""
    dataset = data.load()
    parent_file = model_path(args.run)
    _, parent_cfg, _ = load_model(parent_file)
    train_pool, val_pool = validation_split(dataset.train_labels, parent_cfg)
    others = [load_picture(o.data, o.kind) for o in outliers.build(args.others_per_kind, "holdout")]
    parent = TorchPredictor(parent_file)
    studies = [{"recipe": Recipe(**changes).as_dict(), "domains": {}} for changes in recipes]
    adapt_idx = pick(dataset.train_labels, train_pool, args.per_class, 0)
    test_idx = pick(dataset.test_labels, torch.arange(len(dataset.test_labels)), args.test_per_class, 1)
    val_idx = pick(dataset.train_labels, val_pool, args.val_per_class, 2)
    for domain in args.domains.split(","):
        sets = {
            "fresh": (photos(domain, dataset.test_images[test_idx], 1), dataset.test_labels[test_idx]),
            "val": (photos(domain, dataset.train_images[val_idx], 2), dataset.train_labels[val_idx]),
            "fashion_val": (dataset.train_images[val_pool], dataset.train_labels[val_pool]),
        }
        before = figures(parent, sets, others, dataset)
        print(domain, "parent", json.dumps(before), flush=True)
        with tempfile.TemporaryDirectory() as tmp:
            rendered = domains.render_many(dataset.train_images[adapt_idx].numpy(), domain, 0)
            write_folder(Path(tmp) / "photos", rendered, dataset.train_labels[adapt_idx])
            for i, (changes, study) in enumerate(zip(recipes, studies, strict=True)):
                row = study["domains"][domain] = {"parent": before, "adapted": []}
                for seed in [int(s) for s in args.seeds.split(",")]:
                    run = Path(tmp) / f"run-{i}-{seed}"
                    t0 = time.perf_counter()
                    report = adapt(
                        parent_file, Path(tmp) / "photos", run, Recipe(**{**changes, "seed": seed}), dataset=dataset
                    )
                    seconds = time.perf_counter() - t0
                    adapted = figures(TorchPredictor(run), sets, others, dataset)
                    curve = mix_curve(run, parent, sets)
                    row["adapted"].append(
                        {**adapted, "seconds": seconds, "seed": seed, "mix": report.mix.alpha, "curve": curve}
                    )
                    print(
                        domain,
                        seed,
                        json.dumps({k: v for k, v in row["adapted"][-1].items() if k != "curve"}),
                        flush=True,
                    )
        if args.json:  # after each domain, so that a run cut short keeps what it measured
            Path(args.json).write_text(json.dumps({"studies": studies}, indent=2) + "\n", encoding="utf-8")
    return studies


def merged(files: list[dict]) -> tuple[list[dict], list[str]]:
    """The --json files of one recipe (one domain each, say) joined; a name per recipe: its non-default fields."""
    groups: dict[str, dict] = {}
    for study in (s for f in files for s in f.get("studies", [f])):
        key = json.dumps(study["recipe"], sort_keys=True)
        groups.setdefault(key, {"recipe": study["recipe"], "domains": {}})["domains"].update(study["domains"])
    defaults = Recipe().as_dict()
    names = [
        " ".join(f"{k}={v}" for k, v in g["recipe"].items() if k != "seed" and v != defaults[k]) or "defaults"
        for g in groups.values()
    ]
    return list(groups.values()), names


def choose(files: list[dict]) -> None:
    """For each domain, the recipe whose adapted models are, on the other domains, most accurate on the validation
    photos while keeping Fashion-MNIST validation accuracy within 0.5 point of the parent's on average; then that
    domain's fresh figures under it (the one honest figure for a recipe chosen on photos). Only the domains every
    recipe was measured on take part."""
    studies, names = merged(files)
    domains_ = [d for d in studies[0]["domains"] if all(d in s["domains"] for s in studies)]

    def mean(study: dict, where: list[str], key: str) -> float:
        return statistics.mean(r[key] for d in where for r in study["domains"][d]["adapted"])

    def forgetting(study: dict, where: list[str]) -> float:
        parent = statistics.mean(study["domains"][d]["parent"]["fashion_val_accuracy"] for d in where)
        return parent - mean(study, where, "fashion_val_accuracy")

    print("| recipe | " + " | ".join(f"{d}: val photos, FMNIST val drop" for d in domains_) + " |")
    print("|---|" + "---|" * len(domains_))
    for name, study in zip(names, studies, strict=True):
        cells = [
            f"{100 * mean(study, [d], 'val_photos_accuracy'):.1f}, {100 * forgetting(study, [d]):.2f}" for d in domains_
        ]
        print(f"| {name} | " + " | ".join(cells) + " |")
    chosen = {}
    for held in domains_:
        rest = [d for d in domains_ if d != held]
        fit = [i for i, s in enumerate(studies) if forgetting(s, rest) <= 0.005] or list(range(len(studies)))
        best = max(fit, key=lambda i: mean(studies[i], rest, "val_photos_accuracy"))
        chosen[held] = studies[best]["domains"][held]
        print(f"{held}: chosen on {', '.join(rest)}: {names[best]}")
    print_table(chosen)


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
