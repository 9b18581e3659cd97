"""Find, download, verify and parse the Fashion-MNIST IDX files into in-memory arrays: numpy (`load_arrays`, which
`fmnist data info` and `verify` need, without torch's seconds of import) or torch tensors (`load`)."""

from __future__ import annotations

import gzip
import hashlib
import http.client
import math
import os
import shutil
import struct
import urllib.request
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from fmnist.atomic import atomic_path
from fmnist.errors import FmnistError

if TYPE_CHECKING:  # torch is imported where tensors are made, so that the names above cost nothing
    import torch

CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)

# kind -> (file name without .gz, SHA-256 of the decompressed bytes). Hashing the
# decompressed bytes lets any gzip wrapper (Debian recompresses them) pass.
FILES = {
    "train_images": ("train-images-idx3-ubyte", "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888"),
    "train_labels": ("train-labels-idx1-ubyte", "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9"),
    "test_images": ("t10k-images-idx3-ubyte", "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b"),
    "test_labels": ("t10k-labels-idx1-ubyte", "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34"),
}

# The dataset authors' S3 bucket. Its website endpoint speaks plain HTTP only, so the
# TLS-capable REST endpoint of the same bucket comes first; the digests guard both.
MIRRORS = (
    "https://fashion-mnist.s3.eu-central-1.amazonaws.com/",
    "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
)

SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")

SIDE = 28  # image height and width in pixels
_NDIM_BY_MAGIC = {0x00000801: 1, 0x00000803: 3}  # IDX of unsigned bytes: labels, images
_GZIP_MAGIC = b"\x1f\x8b"
_CHUNK = 1 << 20  # download buffer, bytes


# Arrays make the generated __eq__ ambiguous, so compare by identity.
@dataclass(frozen=True, eq=False)
class Arrays:
    """The dataset as numpy arrays, as `FashionMNIST` holds it as tensors."""

    train_images: np.ndarray  # uint8 [60000, 28, 28]
    train_labels: np.ndarray  # int64 [60000]
    test_images: np.ndarray  # uint8 [10000, 28, 28]
    test_labels: np.ndarray  # int64 [10000]
    directory: Path  # where the files were read from
    origin: str  # "--data-dir", "FMNIST_DATA_DIR", "cache", "system" or "download"


@dataclass(frozen=True, eq=False)
class FashionMNIST:
    train_images: torch.Tensor  # uint8 [60000, 28, 28]
    train_labels: torch.Tensor  # int64 [60000]
    test_images: torch.Tensor  # uint8 [10000, 28, 28]
    test_labels: torch.Tensor  # int64 [10000]
    directory: Path  # where the files were read from
    origin: str  # "--data-dir", "FMNIST_DATA_DIR", "cache", "system" or "download"


