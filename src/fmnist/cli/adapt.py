"""fmnist adapt: fine-tune a trained model on a user's labelled photos (fmnist.adapt)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from fmnist import signals
from fmnist.cli.common import Parser, Subcommands, load_data
from fmnist.config import AdaptRecipe as Recipe
from fmnist.config import coerce
from fmnist.errors import FmnistError

RECIPE_FLAGS = (
    ("epochs", int, "passes over the photos and the rehearsal memory"),
    ("lr", float, "Adam's peak learning rate (cosine decay)"),
    ("freeze", int, "leading weight layers kept as the parent has them"),
    ("repeats", int, "times each training photo is seen per epoch"),
    ("rehearsal", float, "Fashion-MNIST training images per photo seen (experience replay)"),
    ("holdout", float, "share of each class's photos held out to choose the epoch and the mix and refit trust"),
    ("forgetting", float, "largest drop of Fashion-MNIST validation accuracy (0.005: half a point) the mix may cost"),
    (
        "augment",
        lambda text: coerce("augment", text),
        "kinds applied once to the photos' copies: flip,crop,translate,erase or none",
    ),
    ("distill", bool, "rehearse the parent's probabilities on the memory instead of its labels (distillation)"),
    ("seed", int, "seeds the held-out draw, the memory, the order and augmentation"),
)


def add_parsers(sub: Subcommands, shared: dict[str, Parser]) -> None:
    """adapt."""
    p = sub.add_parser(
        "adapt",
        help="fine-tune a trained model on your labelled photos (one folder per class), rehearsing Fashion-MNIST",
        parents=[shared["data_dir"]],
    )
    p.add_argument("parent", nargs="?", help="the model to start from: a .pt checkpoint or a run directory")
    p.add_argument("--images", metavar="DIR", help="your photos, one sub-folder per class (as eval --images reads)")
    p.add_argument("--out", help="new run directory (default: runs/<timestamp>)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted adaptation")
    p.add_argument("--json", action="store_true", help="print the before/after report as one JSON object")
    defaults = Recipe()
    for name, kind, text in RECIPE_FLAGS:
        default = getattr(defaults, name)
        shown = f"{text} (default: {','.join(default) or 'none' if isinstance(default, tuple) else default})"
        if kind is bool:
            p.add_argument(f"--{name}", action=argparse.BooleanOptionalAction, help=shown)
        else:
            p.add_argument(f"--{name}", type=kind, help=shown)
    p.set_defaults(func=cmd_adapt)


def cmd_adapt(args: argparse.Namespace) -> int:
    from fmnist.adapt import adapt
    from fmnist.run_dir import new_run_path

    asked = {name: getattr(args, name) for name, _, _ in RECIPE_FLAGS}
    if args.resume and (args.parent or args.images or args.out or any(v is not None for v in asked.values())):
        raise FmnistError("--resume continues a run with its own parent, photos, directory and recipe; drop the others")
    recipe = Recipe(**{k: v for k, v in asked.items() if v is not None})
    out = Path(args.resume) if args.resume else Path(args.out) if args.out else new_run_path()
    dataset = load_data(args.data_dir)
    say = (lambda line: print(line, file=sys.stderr)) if args.json else print
    try:
        report = adapt(args.parent, args.images, out, recipe, resume=bool(args.resume), dataset=dataset, log=say)
    except (KeyboardInterrupt, signals.Stopped):
        if (out / "adapt.json").exists():
            print(f"interrupted; continue with: fmnist adapt --resume {out}", file=sys.stderr)
        raise
    if args.json:
        print(json.dumps(report.as_dict()))
        return 0
    print(report.text())
    print(
        f"artifacts in {out}: adapt-report.json adapt.json parent.json summary.json metrics.jsonl config.toml "
        "checkpoints/ tensorboard/ *.png"
    )
    return 0
