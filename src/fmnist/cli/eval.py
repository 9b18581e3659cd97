"""fmnist eval: metrics, error analysis, calibration and the detector's figures on the test set or a user's folders."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from fmnist import data
from fmnist.cli.common import BARE_STATE_DICT, Parser, Subcommands, load_data, say_layout
from fmnist.errors import FmnistError

if TYPE_CHECKING:
    from fmnist import trust


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
        "--plots",
        metavar="DIR",
        help="also write confusion_matrix.png, top_losses.png, most_confused.png and reliability.png here",
    )
    p.set_defaults(func=cmd_eval)


def cmd_eval(args: argparse.Namespace) -> int:
    if args.plots and Path(args.plots).exists() and not Path(args.plots).is_dir():  # before the work, not after
        raise FmnistError(f"--plots {args.plots}: exists and is not a directory")
    if args.plots and (Path(args.plots) / "config.toml").is_file():  # a run (as RunDir.is_run, which imports torch)
        raise FmnistError(f"--plots {args.plots}: a run directory, whose plots are its own; give another folder")
    from fmnist import plots
    from fmnist.api import Model
    from fmnist.inference import load_predictor

    predictor = load_predictor(args.checkpoint, args.device, args.tta)
    say_layout(args.checkpoint, predictor.describe().get("layout"))
    # Not the data_dir saved in the checkpoint's config: a path on the training machine is not part of what a
    # checkpoint means, and the test set is the same wherever it is found.
    dataset = None if args.images else load_data(args.data_dir)
    evaluated = Model(predictor, Path(args.checkpoint)).evaluate(args.images, dataset=dataset)
    if args.plots:
        reliability = Path(args.plots) / "reliability.png"
        plot_reliability(evaluated.calibration, reliability)
        written = plots.write_evaluation_plots(args.plots, evaluated.report, data.CLASSES)
        print(f"wrote {', '.join([*written, str(reliability)])}", file=sys.stderr)
    if args.json:
        print(
            json.dumps(
                {**evaluated.report.as_dict(), "tta": args.tta, "calibration_and_ood": evaluated.calibration.as_dict()}
            )
        )
        return 0
    print(evaluated.report.text())
    print(evaluated.calibration.text())
    return 0


def plot_reliability(figures: trust.Report, path: Path) -> None:
    """The reliability diagram of a model's probabilities on a labelled set: the plain softmax, and with the
    fitted temperature when there is one."""
    from fmnist import plots

    before, after = figures.confidence
    confidence = {"softmax": before, **({f"T = {figures.trust.temperature:.2f}": after} if after is not None else {})}
    plots.plot_reliability(confidence, dict.fromkeys(confidence, figures.correct), path)