def cache_dir() -> Path:
    """$XDG_CACHE_HOME/fmnist, else ~/.cache/fmnist."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "fmnist"


def parse_idx(raw: bytes, name: str) -> torch.Tensor:
    """Validate decompressed IDX bytes and return them as uint8: images [N,28,28], labels [N]."""
    import torch

    return torch.from_numpy(parse_idx_array(raw, name))


def parse_idx_array(raw: bytes, name: str) -> np.ndarray:
    """`parse_idx` as a numpy array."""
    if len(raw) < 4:
        raise FmnistError(f"{name}: {len(raw)} bytes is too short to be an IDX file")
    (magic,) = struct.unpack(">I", raw[:4])
    if magic >> 8 != 0x08:
        raise FmnistError(f"{name}: not an IDX file of unsigned bytes (magic number 0x{magic:08x})")
    ndim = _NDIM_BY_MAGIC.get(magic)
    if ndim is None:
        raise FmnistError(f"{name}: IDX file has {magic & 0xFF} dimensions, expected 3 (images) or 1 (labels)")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise FmnistError(f"{name}: truncated IDX header")
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    if ndim == 3 and shape[1:] != (SIDE, SIDE):
        raise FmnistError(f"{name}: images are {shape[1]}x{shape[2]}, expected {SIDE}x{SIDE}")
    expected, actual = math.prod(shape), len(raw) - header
    if actual < expected:
        raise FmnistError(f"{name}: truncated: the header promises {expected} bytes of data, only {actual} follow")
    if actual > expected:
        raise FmnistError(
            f"{name}: {actual - expected} bytes of trailing data after the {expected} the header promises"
        )
    # bytearray: a writable buffer, so that torch.from_numpy shares it; this is the one copy we make.
    array = np.frombuffer(bytearray(raw), dtype=np.uint8, offset=header).reshape(shape)
    if ndim == 1:
        _check_labels(array, name)
    return array


def _check_labels(labels: np.ndarray, name: str) -> None:
    bad = np.flatnonzero(labels >= len(CLASSES))
    if len(bad):
        i = int(bad[0])
        raise FmnistError(f"{name}: label {int(labels[i])} out of range 0-{len(CLASSES) - 1} (item {i})")


def read_idx(path: Path) -> tuple[np.ndarray, str]:
    """Read a gzipped or plain IDX file; return (uint8 array, SHA-256 hex of the decompressed bytes)."""
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise FmnistError(f"{path}: cannot read it ({e.strerror})") from e
    return _decode(data, str(path))


def _decode(data: bytes, name: str) -> tuple[np.ndarray, str]:
    # Sniff rather than trust the suffix: download() checks a .tmp file before naming it .gz.
    raw = _gunzip(data, name) if data[:2] == _GZIP_MAGIC else data
    return parse_idx_array(raw, name), hashlib.sha256(raw).hexdigest()


def _gunzip(data: bytes, name: str) -> bytes:
    try:
        return gzip.decompress(data)
    except EOFError as e:
        raise FmnistError(f"{name}: truncated gzip stream") from e
    except (gzip.BadGzipFile, zlib.error) as e:
        raise FmnistError(f"{name}: corrupt gzip stream ({e})") from e


def _mismatch(digest: str, kind: str) -> str | None:
    """Describe how `digest` differs from the published one for `kind`; None if it matches."""
    expected = FILES[kind][1]
    if digest == expected:
        return None
    return f"SHA-256 {digest[:12]}... differs from the published {expected[:12]}..."


def _read_verified(path: Path, kind: str) -> np.ndarray:
    tensor, digest = read_idx(path)
    problem = _mismatch(digest, kind)
    if problem:
        raise FmnistError(
            f"{path}: {problem}; the file is damaged or not Fashion-MNIST: delete it"
            " (it is then downloaded again) and check the rest with `fmnist data verify`"
        )
    return tensor


def _find_file(directory: Path, stem: str) -> Path | None:
    """`<stem>.gz` if present, else `<stem>`, else None."""
    for path in (directory / f"{stem}.gz", directory / stem):
        if path.is_file():
            return path
    return None


def _existing_file(directory: Path, stem: str) -> Path:
    """_find_file for a directory that locate() accepted; a file removed since is a clear error."""
    path = _find_file(directory, stem)
    if path is None:
        raise FmnistError(f"{directory}: {stem} (.gz or plain) has gone missing")
    return path


def _missing(directory: Path) -> list[str]:
    return [stem for stem, _ in FILES.values() if _find_file(directory, stem) is None]


def locate(data_dir: str | Path | None = None) -> tuple[Path, str] | None:
    """Return (directory, origin) of the first place holding all four files, or None.

    Order: `data_dir`, $FMNIST_DATA_DIR, cache_dir(), SYSTEM_DIR. A directory the user named
    explicitly must be complete: falling back past it would hide their mistake.
    """
    candidates = (
        (data_dir, "--data-dir", True),
        (os.environ.get("FMNIST_DATA_DIR"), "FMNIST_DATA_DIR", True),
        (cache_dir(), "cache", False),
        (SYSTEM_DIR, "system", False),
    )
    for directory, origin, explicit in candidates:
        if not directory:
            continue
        directory = Path(directory).expanduser()
        missing = _missing(directory)
        if not missing:
            return directory, origin
        if explicit:
            if directory.is_dir():
                problem = f"missing {', '.join(missing)} (.gz or plain)"
            else:
                problem = "no such directory"
            raise FmnistError(
                f"{directory} (from {origin}): {problem};"
                f" point {origin} at a directory with all four Fashion-MNIST files"
            )
    return None


def download(
    dest: Path,
    mirrors: Sequence[str] = MIRRORS,
    timeout: float = 60,
    progress: Callable[[str], None] | None = None,
) -> None:
    """Fetch the four `.gz` files into `dest`, skipping those already present and valid.

    Each file is tried on each mirror in turn and lands in `dest` only once its decompressed
    digest matches and it parses; `progress` receives one line per attempt and per failure.
    """
    report = progress or (lambda line: None)
    dest = Path(dest)
    for kind, (stem, _) in FILES.items():
        existing = _find_file(dest, stem)
        if existing and _is_valid(existing, kind):
            continue
        failures = []
        for base in mirrors:
            url = base.rstrip("/") + f"/{stem}.gz"
            report(f"downloading {url}")
            try:
                with atomic_path(dest / f"{stem}.gz") as tmp:
                    _fetch(url, tmp, timeout)
                    _check_download(tmp, kind, url)
                break
            except FmnistError as e:
                failures.append(str(e))
            except (OSError, http.client.HTTPException, ValueError) as e:
                failures.append(f"{url}: {e}")
            report(f"failed: {failures[-1]}")
        else:
            tried = "; ".join(failures) or "no mirrors given"
            raise FmnistError(f"could not download {stem}.gz from any mirror: {tried}")


def _is_valid(path: Path, kind: str) -> bool:
    try:
        _read_verified(path, kind)
    except FmnistError:
        return False
    return True


def _fetch(url: str, path: Path, timeout: float) -> None:
    with urllib.request.urlopen(url, timeout=timeout) as response, open(path, "wb") as f:
        shutil.copyfileobj(response, f, _CHUNK)


def _check_download(path: Path, kind: str, url: str) -> None:
    _, digest = _decode(path.read_bytes(), url)
    problem = _mismatch(digest, kind)
    if problem:
        raise FmnistError(f"{url}: {problem}")


def load(
    data_dir: str | Path | None = None,
    *,
    allow_download: bool = True,
    mirrors: Sequence[str] = MIRRORS,
    progress: Callable[[str], None] | None = None,
) -> FashionMNIST:
    """Locate (or download into the cache), read and verify the dataset, as torch tensors (`load_arrays`)."""
    import torch

    arrays = load_arrays(data_dir, allow_download=allow_download, mirrors=mirrors, progress=progress)
    return FashionMNIST(
        train_images=torch.from_numpy(arrays.train_images),
        train_labels=torch.from_numpy(arrays.train_labels),
        test_images=torch.from_numpy(arrays.test_images),
        test_labels=torch.from_numpy(arrays.test_labels),
        directory=arrays.directory,
        origin=arrays.origin,
    )


def load_arrays(
    data_dir: str | Path | None = None,
    *,
    allow_download: bool = True,
    mirrors: Sequence[str] = MIRRORS,
    progress: Callable[[str], None] | None = None,
) -> Arrays:
    """Locate (or download into the cache), read and verify the dataset, as numpy arrays.

    `progress` receives the download's progress lines, as in download().
    """
    found = locate(data_dir)
    if found is None:
        if not allow_download:
            raise FmnistError(_not_found_message())
        found = cache_dir(), "download"
        download(found[0], mirrors, progress=progress)
    directory, origin = found
    paths = {kind: _existing_file(directory, stem) for kind, (stem, _) in FILES.items()}
    tensors = {kind: _read_verified(path, kind) for kind, path in paths.items()}
    for split in ("train", "test"):
        images, labels = paths[f"{split}_images"], paths[f"{split}_labels"]
        n_images, n_labels = len(tensors[f"{split}_images"]), len(tensors[f"{split}_labels"])
        if n_images != n_labels:
            raise FmnistError(f"{images}: {n_images} images but {labels.name} has {n_labels} labels")
    return Arrays(
        train_images=tensors["train_images"],
        train_labels=tensors["train_labels"].astype(np.int64),
        test_images=tensors["test_images"],
        test_labels=tensors["test_labels"].astype(np.int64),
        directory=directory,
        origin=origin,
    )


def _not_found_message() -> str:
    return (
        f"Fashion-MNIST not found in {cache_dir()} or {SYSTEM_DIR} (FMNIST_DATA_DIR is not set);"
        " install it with `apt-get install dataset-fashion-mnist`, pass --data-dir DIR, or allow downloading"
    )


def verify(data_dir: str | Path | None = None) -> list[tuple[str, bool, str]]:
    """Check each file of the located dataset: [(path, ok, message)] in FILES order."""
    found = locate(data_dir)
    if found is None:
        raise FmnistError(_not_found_message())
    results = []
    for kind, (stem, _) in FILES.items():
        path = _existing_file(found[0], stem)
        try:
            tensor = _read_verified(path, kind)
        except FmnistError as e:
            # The path is its own column, so drop it from the front of the message.
            results.append((str(path), False, str(e).removeprefix(f"{path}: ")))
        else:
            results.append((str(path), True, f"ok: {len(tensor)} items, SHA-256 matches"))
    return results


class HoldsOut(Protocol):
    """What decides a run's validation split: a config.Config, or anything with its three fields."""

    @property
    def val_size(self) -> int: ...

    @property
    def seed(self) -> int: ...

    @property
    def split_seed(self) -> int: ...


