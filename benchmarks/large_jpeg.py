"""Peak memory and time of reading a very large JPEG: fmnist's load_image (decoded at 1/2..1/8 scale with
Pillow's draft) against Pillow decoding every pixel. Each measurement runs in a fresh process.

    python benchmarks/large_jpeg.py [--width 12000] [--height 9000]

The photo (108 megapixels by default, a phone's largest mode) is a flat backdrop with a dark object, RGB,
quality 85, written to a temporary directory. Peak memory is the growth of the process's peak resident set
size (Linux: VmHWM, reset through /proc/self/clear_refs once torch and fmnist are imported) over the call.
"""

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image, ImageDraw


def measure(path: str, how: str) -> None:
    import torch  # noqa: F401  (imported before the baseline, as in fmnist's commands)

    from fmnist.images import load_image

    Path("/proc/self/clear_refs").write_text(
        "5", encoding="utf-8"
    )  # the peak (VmHWM) starts again from the current size
    before = _status_kib("VmRSS")
    start = time.perf_counter()
    if how == "fmnist":
        load_image(path)
    else:
        Image.MAX_IMAGE_PIXELS = None  # Pillow's own guard would refuse it
        with Image.open(path) as image:
            image.load()
    seconds = time.perf_counter() - start
    grown = (_status_kib("VmHWM") - before) / 1024
    print(f"{how:<12} {seconds:6.2f} s  peak RSS +{grown:,.0f} MiB")


def _status_kib(field: str) -> int:
    line = next(
        x for x in Path("/proc/self/status").read_text(encoding="utf-8").splitlines() if x.startswith(field + ":")
    )
    return int(line.split()[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=12_000)
    parser.add_argument("--height", type=int, default=9_000)
    parser.add_argument("--measure", nargs=2, metavar=("PATH", "HOW"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        measure(*args.measure)
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "large.jpg"
        picture = Image.new("RGB", (args.width, args.height), (235, 235, 235))
        w, h = args.width, args.height
        ImageDraw.Draw(picture).rectangle((w // 3, h // 6, 2 * w // 3, 5 * h // 6), fill=(30, 30, 30))
        picture.save(path, quality=85)
        del picture
        print(f"{w}x{h} = {w * h / 1e6:.0f} megapixels, {path.stat().st_size / 2**20:.1f} MiB JPEG")
        for how in ("fmnist", "full decode"):
            subprocess.run([sys.executable, __file__, "--measure", str(path), how], check=True)


if __name__ == "__main__":
    main()
