"""Helpers the tests share (tests/ has no __init__.py, so pytest puts this folder on sys.path and
`from support import ...` works): IDX writing and a small learnable synthetic dataset, labelled photo
folders, an interrupted run, and for the server tests a tiny model, product-style photos, bad files and
a real `fmnist serve` process."""

from __future__ import annotations

import contextlib
import functools
import gzip
import hashlib
import io
import json
import os
import re
import signal
import struct
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from fmnist import checkpoint, config, data, models, training, trust
from fmnist.testing import photos

ROOT = Path(__file__).resolve().parents[1]


class PlotRecorder:
    """Stands in for plots.write_run_plots (the conftest fixture record_plots): records (run directory, epochs
    of history, test images) of each run's plots that fit() asks for instead of drawing them. Drawing them is
    1.7 s of matplotlib on 2 CPUs, most of a tiny fit's time; tests that train many runs and check none of
    their plots use it (test_cli.py, test_run_dir.py and test_plots.py draw and check them)."""

    def __init__(self) -> None:
        self.requests: list[tuple[Path, int, int]] = []

    def __call__(self, run_dir, history, test, test_images, classes) -> None:
        assert len(test.labels) == len(test_images) and len(classes) == 10
        self.requests.append((Path(run_dir), len(history), len(test_images)))


def tiny_checkpoint(path: Path, model: str = "mlp") -> Path:
    """An untrained small model saved as a real checkpoint: serving does not care how well it learned."""
    cfg = config.Config(model=model, hidden=(8,) if model == "cnn" else (32,))
    checkpoint.save(path, {"model": models.build(cfg).state_dict(), "config": config.to_dict(cfg), "epoch": 0})
    return path


def trusted_checkpoint(path: Path, temperature: float = 2.0) -> Path:
    """tiny_checkpoint with a hand-made Trust: a temperature, and a detector on one cue, border_fit, whose
    references say that garment photos have a plain border (most at 1.0): a mosaic() is not a garment."""
    tiny_checkpoint(path)
    state = checkpoint.load(path)
    references = {"border_fit": np.array([0.8] * 5 + [1.0] * 95)}
    state[trust.KEY] = trust.Trust(temperature, references, 0.05).to_dict()
    checkpoint.save(path, state)
    return path