def split_seed(cfg: HoldsOut) -> int:
    """The seed of a run's validation split, of its training subset and of its detector's reference photos:
    cfg.split_seed, or cfg.seed where that is -1 (a run trained from scratch). A fine-tune keeps its parent's
    (config.Config.split_seed), so that a parent and its fine-tunes hold out the same images."""
    return cfg.seed if cfg.split_seed < 0 else cfg.split_seed


def validation_split(labels: torch.Tensor, cfg: HoldsOut) -> tuple[torch.Tensor, torch.Tensor]:
    """(train_idx, val_idx) of the training images for a run of `cfg`: cfg.val_size of them, class-stratified,
    drawn with split_seed(cfg) (stratified_split), held out from training. The one rule for which images a model
    never trained on: training (train.split_data), `fmnist calibrate`, an int8 export's refit and the
    benchmarks call it, so they all pick the same images."""
    return stratified_split(labels, cfg.val_size, split_seed(cfg))


class TrainsOn(HoldsOut, Protocol):
    """What decides the images a run trains on: its validation split and its training subset."""

    @property
    def train_subset(self) -> int: ...


def training_indices(labels: torch.Tensor, cfg: TrainsOn) -> torch.Tensor:
    """Sorted int64 indices of the training images a run of `cfg` trains on: those validation_split leaves, or
    the class-stratified subset of cfg.train_subset of them (drawn with split_seed(cfg) + 1). The one rule for which
    images a model trained on: training (train.split_data) and the detector's fit (`fmnist calibrate`, an int8
    export's refit, `fmnist adapt`) call it, most through trained_on. Raises FmnistError when the subset is not
    smaller than the images left."""
    train_idx, _ = validation_split(labels, cfg)
    if not cfg.train_subset:
        return train_idx
    if cfg.train_subset >= len(train_idx):
        raise FmnistError(
            f"train_subset {cfg.train_subset} must be below the {len(train_idx)} training images that "
            f"--val-size {cfg.val_size} leaves"
        )
    _, keep = stratified_split(labels[train_idx], cfg.train_subset, split_seed(cfg) + 1)
    return train_idx[keep]


