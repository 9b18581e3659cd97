"""fmnist.data: parsing, verification, search order, download, splits and input scaling."""

from __future__ import annotations

import functools
import gzip
import http.server
import io
import shutil
import struct
import threading
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
from support import SYNTHETIC_TEST, SYNTHETIC_TRAIN, synthetic_arrays, write_idx

from fmnist import data
from fmnist.errors import FmnistError


def idx_bytes(magic: int, shape: tuple[int, ...], payload: bytes) -> bytes:
    return struct.pack(f">I{len(shape)}I", magic, *shape) + payload


def assert_one_line_naming(error: pytest.ExceptionInfo, name, *fragments: str) -> None:
    message = str(error.value)
    assert "\n" not in message
    assert str(name) in message
    for fragment in fragments:
        assert fragment in message


# --- parsing -------------------------------------------------------------------------

IMAGES = np.arange(2 * 28 * 28, dtype=np.uint8).tobytes()
GOOD_GZIP = gzip.compress(idx_bytes(0x803, (2, 28, 28), IMAGES))

MALFORMED = {
    "empty": (b"", "too short"),
    "wrong magic": (idx_bytes(0x00000903, (2, 28, 28), IMAGES), "magic number 0x00000903"),
    "float data": (idx_bytes(0x00000D03, (2, 28, 28), IMAGES), "unsigned bytes"),
    "2 dimensions": (idx_bytes(0x802, (56, 28), IMAGES), "2 dimensions"),
    "wrong image size": (idx_bytes(0x803, (2, 32, 32), bytes(2 * 32 * 32)), "32x32, expected 28x28"),
    "truncated header": (idx_bytes(0x803, (2,), b""), "truncated IDX header"),
    "truncated payload": (idx_bytes(0x803, (2, 28, 28), IMAGES[:-1]), "truncated"),
    "trailing bytes": (idx_bytes(0x803, (2, 28, 28), IMAGES + b"\0\0"), "2 bytes of trailing data"),
    "label out of range": (idx_bytes(0x801, (4,), bytes([0, 9, 12, 3])), "label 12 out of range 0-9"),
}


@pytest.mark.parametrize("case", MALFORMED)
def test_parse_idx_rejects(case):
    raw, fragment = MALFORMED[case]
    with pytest.raises(FmnistError) as error:
        data.parse_idx(raw, "some-file.gz")
    assert_one_line_naming(error, "some-file.gz", fragment)


@pytest.mark.parametrize("case", ["truncated payload", "label out of range"])
def test_read_idx_names_the_file(tmp_path, case):
    path = tmp_path / "train-labels-idx1-ubyte.gz"
    path.write_bytes(gzip.compress(MALFORMED[case][0]))
    with pytest.raises(FmnistError) as error:
        data.read_idx(path)
    assert_one_line_naming(error, path, MALFORMED[case][1])


@pytest.mark.parametrize(
    "damage, fragment",
    [(lambda gz: gz[:-20], "truncated gzip stream"), (lambda gz: gz[:-8] + b"\0" * 8, "corrupt gzip stream")],
    ids=["truncated", "bad crc"],
)
def test_read_idx_damaged_gzip(tmp_path, damage, fragment):
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(damage(GOOD_GZIP))
    with pytest.raises(FmnistError) as error:
        data.read_idx(path)
    assert_one_line_naming(error, path, fragment)


def test_read_idx_missing_file(tmp_path):
    path = tmp_path / "nothing.gz"
    with pytest.raises(FmnistError) as error:
        data.read_idx(path)
    assert_one_line_naming(error, path, "cannot read")


@pytest.mark.parametrize("suffix", [".gz", ""])
def test_read_idx_round_trip(tmp_path, suffix):
    images = np.random.default_rng(1).integers(0, 256, (5, 28, 28), dtype=np.uint8)
    digest = write_idx(tmp_path / f"x{suffix}", images, "images")
    array, got = data.read_idx(tmp_path / f"x{suffix}")
    assert got == digest
    assert array.dtype == np.uint8 and array.flags.c_contiguous and array.flags.writeable
    assert np.array_equal(array, images)


# --- load and verify -----------------------------------------------------------------


def test_load_synthetic(synthetic_data):
    dataset = data.load(allow_download=False)
    arrays = synthetic_arrays()
    assert (dataset.directory, dataset.origin) == (synthetic_data, "FMNIST_DATA_DIR")
    assert dataset.train_images.shape == (SYNTHETIC_TRAIN, 28, 28)
    assert dataset.test_images.shape == (SYNTHETIC_TEST, 28, 28)
    assert dataset.train_labels.dtype == dataset.test_labels.dtype == torch.int64
    for kind in data.FILES:
        assert np.array_equal(getattr(dataset, kind).numpy(), arrays[kind])


