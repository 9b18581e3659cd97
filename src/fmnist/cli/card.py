"""fmnist card: a run as a model card directory in the Hugging Face Hub / timm layout."""

from __future__ import annotations

import argparse

from fmnist.cli.common import Parser, Subcommands, load_data


def add_parsers(sub: Subcommands, shared: dict[str, Parser]) -> None:
    """card."""
    p = sub.add_parser(
        "card",
        help="write a run as a model card directory (README.md, config.json, model.safetensors, model.onnx), "
        "every number measured from the run's files",
        parents=[shared["data_dir"]],
    )
    p.add_argument("run", help="a finished run directory trained with a validation split (fmnist train's default)")
    p.add_argument("--out", required=True, help="the directory to write; eval, predict and serve load it")
    p.set_defaults(func=cmd_card)


def cmd_card(args: argparse.Namespace) -> int:
    from fmnist import card

    measured = card.write_card(args.run, args.out, load_data(args.data_dir))
    print(
        f"wrote {args.out}: README.md, config.json, model.safetensors, model.onnx; test accuracy "
        f"{measured.accuracy:.2%}, not-a-garment AUROC {measured.auroc:.4f}"
    )
    return 0
