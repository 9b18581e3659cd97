"""Which static int8 quantization `fmnist export --int8` uses: test accuracy and onnxruntime speed of
each variant (QDQ or QOperator format, per-channel or per-tensor weights, uint8 or int8 activations,
min/max or percentile calibration) of one checkpoint, all calibrated on the same 2,000 training images.

    python benchmarks/int8_variants.py CHECKPOINT_OR_RUN [--threads N]

Speed is the median images/s over interleaved rounds at batches 64 and 1024; on a busy machine
only the accuracy columns are worth quoting.
"""

import argparse
import itertools
import statistics
import tempfile
from pathlib import Path

import numpy as np
import torch
from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process

from fmnist import data, export
from fmnist.bench.speed import Plan
from fmnist.bench.timing import time_calls
from fmnist.evaluate import evaluate_logits
from fmnist.inference import INPUT_NAME, OnnxPredictor


class Reader(CalibrationDataReader):
    def __init__(self, images: np.ndarray, batch: int = 500):
        self.batches = iter(images[i : i + batch] for i in range(0, len(images), batch))

    def get_next(self):
        batch = next(self.batches, None)
        return None if batch is None else {INPUT_NAME: batch}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    dataset = data.load()
    source = export.load_source(args.checkpoint)
    calibration = dataset.train_images[export.calibration_indices(dataset.train_labels, export.CALIBRATION_IMAGES)]
    predictors = {}
    with tempfile.TemporaryDirectory() as tmp:
        fp32, prepared = Path(tmp) / "fp32.onnx", Path(tmp) / "prepared.onnx"
        export.to_onnx(source.model, fp32)
        quant_pre_process(str(fp32), str(prepared))
        predictors["fp32"] = OnnxPredictor(fp32.read_bytes(), "fp32", {}, args.threads)
        for fmt, per_channel, activations, method in itertools.product(
            (QuantFormat.QDQ, QuantFormat.QOperator),
            (True, False),
            (QuantType.QUInt8, QuantType.QInt8),
            (CalibrationMethod.MinMax, CalibrationMethod.Percentile),
        ):
            name = (
                f"{fmt.name} {'per-channel' if per_channel else 'per-tensor'} "
                f"{'u8' if activations == QuantType.QUInt8 else 's8'}-act {method.name}"
            )
            out = Path(tmp) / "int8.onnx"
            quantize_static(
                str(prepared),
                str(out),
                Reader(calibration.numpy()),
                quant_format=fmt,
                per_channel=per_channel,
                activation_type=activations,
                weight_type=QuantType.QInt8,
                calibrate_method=method,
            )
            predictors[name] = OnnxPredictor(out.read_bytes(), name, {}, args.threads)
    accuracy = {
        name: evaluate_logits(p.logits, dataset.test_images, dataset.test_labels).accuracy
        for name, p in predictors.items()
    }
    plan, cpu = Plan(warmup=3, min_repeats=10, min_seconds=0.3, max_seconds=3.0), torch.device("cpu")
    speed: dict[str, dict[int, list[float]]] = {name: {64: [], 1024: []} for name in predictors}
    for _, batch in itertools.product(range(args.rounds), (64, 1024)):
        x = dataset.test_images[:batch]
        for name, p in predictors.items():
            seconds = time_calls(lambda _, p=p, x=x: p.logits(x), cpu, plan)
            speed[name][batch].append(batch / statistics.median(seconds))
    print(f"{args.checkpoint} | {args.threads} thread(s) | calibrated on {len(calibration):,} training images")
    print(f"{'variant':<42} {'test acc':>8} {'vs fp32':>8} {'img/s b64':>10} {'img/s b1024':>11}")
    for name in predictors:
        print(
            f"{name:<42} {accuracy[name]:>8.2%} {100 * (accuracy[name] - accuracy['fp32']):>+8.2f} "
            f"{statistics.median(speed[name][64]):>10,.0f} {statistics.median(speed[name][1024]):>11,.0f}"
        )


if __name__ == "__main__":
    main()