def test_load_uncompressed_and_prefers_gzip(synthetic_data):
    for stem, _ in data.FILES.values():
        gz = synthetic_data / f"{stem}.gz"
        (synthetic_data / stem).write_bytes(gzip.decompress(gz.read_bytes()))
        gz.unlink()
    plain = data.load(allow_download=False)
    assert np.array_equal(plain.train_images.numpy(), synthetic_arrays()["train_images"])

    # A damaged plain file next to a good .gz is never read.
    stem = data.FILES["train_labels"][0]
    write_idx(synthetic_data / f"{stem}.gz", synthetic_arrays()["train_labels"], "labels")
    (synthetic_data / stem).write_bytes(b"garbage")
    assert torch.equal(data.load(allow_download=False).train_labels, plain.train_labels)


def test_load_rejects_count_mismatch(synthetic_data, monkeypatch):
    stem = data.FILES["test_labels"][0]
    digest = write_idx(synthetic_data / f"{stem}.gz", synthetic_arrays()["test_labels"][:-1], "labels")
    monkeypatch.setitem(data.FILES, "test_labels", (stem, digest))
    with pytest.raises(FmnistError) as error:
        data.load(allow_download=False)
    images = synthetic_data / "t10k-images-idx3-ubyte.gz"
    fragments = f"{SYNTHETIC_TEST} images", f"{stem}.gz has {SYNTHETIC_TEST - 1} labels"
    assert_one_line_naming(error, images, *fragments)


def test_load_rejects_digest_mismatch(synthetic_data, monkeypatch):
    stem = data.FILES["train_labels"][0]
    monkeypatch.setitem(data.FILES, "train_labels", (stem, "0" * 64))
    with pytest.raises(FmnistError) as error:
        data.load(allow_download=False)
    assert_one_line_naming(error, synthetic_data / f"{stem}.gz", "SHA-256", "delete it", "fmnist data verify")


def test_verify_reports_each_file(synthetic_data):
    labels = synthetic_arrays()["test_labels"].copy()
    labels[0] = (labels[0] + 1) % 10  # still parses, but no longer matches the pinned digest
    write_idx(synthetic_data / "t10k-labels-idx1-ubyte.gz", labels, "labels")
    rows = data.verify()
    assert [Path(path).parent for path, _, _ in rows] == [synthetic_data] * 4
    assert [ok for _, ok, _ in rows] == [True, True, True, False]
    assert "SHA-256" in rows[3][2] and str(synthetic_data) not in rows[3][2]


def test_synthetic_data_is_learnable(synthetic_data):
    """The promise conftest makes to other test modules: a small MLP gets >90% quickly."""
    dataset = data.load(allow_download=False)
    torch.manual_seed(0)
    nn = torch.nn
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 32), nn.ReLU(), nn.Linear(32, 10))
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    x, y = data.as_input(dataset.train_images), dataset.train_labels
    for _ in range(2):
        for batch in torch.randperm(len(x)).split(50):
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(model(x[batch]), y[batch]).backward()
            optimizer.step()
    with torch.no_grad():
        accuracy = (model(data.as_input(dataset.test_images)).argmax(1) == dataset.test_labels).float().mean()
    assert accuracy > 0.9


# --- search order --------------------------------------------------------------------


def test_locate_search_order(synthetic_data, tmp_path, monkeypatch):
    explicit, system = tmp_path / "explicit", tmp_path / "system"
    for directory in (explicit, system, data.cache_dir()):
        shutil.copytree(synthetic_data, directory)
    monkeypatch.setattr(data, "SYSTEM_DIR", system)

    assert data.locate(explicit) == (explicit, "--data-dir")
    assert data.locate() == (synthetic_data, "FMNIST_DATA_DIR")
    monkeypatch.delenv("FMNIST_DATA_DIR")
    assert data.locate() == (data.cache_dir(), "cache")
    shutil.rmtree(data.cache_dir())
    assert data.locate() == (system, "system")
    shutil.rmtree(system)
    assert data.locate() is None
    with pytest.raises(FmnistError) as error:
        data.load(allow_download=False)
    assert_one_line_naming(error, data.cache_dir(), "apt-get install dataset-fashion-mnist", "--data-dir")