def mosaic(size: tuple[int, int] = (400, 300), block: int = 40, seed: int = 0) -> bytes:
    """A JPEG of random coloured blocks: clutter all the way to the border, nothing like a product photo."""
    rng = np.random.default_rng(seed)
    cells = rng.integers(0, 256, (size[1] // block + 1, size[0] // block + 1, 3), dtype=np.uint8)
    pixels = np.kron(cells, np.ones((block, block, 1), dtype=np.uint8))[: size[1], : size[0]]
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def square_gingham(side: int = 420, square: int = 20) -> bytes:
    """A lossless PNG of a dark garment (a rectangle) on a red-and-white gingham whose white squares run along every
    edge: half of the border white and flat, as a dataset image's background."""
    y, x = np.mgrid[0:side, 0:side]
    across, down = (x // square) % 2, (y // square) % 2
    red, pink = np.array([200, 40, 50], np.float32), np.array([228, 148, 152], np.float32)
    coloured = np.where((across * down)[..., None] == 1, red, pink)
    cloth = np.where((across + down)[..., None] == 0, np.float32(255), coloured)
    garment = np.zeros((side, side, 1), np.float32)
    garment[side // 2 - 100 : side // 2 + 100, side // 2 - 45 : side // 2 + 45] = 1
    picture = cloth * (1 - garment) + np.array([30, 35, 60], np.float32) * garment
    buffer = io.BytesIO()
    Image.fromarray(np.uint8(picture)).save(buffer, format="PNG")
    return buffer.getvalue()


def product_photo(kind: str = "trouser", size: tuple[int, int] = (360, 480), fmt: str = "JPEG") -> bytes:
    """A dark garment on an off-white background with wide margins, as a shop photographs it."""
    mask = np.asarray(garment_mask(kind, size), np.float32)[..., None] / 255
    image = Image.fromarray(np.uint8(np.float32([244, 241, 234]) * (1 - mask) + np.float32([38, 40, 52]) * mask))
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return buffer.getvalue()


def garment_mask(kind: str = "trouser", size: tuple[int, int] = (360, 480)) -> Image.Image:
    """An L image, 255 on a trouser or a shirt drawn with wide margins, 0 elsewhere."""
    image = Image.new("L", size, 0)
    draw = ImageDraw.Draw(image)
    w, h = size
    if kind == "trouser":
        draw.rectangle((w * 0.32, h * 0.12, w * 0.68, h * 0.24), fill=255)  # waistband
        draw.polygon([(w * 0.32, h * 0.2), (w * 0.48, h * 0.2), (w * 0.44, h * 0.9), (w * 0.29, h * 0.9)], fill=255)
        draw.polygon([(w * 0.52, h * 0.2), (w * 0.68, h * 0.2), (w * 0.71, h * 0.9), (w * 0.56, h * 0.9)], fill=255)
    else:  # a shirt
        outline = [
            (0.3, 0.2),
            (0.7, 0.2),
            (0.9, 0.35),
            (0.8, 0.45),
            (0.7, 0.38),
            (0.7, 0.85),
            (0.3, 0.85),
            (0.3, 0.38),
            (0.2, 0.45),
            (0.1, 0.35),
        ]
        draw.polygon([(w * x, h * y) for x, y in outline], fill=255)
    return image


def lit_past_white(kind: str = "shirt", side: int = 300, dark: bool = False) -> Image.Image:
    """A square photo of a garment on a backdrop whose light ramps across it and clips: on white, lit past white
    over more than half of it (a dark garment); `dark`, a light garment on black crushed to black over as much. With
    a little sensor noise, so that it is a photo."""
    mask = np.asarray(garment_mask(kind, (side, side)), np.float32) / 255
    ramp = np.linspace(-1.0, 1.0, side, dtype=np.float32)[None, :].repeat(side, 0)
    backdrop = -7 - 60 * ramp if dark else 262 + 60 * ramp
    garment = 210.0 if dark else 45.0
    noise = np.random.default_rng(0).normal(0, 2, (side, side)).astype(np.float32)
    photo = np.clip(backdrop * (1 - mask) + garment * mask + noise, 0, 255)
    return Image.fromarray(np.uint8(np.rint(photo))).convert("RGB")


def noisy_product_photo(
    kind: str = "shirt", noise: float = 4.0, seed: int = 0, backdrop: float | None = None, shadow: bool = False
) -> bytes:
    """fmnist.testing.photos.square_photo of a garment drawn at 28x28 (`garment_mask`): a square JPEG on a flat
    off-white backdrop (or one of level `backdrop`) with a camera's sensor noise (`noise` levels in each channel),
    and a drop shadow or not."""
    image = np.asarray(garment_mask(kind, (28, 28)))
    return photos.square_photo(image, noise, shadow, np.random.default_rng(seed), backdrop)


def lit_across(photo: bytes, angle: float, offset: float, factors: tuple[float, ...], blur: float = 1.5) -> bytes:
    """`photo` re-saved as a JPEG with its light multiplied by `factors[0]` beyond a straight edge at `angle`
    degrees, `offset` of the longer side from the centre, softened over `blur` pixels (a hard shadow, a
    window's light); with two factors, by the second beyond a parallel edge a tenth of the side further (a bar)."""
    pixels = np.asarray(Image.open(io.BytesIO(photo)).convert("RGB"), np.float64)
    height, width = pixels.shape[:2]
    y, x = np.mgrid[0:height, 0:width]
    across = np.cos(np.radians(angle)) * (x - width / 2) + np.sin(np.radians(angle)) * (y - height / 2)
    light = np.ones((height, width))
    for k, factor in enumerate(factors):
        beyond = 1 / (1 + np.exp(-np.clip((across - (offset + 0.1 * k) * max(height, width)) / blur, -50, 50)))
        light *= 1 + (factor / (factors[k - 1] if k else 1) - 1) * beyond
    buffer = io.BytesIO()
    Image.fromarray(np.uint8(np.clip(np.rint(pixels * light[..., None]), 0, 255))).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def png_claiming(width: int, height: int) -> bytes:
    """A valid small PNG whose header says width x height: a decompression bomb's signature, cheap to make."""
    raw = io.BytesIO()
    Image.new("L", (8, 8)).save(raw, format="PNG")
    data = bytearray(raw.getvalue())
    ihdr = struct.pack(">II", width, height) + bytes(data[24:29])
    data[16:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return bytes(data)


def real_bomb() -> bytes:
    """An 8000x8000 image (64 M pixels) that compresses to a few kB."""
    buffer = io.BytesIO()
    Image.new("1", (8000, 8000)).save(buffer, format="PNG", optimize=False)
    return buffer.getvalue()


def default_sigint() -> None:
    """In a child before it runs: SIGINT as a terminal's Ctrl-C finds it (a shell starts background jobs with
    SIGINT ignored, children inherit that, and Python turns SIGINT into KeyboardInterrupt only from the default)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def handles(pid: int, sig: int) -> bool:
    """Whether process `pid` has a handler of its own for `sig` (the SigCgt mask of /proc/PID/status)."""
    status = Path(f"/proc/{pid}/status").read_text()
    return bool(int(re.search(r"SigCgt:\s+([0-9a-f]+)", status).group(1), 16) >> (sig - 1) & 1)  # type: ignore[union-attr]


def wait_until(condition: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.002)


@dataclass
class Server:
    process: subprocess.Popen
    url: str
    output: list[str]  # its stdout and stderr lines, read by a thread so that a full pipe never blocks it

    def rss_kib(self, pid: int | None = None) -> int:
        status = Path(f"/proc/{pid or self.process.pid}/status").read_text()
        return int(re.search(r"VmRSS:\s+(\d+)", status).group(1))  # type: ignore[union-attr]

    def children(self) -> list[int]:
        """Process ids of its child processes (the workers of --workers N; multiprocessing's helpers too)."""
        pid = self.process.pid
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


@contextlib.contextmanager
def running_server(
    model: Path, *flags: str, timeout: float = 60, env: dict[str, str] | None = None, access_log: bool = False
) -> Iterator[Server]:
    """`fmnist serve MODEL --port 0 FLAGS` in a child process; yields once it listens, kills it afterwards.
    env: more environment variables."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1", **(env or {})}
    quiet = () if access_log else ("--no-access-log",)
    process = subprocess.Popen(
        [sys.executable, "-m", "fmnist", "serve", str(model), "--port", "0", *quiet, *flags],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        preexec_fn=default_sigint,
    )
    try:
        deadline = time.monotonic() + timeout
        line = ""
        while time.monotonic() < deadline:
            line = process.stdout.readline()  # type: ignore[union-attr]
            found = re.search(r"http://[\d.]+:\d+", line)
            if found:
                output = [line]
                threading.Thread(target=output.extend, args=(process.stdout,), daemon=True).start()
                yield Server(process, found.group(0), output)
                return
            if not line and process.poll() is not None:
                break
        raise RuntimeError(f"fmnist serve did not start (exit {process.poll()}): {line}")
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
        process.wait(10)


# ---------------------------------------------------------------- data

SYNTHETIC_TRAIN, SYNTHETIC_TEST = 1000, 300


HEAVY_MODULES = ("torch", "matplotlib", "fastapi")  # seconds of imports that a command that does not use them skips


def heavy_modules_of(*argv: str) -> tuple[list[str], str]:
    """Which HEAVY_MODULES the command `fmnist ARGV` imported, run in a fresh interpreter, and its output;
    the command must succeed."""
    code = (
        "import json, sys\nfrom fmnist.cli import main\ncode = main(sys.argv[1:])\n"
        f"print(json.dumps([m for m in {HEAVY_MODULES!r} if m in sys.modules]), file=sys.stderr)\nsys.exit(code)"
    )
    done = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stderr.strip().splitlines()[-1]), done.stdout


def write_idx(path: Path, array, kind: str) -> str:
    """Write `array` as an IDX file of `kind` "images" [N,28,28] or "labels" [N] (gzip if `path`
    ends in .gz); return the SHA-256 of the uncompressed bytes, as data.FILES pins it."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    ndim = {"images": 3, "labels": 1}[kind]
    assert array.ndim == ndim, f"{kind} need {ndim} dimensions, got shape {array.shape}"
    raw = struct.pack(f">I{ndim}I", 0x0800 + ndim, *array.shape) + array.tobytes()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(raw, compresslevel=1, mtime=0) if path.suffix == ".gz" else raw)
    return hashlib.sha256(raw).hexdigest()


@functools.cache
def synthetic_arrays() -> dict[str, np.ndarray]:
    """Images and labels keyed like data.FILES; each class is a fixed random 7x7 pattern of
    bright 4x4 blocks, plus noise and brightness jitter, so a small MLP learns it quickly. The patterns are
    mirror-symmetric, as most garments are, so that framing as a photo never takes one for a shoe facing right."""
    rng = np.random.default_rng(0)
    blocks = rng.random((len(data.CLASSES), 7, 7)) < 0.4
    blocks[:, :, 4:] = blocks[:, :, 2::-1]
    patterns = np.kron(blocks, np.ones((4, 4))) * 200  # [10, 28, 28]
    arrays = {}
    for split, n in (("train", SYNTHETIC_TRAIN), ("test", SYNTHETIC_TEST)):
        labels = rng.permutation(np.arange(n) % len(data.CLASSES))
        brightness = rng.uniform(0.6, 1.0, (n, 1, 1))
        images = patterns[labels] * brightness + rng.normal(30, 25, (n, 28, 28))
        arrays[f"{split}_images"] = np.clip(images, 0, 255).astype(np.uint8)
        arrays[f"{split}_labels"] = labels.astype(np.uint8)
    return arrays


def write_synthetic(directory: Path) -> dict[str, tuple[str, str]]:
    """Write the synthetic dataset in the real file layout; return a FILES dict for it."""
    files = {}
    for kind, (stem, _) in data.FILES.items():
        digest = write_idx(directory / f"{stem}.gz", synthetic_arrays()[kind], kind.split("_")[1])
        files[kind] = (stem, digest)
    return files


# ---------------------------------------------------------------- labelled folders

# Folder names as people write them, and the class each stands for.
FOLDER_NAMES = {
    "t-shirt": 0,
    "Trousers": 1,
    "2": 2,
    "DRESS": 3,
    "coats": 4,
    "sandal": 5,
    "Shirt": 6,
    "sneakers": 7,
    "bag": 8,
    "Ankle_Boots": 9,
}


def labelled_folder(root: Path, per_class: int = 1, seed: int = 0) -> list[tuple[Path, int]]:
    """Photos rendered from validation images (the synthetic set's stratified split), saved into class
    folders, plus bad files: a truncated JPEG, a text file, a hidden file, a file beside the folders.
    Returns (path, label) of each good photo."""
    arrays = synthetic_arrays()
    labels = torch.from_numpy(arrays["train_labels"]).long()
    _, val = data.stratified_split(labels, 200, seed=0)
    rng = np.random.default_rng(seed)
    good = []
    for name, label in FOLDER_NAMES.items():
        folder = root / name
        folder.mkdir(parents=True)
        picks = val[labels[val] == label][:per_class]
        for i, index in enumerate(picks.tolist()):
            kind = photos.KINDS[(label + i) % len(photos.KINDS)]
            photo, suffix = photos.render(arrays["train_images"][index], kind, rng)
            path = folder / f"{kind}-{index}{suffix}"
            path.write_bytes(photo)
            good.append((path, label))
    truncated = good[0][0].read_bytes()
    (root / "bag" / "cut-short.jpg").write_bytes(truncated[: len(truncated) // 3])
    (root / "bag" / "notes.txt").write_text("shot on my phone\n")
    (root / "Shirt" / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (root / "README.txt").write_text("one folder per class\n")
    return good


# ---------------------------------------------------------------- runs


def interrupted_after_first_epoch(cfg, run_dir):
    def stop_after_first_epoch(msg):
        if msg.startswith("epoch   1/"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        training.fit(cfg, run_dir, data.load(), log=stop_after_first_epoch, progress=False)


def hparams_sessions(directory: Path) -> dict[str, tuple[dict, dict]]:
    """What TensorBoard's HParams view shows of `directory`: session name -> (hparams, metrics), read back
    from the event files with TensorBoard's own reader and the hparams plugin's protobufs."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    sessions = {}
    for session in sorted(p for p in Path(directory).iterdir() if p.is_dir()):
        events = EventAccumulator(str(session))
        events.Reload()
        start = events.PluginTagToContent("hparams")["_hparams_/session_start_info"]
        info = plugin_data_pb2.HParamsPluginData.FromString(start).session_start_info
        values = {k: v.WhichOneof("kind") and getattr(v, v.WhichOneof("kind")) for k, v in info.hparams.items()}
        metrics = {tag: events.Scalars(tag)[-1].value for tag in events.Tags()["scalars"]}
        sessions[session.name] = (values, metrics)
    return sessions
