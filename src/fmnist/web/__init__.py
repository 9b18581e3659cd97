"""`fmnist export RUN --web DIR`: the page of `fmnist serve` as a static folder that runs the model in the browser.

The folder holds one page with two back ends: the served page's HTML, CSS and script (fmnist.serve's static
files, unchanged but for two script tags), framing.js with segmentation.js, shadows.js and shading.js (fmnist.images'
framing ported to JavaScript: the 28x28 view and the picture cues), browser.js (the in-browser back end: the
model in onnxruntime-web's WebAssembly build, the answer as fmnist.answer builds it, `window.fmnist.classify`),
the model as `model.onnx` with its sidecar `model.json` (fmnist.export), and onnxruntime-web's files with its
licence under `static/ort/`, copied from the folder `scripts/setup.sh` installs them in with npm (`runtime_dir`).
Nothing is fetched from the internet when the page runs. Any static file server serves it (`python -m
http.server -d DIR`); browsers do not run WebAssembly for pages opened as file://.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fmnist.config import CALIBRATION_IMAGES
from fmnist.data import FashionMNIST
from fmnist.errors import FmnistError

if TYPE_CHECKING:
    from fmnist.export import Source

# onnxruntime-web's npm release the page is built and tested with; scripts/setup.sh installs this one.
ORT_WEB_VERSION = "1.31.1"
# What the page needs of it: the WebAssembly-only build (no WebGL/WebGPU code), its loader and binary (SIMD;
# threads go unused, as they need a cross-origin-isolated page), and the licence (MIT).
RUNTIME_FILES = ("ort.wasm.min.js", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm", "LICENSE")
RUNTIME_ENV = "FMNIST_ORT_WEB"
MODEL_FILE = "model.onnx"
# The served page loads app.js last; the exported one loads the runtime, the framing and the back end first.
APP_SCRIPT = '<script src="static/app.js"></script>'
BROWSER_SCRIPTS = (
    "static/ort/ort.wasm.min.js",
    "static/segmentation.js",
    "static/shadows.js",
    "static/shading.js",
    "static/framing.js",
    "static/browser.js",
)


def runtime_dir() -> Path:
    """Where onnxruntime-web's files are: $FMNIST_ORT_WEB, else $XDG_DATA_HOME (~/.local/share) /
    fmnist/onnxruntime-web-VERSION, the folder scripts/setup.sh fills."""
    if os.environ.get(RUNTIME_ENV):
        return Path(os.environ[RUNTIME_ENV])
    data_home = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return data_home / "fmnist" / f"onnxruntime-web-{ORT_WEB_VERSION}"


def check_runtime(directory: Path | None = None) -> Path:
    """The runtime folder when it holds every file of RUNTIME_FILES; FmnistError, in one line, otherwise."""
    directory = runtime_dir() if directory is None else directory
    missing = [name for name in RUNTIME_FILES if not (directory / name).is_file()]
    if missing:
        raise FmnistError(
            f"onnxruntime-web {ORT_WEB_VERSION} is not in {directory} (missing {', '.join(missing)}): run "
            f"bash scripts/setup.sh, which installs it with npm, or set {RUNTIME_ENV} to a folder holding its files"
        )
    return directory


def check_web_out(out: Path) -> None:
    """Fail before any work when `out` is a file, or a folder that holds something else than a web export."""
    if out.exists() and not out.is_dir():
        raise FmnistError(f"--web {out}: is a file; give a folder to write the page in")
    if out.is_dir() and any(out.iterdir()) and not (out / MODEL_FILE).is_file():
        raise FmnistError(f"--web {out}: the folder is not empty and holds no earlier export; give a new folder")


def export_web(
    source: Source,
    out: str | Path,
    dataset: FashionMNIST,
    *,
    int8: bool = False,
    calibration_images: int = CALIBRATION_IMAGES,
) -> dict[str, Any]:
    """Write the page, its scripts, the model (`source`, fp32 or `int8`) and onnxruntime-web into the folder
    `out`; return the model's sidecar facts with `bundle_bytes` added.

    fp32 by default: its logits are PyTorch's (within export.PARITY_TOLERANCE), so the page answers as
    `fmnist predict RUN`. int8 shrinks the model, not onnxruntime-web's 14 MiB of WebAssembly, and changes the
    class of 1.65 % of the reference MLP's test images against PyTorch (docs/WEB.md).

    The folder is built beside `out` and renamed into place, so `out` is the old export or the new one.
    Raises FmnistError when the runtime is missing (`check_runtime`) or `out` is taken (`check_web_out`).
    """
    from fmnist import export

    out = Path(out)
    check_web_out(out)
    runtime = check_runtime()
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        facts = export.export(source, work / MODEL_FILE, dataset, int8=int8, calibration_images=calibration_images)
        write_page(work, runtime)
        os.chmod(work, 0o755)  # mkdtemp makes 0700; the folder is for a web server to read
        if out.exists():
            old = out.with_name(f".{out.name}.old")
            os.replace(out, old)
            os.replace(work, out)
            shutil.rmtree(old)
        else:
            os.replace(work, out)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return {**facts, "bundle_bytes": bundle_bytes(out)}


def write_page(folder: Path, runtime: Path) -> None:
    """The page's files in `folder`: the served page's static files, the in-browser scripts, the runtime."""
    static = folder / "static"
    (static / "ort").mkdir(parents=True)
    page = ""
    for package in ("fmnist.serve", "fmnist.web"):
        for entry in (resources.files(package) / "static").iterdir():
            if entry.name == "index.html":
                page = entry.read_text(encoding="utf-8")
            elif entry.is_file():
                (static / entry.name).write_bytes(entry.read_bytes())
    for name in RUNTIME_FILES:
        shutil.copyfile(runtime / name, static / "ort" / name)
    (folder / "index.html").write_text(browser_page(page), encoding="utf-8")


def browser_page(page: str) -> str:
    """The served page's HTML with the in-browser back end's scripts loaded before app.js."""
    if APP_SCRIPT not in page:
        raise ValueError(f"the served page no longer loads {APP_SCRIPT}: web export needs it to insert its scripts")
    scripts = "".join(f'<script src="{src}"></script>\n  ' for src in BROWSER_SCRIPTS)
    return page.replace(APP_SCRIPT, scripts + APP_SCRIPT)


def bundle_bytes(folder: Path) -> int:
    """Bytes of every file in `folder`: what a browser downloads for the first answer (the sidecar included)."""
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())
