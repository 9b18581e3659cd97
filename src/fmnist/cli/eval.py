"""fmnist eval: metrics, error analysis, calibration and the detector's figures on the test set or a user's folders."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from fmnist import data
from fmnist.cli.common import BARE_STATE_DICT, Parser, Subcommands, load_data, say_layout
from fmnist.errors import FmnistError

if TYPE_CHECKING:
    import torch

    from fmnist import trust
    from fmnist.images import Cues


def add_parsers(sub: Subcommands, shared: dict[str, Parser]) -> None:
    """eval."""
    device = shared["device"]
    data_dir = shared["data_dir"]
    tta = shared["tta"]
    p = sub.add_parser(
        "eval",
        help="metrics and error analysis of a checkpoint or an exported model, on the test "
        "set or your own labelled pictures",
        parents=[device, data_dir, tta],
    )
    p.add_argument(
        "checkpoint",
        help="a .pt checkpoint, a run directory (its best, else last, checkpoint), an "
        ".onnx file from fmnist export (run by onnxruntime on the CPU), or " + BARE_STATE_DICT,
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument(
        "--images",
        metavar="DIR",
        help="evaluate on your own pictures instead of the test set: one "
        "sub-folder of DIR per class, named by class name (t-shirt, T-shirt_top, ankle boots, ...) or index "
        "0-9; each picture framed as predict frames it",
    )
    p.add_argument(
        "--plots", metavar="DIR", help="also write confusion_matrix.png, top_losses.png and most_confused.png here"
    )
    p.set_defaults(func=cmd_eval)


def cmd_eval(args: argparse.Namespace) -> int:
    import torch

    from fmnist import plots
    from fmnist.evaluate import Report, evaluation_of
    from fmnist.inference import load_predictor

    if args.plots and Path(args.plots).exists() and not Path(args.plots).is_dir():  # before the work, not after
        raise FmnistError(f"--plots {args.plots}: exists and is not a directory")
    predictor = load_predictor(args.checkpoint, args.device, args.tta)
    say_layout(args.checkpoint, predictor.describe().get("layout"))
    if args.images:
        from fmnist.folders import load_folders

        folders = load_folders(args.images)
        images, labels, cues = folders.images, folders.labels, folders.cues
        names, problems, skipped = [p.name for p in folders.paths], folders.problems, folders.skipped
    else:
        # Not the data_dir saved in the checkpoint's config: a path on the training machine is not
        # part of what a checkpoint means, and the test set is the same wherever it is found.
        dataset = load_data(args.data_dir)
        images, labels, names, problems, skipped = dataset.test_images, dataset.test_labels, None, [], {}
        cues = None  # the test set's images are 28x28 already: no framing, no picture cues
    logits = torch.cat([predictor.logits(chunk) for chunk in images.split(1000)])  # once, for both reports
    report = Report(
        str(args.checkpoint),
        str(args.images) if args.images else "test set",
        evaluation_of(logits, labels),
        images,
        names,
        problems,
        skipped,
    )
    trusted = trust_report(predictor.trust, logits, labels, images, cues, args.plots)
    if args.plots:
        written = plots.write_evaluation_plots(args.plots, report, data.CLASSES)
        print(f"wrote {', '.join(written)}", file=sys.stderr)
    if args.json:
        print(json.dumps({**report.as_dict(), "tta": args.tta, "calibration_and_ood": trusted.as_dict()}))
        return 0
    print(report.text())
    print(trusted.text())
    return 0


def trust_report(
    model_trust: trust.Trust,
    logits: torch.Tensor,
    labels: torch.Tensor,
    images: torch.Tensor,
    cues: Sequence[Cues | None] | None,
    plot_dir: str | None,
):
    """Calibration and non-garment figures of a model's logits [N, 10] on a labelled set (trust.report), with
    the pictures' framing `cues` as predict and serve read them; with `plot_dir`, its reliability diagram."""
    from fmnist import plots, trust

    figures = trust.report(model_trust, logits, labels, images, cues)
    if plot_dir:
        before, after = figures.confidence
        confidence = {
            "softmax": before,
            **({f"T = {figures.trust.temperature:.2f}": after} if after is not None else {}),
        }
        plots.plot_reliability(
            confidence, dict.fromkeys(confidence, figures.correct), Path(plot_dir) / "reliability.png"
        )
    return figures
