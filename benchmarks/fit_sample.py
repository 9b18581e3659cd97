"""How many images the fitted quantities need: the temperature (on validation images) and the int8
activation ranges (on training images), each fitted on samples of several sizes and judged on the test set.

    python benchmarks/fit_sample.py RUN_DIR [--sizes 1,10,30,100,300,1000] [--draws 20] [--int8-draws 3]

RUN_DIR: a run trained with a validation split (`fmnist train`'s default). Temperature: for each size,
`--draws` class-stratified samples of the run's validation split (never test images); the test ECE and
NLL of each fit beside the plain softmax and the fit on the whole split. int8: `fmnist export --int8`'s
quantization calibrated on `--int8-draws` class-stratified samples of the training images per size (below
the minimum `--calibration-images` accepts too, to show why it is there); the test accuracy of
each graph beside fp32's. Prints Markdown tables; the minimums in fmnist.trust and fmnist.export come
from a run of it (docs/TRUST.md, docs/SERVING.md).
"""

from __future__ import annotations

import argparse
import statistics

import numpy as np
import torch

from fmnist import checkpoint, data, export
from fmnist.inference import OnnxPredictor
from fmnist.run_dir import model_path
from fmnist.trust import calibration


def temperature_table(logits_val, val_y, logits_test, test_y, sizes, draws) -> None:
    plain = calibration.measure(logits_test.softmax(1), test_y)
    whole = calibration.fit_temperature(logits_val, val_y)
    best = calibration.measure(calibration.scaled(logits_test, whole), test_y)
    print(f"plain softmax: test ECE {plain.ece:.2%}, NLL {plain.nll:.4f}")
    print(
        f"temperature {whole:.3f} from all {len(val_y):,} validation images: "
        f"test ECE {best.ece:.2%}, NLL {best.nll:.4f}\n"
    )
    print(
        "| images | draws | temperature (min-max) | test ECE median | test ECE worst | draws worse than plain (NLL) |"
    )
    print("|---|---|---|---|---|---|")
    for n in sizes:
        temps, eces, worse = [], [], 0
        for draw in range(draws):
            pick = data.stratified_split(val_y, n, draw)[1] if n < len(val_y) else torch.arange(len(val_y))
            t = calibration.fit_temperature(logits_val[pick], val_y[pick])
            after = calibration.measure(calibration.scaled(logits_test, t), test_y)
            temps.append(t)
            eces.append(after.ece)
            worse += after.nll > plain.nll
        print(
            f"| {n:,} | {draws} | {min(temps):.3f}-{max(temps):.3f} | {statistics.median(eces):.2%} | "
            f"{max(eces):.2%} | {worse} of {draws} |"
        )


def int8_table(model, dataset, sizes, draws) -> None:
    test_x, test_y = dataset.test_images, dataset.test_labels

    def accuracy(calibration_images) -> float:
        model_bytes, _ = export.onnx_bytes(model, calibration_images)
        predictor = OnnxPredictor(
            model_bytes, "bench", {"precision": "int8" if calibration_images is not None else "fp32"}
        )
        return float((predictor.logits(test_x).argmax(1) == test_y).double().mean())

    print(f"\nfp32 graph: test accuracy {accuracy(None):.2%}\n")
    print("| calibration images | draws | int8 test accuracy (min-max) |")
    print("|---|---|---|")
    for n in sizes:
        accs = [
            accuracy(dataset.train_images[data.stratified_split(dataset.train_labels, n, draw)[1]].numpy())
            for draw in range(draws)
        ]
        print(f"| {n:,} | {draws} | {min(accs):.2%}-{max(accs):.2%} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run")
    parser.add_argument("--sizes", default="1,10,30,100,300,1000")
    parser.add_argument("--draws", type=int, default=20)
    parser.add_argument("--int8-draws", type=int, default=3)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    model, cfg, _ = checkpoint.load_model(model_path(args.run), "cpu")
    model.eval()
    dataset = data.load(cfg.data_dir or None)
    _, val_idx = data.validation_split(dataset.train_labels, cfg)
    with torch.inference_mode():
        logits_val = torch.cat([model(data.as_input(c)) for c in dataset.train_images[val_idx].split(1000)])
        logits_test = torch.cat([model(data.as_input(c)) for c in dataset.test_images.split(1000)])
    np.set_printoptions(precision=3)
    temperature_table(logits_val, dataset.train_labels[val_idx], logits_test, dataset.test_labels, sizes, args.draws)
    if args.int8_draws:
        int8_table(model, dataset, sizes, args.int8_draws)


if __name__ == "__main__":
    main()
