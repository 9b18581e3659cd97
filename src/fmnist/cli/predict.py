"""fmnist predict: classify image files, one line (or JSON object) per file."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from fmnist.cli.common import BARE_STATE_DICT, OOD_THRESHOLD_DEFAULT, Parser, Subcommands, say_layout
from fmnist.errors import FmnistError, plain, printable

if TYPE_CHECKING:
    import numpy as np

    from fmnist.inference import FilePrediction


def add_parsers(sub: Subcommands, shared: dict[str, Parser]) -> None:
    """predict."""
    device = shared["device"]
    tta = shared["tta"]
    p = sub.add_parser("predict", help="classify photos and other image files with a checkpoint", parents=[device, tta])
    p.add_argument(
        "checkpoint", help="a .pt checkpoint, a run directory, an .onnx file from fmnist export, or " + BARE_STATE_DICT
    )
    p.add_argument(
        "images",
        nargs="+",
        metavar="IMAGE",
        help="image files in any format and mode Pillow reads (PNG, JPEG, WebP, TIFF, ...), up to 50 M "
        "pixels decoded (a JPEG decodes at down to 1/8 scale: up to 3,200 M pixels); directories (the "
        "images in them, by content, sorted; hidden and system files skipped) or globs such as "
        "'photos/*.jpg'",
    )
    p.add_argument("--top-k", type=int, default=3, help="classes to show per image (default: 3)")
    p.add_argument("--json", action="store_true", help="one JSON object per line per image")
    p.add_argument("--batch-size", type=int, default=256, help="images per model call (default: 256)")
    p.add_argument(
        "--ood-threshold",
        type=float,
        metavar="SCORE",
        help=f"in-distribution score (0..1) below which a picture is called not a garment "
        f"(default: {OOD_THRESHOLD_DEFAULT})",
    )
    p.add_argument(
        "--save-inputs",
        metavar="DIR",
        help="write the 28x28 image the model saw for each file as DIR/<file name>.png (-2, -3, ... when names "
        "repeat; each answer names its file)",
    )
    p.add_argument(
        "--explain",
        metavar="DIR",
        help="also write, for each file, a heatmap of the pixels that drove the "
        "predicted class over the 28x28 view (red: for it, blue: against) as DIR/<file name>.png: "
        "integrated gradients for a PyTorch model, occlusion for an ONNX export",
    )
    p.set_defaults(func=cmd_predict, uses_torch=uses_torch)


def cmd_predict(args: argparse.Namespace) -> int:
    from fmnist import trust
    from fmnist.images import collect_images
    from fmnist.inference import PredictOptions, load_predictor, predict_files

    trust.check_threshold(args.ood_threshold, "--ood-threshold")
    options = PredictOptions(
        args.top_k,
        args.batch_size,
        Path(args.save_inputs) if args.save_inputs else None,
        Path(args.explain) if args.explain else None,
        args.ood_threshold,
    )
    found = collect_images(args.images)
    skipped = found.skipped_summary()
    if not found.paths:
        raise FmnistError(f"no image files in {', '.join(args.images)}" + (f" ({skipped})" if skipped else ""))
    if skipped:
        print(f"fmnist: {skipped}", file=sys.stderr)
    for argument in found.empty:  # among others that do hold pictures: a mistyped folder or glob
        print(f"fmnist: no image files in {printable(argument)}", file=sys.stderr)
    predictor = load_predictor(args.checkpoint, args.device, args.tta)
    say_layout(args.checkpoint, predictor.describe().get("layout"))
    explain = None
    if args.explain:
        import torch

        from fmnist.explain import Explainer, heatmaps

        explainer = Explainer(predictor)
        print(f"explanations: {explainer.method}, written to {Path(args.explain)}/", file=sys.stderr)

        def explain(images: np.ndarray, targets: np.ndarray) -> list[bytes]:
            pixels = torch.from_numpy(images)
            return heatmaps(pixels, explainer(pixels, torch.from_numpy(targets)))

    failed = 0
    for result in predict_files(predictor, found.paths, options, explain):
        failed += result.error is not None
        print(predict_line(result, args.json))
    return 1 if failed else 0


def uses_torch(args: argparse.Namespace) -> bool:
    """An exported model answers with onnxruntime and numpy alone, unless asked to explain or to augment."""
    return Path(args.checkpoint).suffix.lower() != ".onnx" or bool(args.explain) or args.tta != "none"


def predict_line(result: FilePrediction, as_json: bool) -> str:
    path = str(result.path)
    shown = printable(path)  # one line per file, whatever its name holds (JSON escapes it itself)
    if result.answer is None:
        # load_image's messages name the file already, made one line by plain()
        error = plain(result.error or "").removeprefix(f"{plain(path)}: ")
        return json.dumps({"path": path, "error": error}) if as_json else f"{shown}: error: {error}"
    if not as_json:
        written = [f"view {printable(str(result.saved_input))}"] if result.saved_input is not None else []
        written += [f"heatmap {printable(str(result.explanation))}"] if result.explanation is not None else []
        return f"{shown}: {result.answer}" + (f" ({'; '.join(written)})" if written else "")
    row = {"path": path, **result.answer.as_dict()}
    if result.saved_input is not None:
        row["input"] = str(result.saved_input)
    if result.explanation is not None:
        row["explanation"] = str(result.explanation)
    return json.dumps(row)
