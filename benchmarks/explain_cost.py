"""Time to explain one image (fmnist.explain), next to the time to classify it, on the CPU.

    python benchmarks/explain_cost.py [MODEL ...] [--preset NAME ...] [--repeats 30] [--threads 1]

MODEL: a checkpoint, a run directory (integrated gradients) or an .onnx export (occlusion); --preset: an
untrained model of a preset's architecture (the cost does not depend on the weights). Each model
explains the first training images one at a time, as `POST /predict?explain=1` does for one upload;
the table gives the median milliseconds per image of the explanation (with its heatmap PNG) and of a
plain prediction, and their ratio (a ratio measured in one run holds better on a busy machine).
"""

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from fmnist import checkpoint, config, data, models, presets
from fmnist.explain import Explainer, heatmap_png
from fmnist.inference import load_predictor, probabilities


def median_ms(work, repeats: int) -> float:
    work(0)  # warm-up: first-call allocations, lazy initialisation
    times = []
    for i in range(repeats):
        start = time.perf_counter()
        work(i)
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", help="checkpoints, run directories or .onnx exports")
    parser.add_argument("--preset", action="append", default=[], help="an untrained model of this preset (repeatable)")
    parser.add_argument("--repeats", type=int, default=30, help="images timed per model (default: 30)")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads, as fmnist serve (default: 1)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    images = data.load().train_images[: args.repeats]
    scratch = tempfile.TemporaryDirectory()
    sources = {path: path for path in args.models}
    for name in args.preset:
        cfg = config.from_dict(presets.load(name))
        path = Path(scratch.name) / f"{name}.pt"
        checkpoint.save(path, {"model": models.build(cfg).state_dict(), "config": config.to_dict(cfg), "epoch": 0})
        sources[f"{name} (untrained)"] = str(path)
    print(f"{torch.get_num_threads()} torch thread(s)")
    print(f"{'model':<40} {'method':<55} {'explain ms':>10} {'predict ms':>10} {'ratio':>6}")
    for label, path in sources.items():
        predictor = load_predictor(path, "cpu")
        explainer = Explainer(predictor)
        explain_ms = median_ms(
            lambda i, e=explainer: heatmap_png(images[i], e(images[i : i + 1]).maps[0]), args.repeats
        )
        predict_ms = median_ms(lambda i, p=predictor: probabilities(p, images[i : i + 1]), args.repeats)
        print(
            f"{label:<40} {explainer.method:<55} {explain_ms:>10.1f} {predict_ms:>10.2f} "
            f"{explain_ms / predict_ms:>6.0f}"
        )


if __name__ == "__main__":
    main()
