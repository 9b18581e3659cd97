"""The detector's reference photos, framed, kept on disk so that a fit renders them only once.

Rendering 400 reference photos (trust.references) and framing them (images.py) is most of a fit's time with an
empty cache, even framed by worker processes (docs/TRUST.md: 4.4-4.7 s against 0.8-0.9 s). What they give, the
28x28 views and the framing cues, depends on the validation images, the seed, the number of photos and
the code that renders and frames them (SOURCES), never on the model: so they are stored under the user's cache
directory ($XDG_CACHE_HOME/fmnist/trust-references/) in a file named by the SHA-256 of all of those, and
the next fit on the same split reads them back in milliseconds. A changed renderer, framing, Pillow or
NumPy gives a new name, so a stale file is never read; an unreadable one is rendered again.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import signal
import sys
import zipfile
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import PIL

from fmnist import images, segmentation, shading, shadows
from fmnist.atomic import atomic_path
from fmnist.data import cache_dir
from fmnist.errors import FmnistError
from fmnist.images import Cues, Framed, load_picture
from fmnist.trust import references

if TYPE_CHECKING:
    import torch

FOLDER = "trust-references"
MAX_WORKERS = 8  # processes that frame the references at most: 400 photos are 50 a worker
# The modules whose code renders and frames the references: a change to any of them gives a new file name.
SOURCES = (references, images, segmentation, shading, shadows)


def reference_photos(val_x: torch.Tensor, photos: int, seed: int) -> list[Framed]:
    """`photos` garment photos rendered from validation images uint8 [N, 28, 28] (trust.references) and
    framed (images.load_picture): read from the cache when they were made before, else made and stored."""
    with framing(val_x, photos, seed) as framed:
        return framed()


@contextmanager
def framing(val_x: torch.Tensor, photos: int, seed: int) -> Iterator[Callable[[], list[Framed]]]:
    """`reference_photos`, made while the caller's block runs: the photos are rendered on entry (the renderer
    draws from one generator, in turn) and framed by worker processes meanwhile (`_workers`); the function
    yielded, called within the block, waits for them and stores them (read from the cache, they are there at
    once). Raises FmnistError when a worker process dies (killed for memory, say), as a worker's own error."""
    count = min(photos, len(val_x))
    path = cache_dir() / FOLDER / f"{key(val_x, count, seed)}.npz"
    cached = _read(path, count)
    if cached is not None:
        yield lambda: cached
        return
    done: list[Framed] = []
    with _workers() as pool:
        rendered = references.reference_renders(val_x, count, seed)
        if pool is None:
            done.extend(_framed(photo.data, photo.index) for photo in rendered)
            _write(path, done)
            yield lambda: done
            return
        jobs = [pool.submit(_framed, photo.data, photo.index) for photo in rendered]

        def framed() -> list[Framed]:
            if not done:
                done.extend(job.result() for job in jobs)
                _write(path, done)
            return done

        yield framed


def _framed(data: bytes, index: int) -> Framed:
    return load_picture(data, f"reference {index}")


@contextmanager
def _workers() -> Iterator[ProcessPoolExecutor | None]:
    """As many processes as torch computes on (at most MAX_WORKERS), forked from this one as PyTorch's DataLoader
    forks its workers on Linux (they inherit the modules already imported, where a spawned one would import torch
    again, for seconds), or None for fewer than 2 or off Linux. They ignore Ctrl-C and die at SIGTERM; on the
    way out of the block, what they have not begun is cancelled."""
    import torch

    workers = min(torch.get_num_threads(), MAX_WORKERS)
    if workers < 2 or sys.platform != "linux":
        yield None
        return
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"), initializer=_worker_signals)
    try:
        yield pool
    except BrokenProcessPool as exc:
        raise FmnistError(f"framing the detector's reference photos: a worker process died ({exc})") from None
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _worker_signals() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.SIG_DFL)


def key(val_x: torch.Tensor, count: int, seed: int) -> str:
    """SHA-256 (hex) of what the framed references depend on: the images' bytes, count, seed, the references'
    size, margins and share turned, the source of the renderer and of the framing (SOURCES), and the Pillow and
    NumPy versions."""
    digest = hashlib.sha256()
    digest.update(np.ascontiguousarray(np.asarray(val_x)).tobytes())
    style = (references.REFERENCE_SIDE, references.REFERENCE_MARGINS, references.REFERENCE_TURNED)
    digest.update(repr((tuple(val_x.shape), count, seed, style)).encode())
    for module in SOURCES:
        digest.update(Path(str(module.__file__)).read_bytes())
    digest.update(f"{PIL.__version__} {np.__version__}".encode())
    return digest.hexdigest()


def _read(path: Path, count: int) -> list[Framed] | None:
    """The framed references stored at `path`, or None when there is no such file or it is not one."""
    try:
        with np.load(path) as stored:
            views, cues = stored["views"], stored["cues"]
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile):
        return None
    if views.shape != (count, 28, 28) or views.dtype != np.uint8 or cues.shape != (count, len(Cues.NAMES) + 1):
        return None
    return [
        Framed(view.copy(), None if np.isnan(row).any() else _cues(row)) for view, row in zip(views, cues, strict=True)
    ]


def _cues(row: np.ndarray) -> Cues:
    """Cues from a stored row: the values of Cues.NAMES, then whether the surface was textured (1.0 or 0.0)."""
    values = dict(zip(Cues.NAMES, map(float, row[:-1]), strict=True))
    return Cues(**values, textured=bool(row[-1]))


def _write(path: Path, framed: list[Framed]) -> None:
    """Store the framed references at `path` atomically; a cache that cannot be written is only skipped."""
    views = np.stack([f.pixels for f in framed])
    missing = (np.nan,) * (len(Cues.NAMES) + 1)
    cues = np.array([(*f.cues.values(), f.cues.textured) if f.cues else missing for f in framed], dtype=np.float64)
    try:
        with atomic_path(path) as tmp, open(tmp, "wb") as out:
            np.savez(out, views=views, cues=cues)
    except OSError:
        return
