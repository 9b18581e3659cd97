"""fmnist export: a checkpoint as ONNX (fp32 or int8) with its sidecar."""

from __future__ import annotations

import argparse
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
    p.add_argument("--out", required=True, help="the .onnx file to write; the sidecar goes beside it as NAME.json")
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

    export.check_out(Path(args.out))  # both before the data is loaded
    source = export.load_source(args.checkpoint)
    say_layout(args.checkpoint, source.layout)
    dataset = load_data(args.data_dir)
    facts = export.export(source, args.out, dataset, int8=args.int8, calibration_images=args.calibration_images)
    test = facts["test"]
    how = (
        "fp32"
        if facts["quantization"] is None
        else (
            f"int8 ({facts['quantization']['format']}, per-channel weights, calibrated on "
            f"{facts['quantization']['calibration_images']:,} training images)"
        )
    )
    print(
        f"wrote {args.out} and {Path(args.out).with_suffix('.json').name}: {how}, opset {facts['opset']}, "
        f"{Path(args.out).stat().st_size / 1024:,.0f} KiB"
    )
    print(
        f"test accuracy {test['accuracy']:.2%} with onnxruntime (PyTorch {test['pytorch_accuracy']:.2%}: "
        f"{100 * (test['accuracy'] - test['pytorch_accuracy']):+.2f} point), test loss {test['loss']:.4f}, "
        f"largest logit difference {test['max_abs_logit_difference']:.1e}, same prediction on "
        f"{test['same_prediction']:.2%} of {test['images']:,} images"
    )
    return 0
