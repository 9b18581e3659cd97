"""The plain onnxruntime script of docs/EXPORT.md against `fmnist predict --json` on real test images.

    python benchmarks/plain_onnx.py MODEL.onnx RUN_OR_CHECKPOINT [--images 10000] [--out DIR]

Writes the first --images test images as 28x28 PNG files, runs the docs' script (copied out of
docs/EXPORT.md, in a subprocess with no fmnist on its path) on MODEL.onnx alone and `fmnist predict
--json --top-k 10` on RUN_OR_CHECKPOINT, and prints the share with the same class and verdict and the
largest probability difference, over the images `predict` takes as they are (a 28x28 grayscale image with
a mostly dark border; the few test images whose object fills the border are framed again by predict,
which the plain script does not do, and are counted apart). For an fp32 export of the run, all must agree
(probabilities within 1e-6).
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from fmnist import data
from fmnist.images import export_png, load_picture

ROOT = Path(__file__).parents[1]


def script() -> str:
    page = (ROOT / "docs" / "EXPORT.md").read_text()
    return page.split("<!-- plain-onnx-script -->\n```python\n", 1)[1].split("```", 1)[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("onnx")
    parser.add_argument("model")
    parser.add_argument("--images", type=int, default=10_000)
    args = parser.parse_args()
    images = data.load().test_images[: args.images]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        paths = [str(work / f"{i:05d}.png") for i in range(len(images))]
        for image, path in zip(images, paths, strict=True):
            export_png(image, path)
        (work / "classify.py").write_text(script())
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        plain = subprocess.run(
            [sys.executable, "classify.py", str(Path(args.onnx).resolve()), *paths],
            cwd=work,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        ours = subprocess.run(
            [sys.executable, "-m", "fmnist", "predict", args.model, *paths, "--json", "--top-k", "10"],
            capture_output=True,
            text=True,
            check=True,
        )
        as_is = [load_picture(path).cues is None for path in paths]
    pairs = [
        (json.loads(a), json.loads(b))
        for a, b, kept in zip(plain.stdout.splitlines(), ours.stdout.splitlines(), as_is, strict=True)
        if kept
    ]
    rows, expected = [a for a, _ in pairs], [b for _, b in pairs]
    same_class = sum(a["class_name"] == b["class_name"] for a, b in zip(rows, expected, strict=True))
    same_verdict = sum(a["garment"] == b["garment"] for a, b in zip(rows, expected, strict=True))
    largest = max(
        abs(dict(zip(data.CLASSES, a["probabilities"], strict=True))[name] - p)
        for a, b in zip(rows, expected, strict=True)
        for name, p in b["top"]
    )
    print(
        f"{len(rows)} test images taken as they are ({len(as_is) - len(rows)} framed again by predict): "
        f"same class {same_class}, same verdict {same_verdict}, "
        f"largest probability difference {largest:.1e}"
    )


if __name__ == "__main__":
    main()