def trained_on(dataset: FashionMNIST, cfg: TrainsOn) -> tuple[torch.Tensor, torch.Tensor]:
    """The training images uint8 [N, 28, 28] and labels [N] a run of `cfg` trains on (training_indices)."""
    train_idx = training_indices(dataset.train_labels, cfg)
    return dataset.train_images[train_idx], dataset.train_labels[train_idx]


def stratified_split(labels: torch.Tensor, val_size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Split indices into (train_idx, val_idx), both sorted int64 on the CPU.

    Each class gets its share of `val_size` in proportion to its size (largest remainder,
    ties to the lower class); which of its members go is drawn with `seed`.
    """
    import torch

    labels = labels.flatten().long().cpu()
    n = len(labels)
    if not 0 <= val_size < n:
        raise FmnistError(
            f"validation size {val_size} must be between 0 and {n - 1} (there are {n} training images): "
            "lower val_size (--val-size), or 0 to train on every image"
        )
    counts = torch.bincount(labels, minlength=len(CLASSES))
    quota, remainder = torch.div(counts * val_size, n, rounding_mode="floor"), (counts * val_size) % n
    short = val_size - int(quota.sum())
    quota[torch.argsort(remainder, descending=True, stable=True)[:short]] += 1

    # Shuffle, then stable-sort by class: each class becomes a contiguous run in random
    # order, and the first `quota` of each run go to validation.
    generator = torch.Generator().manual_seed(seed)
    shuffled = torch.randperm(n, generator=generator)
    grouped = shuffled[torch.argsort(labels[shuffled], stable=True)]
    classes = labels[grouped]
    rank = torch.arange(n) - (torch.cumsum(counts, 0) - counts)[classes]
    is_val = rank < quota[classes]
    return grouped[~is_val].sort().values, grouped[is_val].sort().values


def class_counts(labels: torch.Tensor | np.ndarray) -> list[int]:
    """Number of examples of each class, in CLASSES order, for labels [N] (a numpy array or a tensor)."""
    if not isinstance(labels, np.ndarray):
        labels = labels.cpu().numpy()
    return np.bincount(labels.reshape(-1).astype(np.int64), minlength=len(CLASSES)).tolist()


def as_input(images: torch.Tensor) -> torch.Tensor:
    """uint8 [B,28,28] or [B,1,28,28] -> float32 [B,1,28,28] in [0, 1], on the same device."""
    import torch

    if images.dtype != torch.uint8:
        # A float batch has most likely been scaled already; scaling twice fails silently.
        raise TypeError(f"as_input expects uint8 images, got {images.dtype}")
    return images.reshape(len(images), 1, SIDE, SIDE).float() / 255
