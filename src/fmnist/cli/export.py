"""fmnist export: a checkpoint as ONNX (fp32 or int8) with its sidecar, or as a page that runs it in the browser."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fmnist.cli.common import BARE_STATE_DICT, Parser, Subcommands, load_data, say_layout
from fmnist.config import CALIBRATION_IMAGES


def add_parsers(sub: Subcommands, shared: dict[str, Parser]) -> None:
    """export."""
    data_dir = shared["data_dir"]
    p = sub.add_parser(
        "export", help="write a checkpoint as ONNX (fp32 or int8) with a sidecar JSON of facts", parents=[data_dir]
    )
    p.add_argument(
        "checkpoint", help="a .pt checkpoint, a run directory (its best, else last, checkpoint), or " + BARE_STATE_DICT
    )
    p.add_argument("--out", help="the .onnx file to write; the sidecar goes beside it as NAME.json")
    p.add_argument(
        "--web",
        metavar="DIR",
        help="write a static folder instead: the page of fmnist serve with the model running in the browser "
        "(onnxruntime-web; fp32 unless --int8; serve it with any static server, e.g. python -m http.server -d DIR)",
    )
    p.add_argument(
        "--int8", action="store_true", help="static int8 quantization with onnxruntime, calibrated on training images"
    )
    p.add_argument(
        "--calibration-images",
        type=int,
        default=CALIBRATION_IMAGES,
        help=f"--int8: training images that set the activation ranges (default: {CALIBRATION_IMAGES:,})",
    )
    p.set_defaults(func=cmd_export)


def cmd_export(args: argparse.Namespace) -> int:
    from fmnist import export

    if (args.out is None) == (args.web is None):
        print("fmnist export: error: give --out FILE.onnx or --web DIR (one of them)", file=sys.stderr)
        return 2
    if args.web is not None:
        return export_web(args)
    export.check_out(Path(args.out))  # both before the data is loaded
    source = export.load_source(args.checkpoint)
    say_layout(args.checkpoint, source.layout)
    dataset = load_data(args.data_dir)
    facts = export.export(source, args.out, dataset, int8=args.int8, calibration_images=args.calibration_images)
    print(
        f"wrote {args.out} and {Path(args.out).with_suffix('.json').name}: {precision(facts)}, opset {facts['opset']}, "
        f"{Path(args.out).stat().st_size / 1024:,.0f} KiB"
    )
    print(test_line(facts))
    return 0


def export_web(args: argparse.Namespace) -> int:
    from fmnist import export, web

    web.check_web_out(Path(args.web))  # all three before the data is loaded
    web.check_runtime()
    source = export.load_source(args.checkpoint)
    say_layout(args.checkpoint, source.layout)
    dataset = load_data(args.data_dir)
    facts = web.export_web(source, args.web, dataset, int8=args.int8, calibration_images=args.calibration_images)
    model = Path(args.web) / web.MODEL_FILE
    print(
        f"wrote {args.web}: the page, onnxruntime-web {web.ORT_WEB_VERSION} and {web.MODEL_FILE} "
        f"({precision(facts)}, {model.stat().st_size / 1024:,.0f} KiB), {facts['bundle_bytes'] / 2**20:.1f} MiB in all"
    )
    print(test_line(facts))
    print(f"serve it with any static file server, e.g. python -m http.server -d {args.web}")
    return 0


def precision(facts: dict) -> str:
    quantization = facts["quantization"]
    if quantization is None:
        return "fp32"
    return (
        f"int8 ({quantization['format']}, per-channel weights, calibrated on "
        f"{quantization['calibration_images']:,} training images)"
    )


def test_line(facts: dict) -> str:
    test = facts["test"]
    return (
        f"test accuracy {test['accuracy']:.2%} with onnxruntime (PyTorch {test['pytorch_accuracy']:.2%}: "
        f"{100 * (test['accuracy'] - test['pytorch_accuracy']):+.2f} point), test loss {test['loss']:.4f}, "
        f"largest logit difference {test['max_abs_logit_difference']:.1e}, same prediction on "
        f"{test['same_prediction']:.2%} of {test['images']:,} images"
    )
