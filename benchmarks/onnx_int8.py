"""onnxruntime int8 and fp32 against PyTorch fp32 inference of one checkpoint, interleaved: each round
times the three back to back at every batch size, so a machine that gets busier or quieter mid-run
shifts all three alike; the ratio is taken per round and reported as the median (min-max) over rounds.

    python benchmarks/onnx_int8.py CHECKPOINT_OR_RUN [--batches 64,1024] [--rounds 7] [--threads N]

The models are exported in memory as `fmnist export` writes them (int8: QDQ, per-channel weights,
calibrated on 2,000 training images). Inputs are uint8 test images already in memory; PyTorch runs
as_input + the model under inference_mode, onnxruntime the graph with the scaling inside.
"""

import argparse
import statistics

import torch

from fmnist import data, export, measure
from fmnist.bench.speed import Plan
from fmnist.bench.timing import time_calls
from fmnist.data import as_input
from fmnist.inference import OnnxPredictor


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--batches", default="64,1024")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--threads", type=int, help="threads for torch and onnxruntime alike (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    dataset = data.load()
    source = export.load_source(args.checkpoint)
    calibration = dataset.train_images[export.calibration_indices(dataset.train_labels, export.CALIBRATION_IMAGES)]
    runners = {"pytorch fp32": lambda x: source.model(as_input(x))}
    for precision, images in (("fp32", None), ("int8", calibration.numpy())):
        model_bytes, _ = export.onnx_bytes(source.model, images)
        runners[f"onnxruntime {precision}"] = OnnxPredictor(model_bytes, precision, {}, threads).logits
    plan = Plan(warmup=5, min_repeats=20, min_seconds=0.5, max_seconds=5.0)
    cpu = torch.device("cpu")
    print(f"{measure.hardware(cpu)['cpu']} | {threads} threads | torch {torch.__version__} | {args.checkpoint}")
    for batch in (int(b) for b in args.batches.split(",")):
        x = dataset.test_images[:batch]
        rates: dict[str, list[float]] = {name: [] for name in runners}
        with torch.inference_mode():
            for _ in range(args.rounds):
                for name, run in runners.items():
                    rates[name].append(batch / statistics.median(time_calls(lambda _, run=run, x=x: run(x), cpu, plan)))
        base = rates["pytorch fp32"]
        for name, values in rates.items():
            ratios = [v / b for v, b in zip(values, base, strict=True)]
            print(
                f"batch {batch:>5}  {name:<17} {statistics.median(values):>11,.0f} images/s  "
                f"x{statistics.median(ratios):.2f} of PyTorch fp32 ({min(ratios):.2f}-{max(ratios):.2f} over "
                f"{args.rounds} rounds)"
            )


if __name__ == "__main__":
    main()
