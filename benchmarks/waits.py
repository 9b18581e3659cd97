"""The waits a user feels at the command line: whole `fmnist` processes, each best of 3, as ratios to
`python -c "import torch"` timed the same way in the same run, so that the figures hold on any CPU.

    python benchmarks/waits.py RUN            # RUN: a run directory of the default `fmnist train`

RUN is exported to a temporary .onnx (not timed), and one garment photo is drawn with Pillow. The commands
run one at a time; run the script alone on the machine (under the CPU lock where several people share it).
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", help="a run directory (or checkpoint) of the default fmnist train")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    fmnist = [sys.executable, "-m", "fmnist"]
    with tempfile.TemporaryDirectory() as tmp:
        onnx = Path(tmp) / "m.onnx"
        subprocess.run([*fmnist, "export", args.run, "--out", str(onnx)], check=True, stdout=subprocess.DEVNULL)
        jpeg = str(photo(Path(tmp) / "trousers.jpg"))
        commands = {
            'python -c "import torch"': [sys.executable, "-c", "import torch"],
            "fmnist --help": [*fmnist, "--help"],
            "fmnist data info": [*fmnist, "data", "info"],
            "fmnist predict MODEL.onnx photo.jpg": [*fmnist, "predict", str(onnx), jpeg],
            "fmnist predict RUN photo.jpg": [*fmnist, "predict", args.run, jpeg],
        }
        seconds = {name: best_of(argv, args.repeats) for name, argv in commands.items()}
    base = seconds['python -c "import torch"']
    print(f"{measure.cpu_name()}; {os.cpu_count()} CPUs; Python {platform.python_version()}")
    print(f'whole processes, best of {args.repeats}, one at a time; ratio to python -c "import torch"\n')
    print(f"| {'command':<36} | {'seconds':>7} | {'ratio':>5} |")
    print(f"|{'-' * 38}|{'-' * 9}:|{'-' * 7}:|")
    for name, value in seconds.items():
        print(f"| {name:<36} | {value:>7.2f} | {value / base:>5.2f} |")


if __name__ == "__main__":
    main()