def test_cache_dir_follows_xdg(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert data.cache_dir() == tmp_path / "fmnist"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert data.cache_dir() == tmp_path / "home" / ".cache" / "fmnist"


@pytest.mark.parametrize("via", ["argument", "env"])
def test_explicit_directory_must_be_complete(synthetic_data, tmp_path, monkeypatch, via):
    shutil.copytree(synthetic_data, data.cache_dir())  # a complete fallback that must not be used
    (synthetic_data / "train-labels-idx1-ubyte.gz").unlink()
    if via == "argument":
        monkeypatch.delenv("FMNIST_DATA_DIR")
    with pytest.raises(FmnistError) as error:
        data.locate(synthetic_data if via == "argument" else None)
    origin = "--data-dir" if via == "argument" else "FMNIST_DATA_DIR"
    assert_one_line_naming(error, synthetic_data, origin, "missing train-labels-idx1-ubyte")
    assert "t10k" not in str(error.value)


def test_explicit_directory_must_exist(tmp_path):
    with pytest.raises(FmnistError) as error:
        data.locate(tmp_path / "nope")
    assert_one_line_naming(error, tmp_path / "nope", "no such directory")


# --- download ------------------------------------------------------------------------


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def serve():
    """serve(directory) -> base URL of an HTTP server on 127.0.0.1 for that directory."""
    servers = []

    def start(directory: Path) -> str:
        handler = functools.partial(QuietHandler, directory=str(directory))
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def corrupt_copy(source: Path, target: Path, stem: str) -> Path:
    """Copy the mirror at `source` to `target`, with `stem` valid IDX but the wrong content."""
    shutil.copytree(source, target)
    labels = synthetic_arrays()["train_labels"].copy()
    labels[:10] = (labels[:10] + 1) % 10
    write_idx(target / f"{stem}.gz", labels, "labels")
    return target


def test_download_then_load(synthetic_data, serve, tmp_path):
    dest = tmp_path / "dest"
    lines = []
    data.download(dest, [serve(synthetic_data)], timeout=5, progress=lines.append)
    assert sorted(p.name for p in dest.iterdir()) == sorted(f"{stem}.gz" for stem, _ in data.FILES.values())
    assert len(lines) == 4
    dataset = data.load(dest)
    assert np.array_equal(dataset.test_labels.numpy(), synthetic_arrays()["test_labels"])
    data.download(dest, mirrors=())  # all present and valid: nothing to fetch, so no mirror needed


@pytest.mark.parametrize("fault", ["corrupt", "missing"])
def test_download_falls_back_to_next_mirror(synthetic_data, serve, tmp_path, fault):
    stem = data.FILES["train_labels"][0]
    bad = corrupt_copy(synthetic_data, tmp_path / "bad", stem)
    if fault == "missing":
        (bad / f"{stem}.gz").unlink()
    bad_url = serve(bad)
    lines = []
    data.download(tmp_path / "dest", [bad_url, serve(synthetic_data)], timeout=5, progress=lines.append)
    assert any(line.startswith(f"failed: {bad_url}{stem}.gz") for line in lines)
    labels, _ = data.read_idx(tmp_path / "dest" / f"{stem}.gz")
    assert np.array_equal(labels, synthetic_arrays()["train_labels"])


def test_download_all_mirrors_bad_leaves_nothing(synthetic_data, serve, tmp_path):
    stem = data.FILES["train_labels"][0]
    mirrors = [serve(corrupt_copy(synthetic_data, tmp_path / f"bad{i}", stem)) for i in range(2)]
    dest = tmp_path / "dest"
    with pytest.raises(FmnistError) as error:
        data.download(dest, mirrors, timeout=5)
    assert_one_line_naming(error, f"{stem}.gz", *(f"{url}{stem}.gz: SHA-256" for url in mirrors))
    # Only the file fetched before the failing one remains: no temp file, nothing unverified.
    assert [p.name for p in dest.iterdir()] == ["train-images-idx3-ubyte.gz"]


def test_download_interrupted_leaves_nothing(synthetic_data, tmp_path, monkeypatch):
    class InterruptedResponse(io.BytesIO):
        def read(self, size=-1):
            if self.tell():
                raise KeyboardInterrupt
            return super().read(100)

    response = InterruptedResponse(gzip.compress(bytes(1000)))
    monkeypatch.setattr(urllib.request, "urlopen", lambda url, timeout: response)
    dest = tmp_path / "dest"
    with pytest.raises(KeyboardInterrupt):
        data.download(dest, ["http://127.0.0.1:9/"])
    assert list(dest.iterdir()) == []


def test_load_downloads_into_cache(synthetic_data, serve, tmp_path, monkeypatch):
    mirror = serve(synthetic_data)
    monkeypatch.delenv("FMNIST_DATA_DIR")
    monkeypatch.setattr(data, "SYSTEM_DIR", tmp_path / "empty")
    lines = []
    first = data.load(mirrors=[mirror], progress=lines.append)
    assert lines == [f"downloading {mirror}{stem}.gz" for stem, _ in data.FILES.values()]
    assert (first.directory, first.origin) == (data.cache_dir(), "download")
    second = data.load(mirrors=())
    assert second.origin == "cache" and torch.equal(second.train_images, first.train_images)


# --- splits and inputs ---------------------------------------------------------------


def uneven_labels(n: int = 997) -> torch.Tensor:
    weights = torch.arange(1, 11, dtype=torch.float)
    return torch.multinomial(weights, n, replacement=True, generator=torch.Generator().manual_seed(3))


@pytest.mark.parametrize("val_size", [1, 101, 500])
def test_stratified_split_partitions_proportionally(val_size):
    labels = uneven_labels()
    train, val = data.stratified_split(labels, val_size, seed=0)
    assert train.dtype == val.dtype == torch.int64
    assert len(val) == val_size
    assert torch.equal(torch.cat([train, val]).sort().values, torch.arange(len(labels)))
    exact = torch.bincount(labels, minlength=10) * val_size / len(labels)
    got = torch.tensor(data.class_counts(labels[val]), dtype=torch.float)
    assert ((got - exact).abs() < 1).all()


def test_stratified_split_largest_remainder():
    labels = torch.tensor([0] * 5 + [1] * 3 + [2] * 2)  # val 4 -> exact shares 2.0, 1.2, 0.8
    _, val = data.stratified_split(labels, 4, seed=0)
    assert data.class_counts(labels[val])[:3] == [2, 1, 1]


def test_stratified_split_seeded():
    labels = uneven_labels()
    first, again, other = (data.stratified_split(labels, 100, seed)[1] for seed in (0, 0, 1))
    assert torch.equal(first, again)
    assert not torch.equal(first, other)


def test_stratified_split_edges():
    labels = uneven_labels(50)
    train, val = data.stratified_split(labels, 0, seed=0)
    assert torch.equal(train, torch.arange(50)) and len(val) == 0 and val.dtype == torch.int64
    for bad in (-1, 50):
        with pytest.raises(FmnistError, match="validation size"):
            data.stratified_split(labels, bad, seed=0)


def test_training_indices_are_the_split_less_validation_then_the_subset():
    # The images a run trains on: the detector's coarse cue is fitted on them by calibrate and an int8 export.
    from fmnist.config import Config

    labels = uneven_labels()
    _, val = data.validation_split(labels, Config(val_size=100))
    every = data.training_indices(labels, Config(val_size=100))
    assert torch.equal(torch.cat([every, val]).sort().values, torch.arange(len(labels)))
    subset = data.training_indices(labels, Config(val_size=100, train_subset=300))
    assert len(subset) == 300 and bool(torch.isin(subset, every).all())
    assert torch.equal(subset, data.training_indices(labels, Config(val_size=100, train_subset=300)))
    with pytest.raises(FmnistError, match="train_subset 897 must be below the 897"):
        data.training_indices(labels, Config(val_size=100, train_subset=897))


def test_class_counts():
    labels = uneven_labels()
    assert data.class_counts(labels) == [int((labels == c).sum()) for c in range(10)]


@pytest.mark.parametrize("shape", [(3, 28, 28), (3, 1, 28, 28)])
def test_as_input(shape):
    images = torch.randint(0, 256, shape, dtype=torch.uint8)
    images.view(-1)[:2] = torch.tensor([0, 255], dtype=torch.uint8)
    x = data.as_input(images)
    assert x.shape == (3, 1, 28, 28) and x.dtype == torch.float32 and x.device == images.device
    assert x.min() == 0 and x.max() == 1
    assert torch.allclose(x * 255, images.reshape(3, 1, 28, 28).float())
    with pytest.raises(TypeError):
        data.as_input(x)


# --- the real files ------------------------------------------------------------------


@pytest.mark.real_data
def test_real_data(real_data_dir):
    dataset = data.load(real_data_dir, allow_download=False)
    assert dataset.train_images.shape == (60000, 28, 28) and dataset.test_images.shape == (10000, 28, 28)
    assert dataset.train_images.dtype == dataset.test_images.dtype == torch.uint8
    assert dataset.train_labels.dtype == dataset.test_labels.dtype == torch.int64
    assert data.class_counts(dataset.train_labels) == [6000] * 10
    assert data.class_counts(dataset.test_labels) == [1000] * 10
