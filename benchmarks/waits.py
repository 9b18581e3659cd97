"""The waits a user feels, every figure in one run: whole `fmnist` processes as ratios to
`python -c "import torch"` (best of 3, so that the figures hold on any CPU); where the wall time of the
default `fmnist train` goes, phase by phase, against the sum of its epochs (benchmarks/train_phases.py);
and `fmnist serve` beside LitServe and a per-request FastAPI endpoint at 1 and 32 clients, with its start-up
to the first 200 on /healthz (benchmarks/serve_peers.py).

    python benchmarks/waits.py RUN                       # RUN: a run directory of the default `fmnist train`
    python benchmarks/waits.py RUN --parts commands      # only the command table (also: train, serve)

RUN is exported to a temporary .onnx (not timed), and one garment photo is drawn with Pillow. Everything
runs one job at a time; run the script alone on the machine (under the CPU lock where several people share
it). The serving part needs 2 CPUs, `taskset` and `pip install litserve`.
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image, ImageDraw

from fmnist import measure

sys.path.insert(0, str(Path(__file__).parent))
import serve_peers  # noqa: E402
import train_phases  # noqa: E402

PARTS = ("commands", "train", "serve")


def photo(path: Path) -> Path:
    """A dark pair of trousers on an off-white background, as a shop photographs it (JPEG, 360x480)."""
    image = Image.new("RGB", (360, 480), (244, 241, 234))
    draw = ImageDraw.Draw(image)
    draw.rectangle((115, 58, 245, 115), fill=(38, 40, 52))
    draw.polygon([(115, 96), (173, 96), (158, 432), (104, 432)], fill=(38, 40, 52))
    draw.polygon([(187, 96), (245, 96), (256, 432), (202, 432)], fill=(38, 40, 52))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    path.write_bytes(buffer.getvalue())
    return path


def best_of(argv: list[str], repeats: int) -> float:
    """Least wall seconds of `repeats` runs of the whole process `argv` (it must succeed)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - start)
    return min(times)


def commands_table(run: str, repeats: int) -> None:
    """The command waits: each whole process, best of `repeats`, and its ratio to importing torch."""
    fmnist = [sys.executable, "-m", "fmnist"]
    with tempfile.TemporaryDirectory() as tmp:
        onnx = Path(tmp) / "m.onnx"
        subprocess.run([*fmnist, "export", run, "--out", str(onnx)], check=True, stdout=subprocess.DEVNULL)
        jpeg = str(photo(Path(tmp) / "trousers.jpg"))
        commands = {
            'python -c "import torch"': [sys.executable, "-c", "import torch"],
            "fmnist --help": [*fmnist, "--help"],
            "fmnist data info": [*fmnist, "data", "info"],
            "fmnist predict MODEL.onnx photo.jpg": [*fmnist, "predict", str(onnx), jpeg],
            "fmnist predict RUN photo.jpg": [*fmnist, "predict", run, jpeg],
        }
        seconds = {name: best_of(argv, repeats) for name, argv in commands.items()}
    base = seconds['python -c "import torch"']
    print(f'whole processes, best of {repeats}, one at a time; ratio to python -c "import torch"\n')
    print(f"| {'command':<36} | {'seconds':>7} | {'ratio':>5} |")
    print(f"|{'-' * 38}|{'-' * 9}:|{'-' * 7}:|")
    for name, value in seconds.items():
        print(f"| {name:<36} | {value:>7.2f} | {value / base:>5.2f} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", help="a run directory (or checkpoint) of the default fmnist train")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--parts", default=",".join(PARTS), help=f"which figures (default: {','.join(PARTS)})")
    parser.add_argument("--requests", type=int, default=3000, help="serve: requests per level (default: 3000)")
    parser.add_argument("--profile", metavar="FILE", help="serve: also profile fmnist serve at 32 clients (py-spy)")
    parser.add_argument("--json", metavar="FILE", help="serve: also write its figures as JSON")
    args = parser.parse_args()
    parts = args.parts.split(",")
    if unknown := set(parts) - set(PARTS):
        parser.error(f"unknown parts: {', '.join(sorted(unknown))}")
    print(f"{measure.cpu_name()}; {os.cpu_count()} CPUs; Python {platform.python_version()}\n", flush=True)
    if "commands" in parts:
        commands_table(args.run, args.repeats)
    if "train" in parts:
        print("\n## the default fmnist train, phase by phase\n", flush=True)
        train_phases.report([], plain=1)
    if "serve" in parts:
        print("\n## fmnist serve beside its peers (server on CPU 0, load generator on CPU 1)\n", flush=True)
        serve_peers.report(args.run, "mlp", [1, 32], args.requests, 60, args.json, args.profile or "")


if __name__ == "__main__":
    main()
