"""Shared test helpers: IDX writing, a small learnable synthetic dataset, the real data.

Other test modules may `from conftest import write_idx` (tests/ has no __init__.py, so
pytest puts it on sys.path).
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import struct
from pathlib import Path

import numpy as np
import pytest

from fmnist import data
from fmnist.errors import FmnistError

SYNTHETIC_TRAIN, SYNTHETIC_TEST = 1000, 300


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
    bright 4x4 blocks, plus noise and brightness jitter, so a small MLP learns it quickly."""
    rng = np.random.default_rng(0)
    blocks = rng.random((len(data.CLASSES), 7, 7)) < 0.4
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


@pytest.fixture
def synthetic_data(tmp_path, monkeypatch) -> Path:
    """Directory of the synthetic dataset; data.FILES pins its digests, FMNIST_DATA_DIR points
    at it and the cache lives under tmp_path."""
    directory = tmp_path / "synthetic"
    monkeypatch.setattr(data, "FILES", write_synthetic(directory))
    monkeypatch.setenv("FMNIST_DATA_DIR", str(directory))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return directory


@pytest.fixture
def real_data_dir() -> Path:
    """Directory of the real Fashion-MNIST files; skips the test when there is none."""
    try:
        found = data.locate()
    except FmnistError as e:
        pytest.skip(f"real Fashion-MNIST unavailable: {e}")
    if found is None:
        pytest.skip("real Fashion-MNIST not found (apt-get install dataset-fashion-mnist)")
    return found[0]


@pytest.fixture(autouse=True)
def steady_threads(monkeypatch):
    """fit()'s default threads = "auto" leaves an OMP_NUM_THREADS in the environment as it is: without
    this, each fit would pick its thread count from the machine's load of the moment, and two runs
    meant to be identical could differ in the last bits of a reduction."""
    import torch

    monkeypatch.setenv("OMP_NUM_THREADS", str(torch.get_num_threads()))


@pytest.fixture
def one_thread():
    """Tiny models: one torch thread is several times faster than two fighting a busy CPU."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
