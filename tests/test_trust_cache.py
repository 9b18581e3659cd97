import contextlib
import os
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from support import synthetic_arrays

from fmnist import images, segmentation
from fmnist.errors import FmnistError
from fmnist.trust import cache, references


@pytest.fixture
def val_x() -> torch.Tensor:
    return torch.from_numpy(synthetic_arrays()["train_images"][:20])


@pytest.fixture
def folder(tmp_path, monkeypatch):
    monkeypatch.setattr(cache, "cache_dir", lambda: tmp_path)
    return tmp_path / cache.FOLDER


def test_reference_photos_are_rendered_once_then_read_back_as_they_were(val_x, folder, monkeypatch):
    first = cache.reference_photos(val_x, 4, seed=0)
    assert len(list(folder.iterdir())) == 1

    def no_render(*args, **kwargs):
        raise AssertionError("rendered again")

    monkeypatch.setattr(references, "render_set", no_render)
    again = cache.reference_photos(val_x, 4, seed=0)
    assert [torch.equal(a.image, b.image) for a, b in zip(first, again, strict=True)] == [True] * 4
    assert [a.cues for a in first] == [b.cues for b in again]


def test_the_references_are_rendered_at_reference_size_margins_and_turn(val_x, folder):
    framed = cache.reference_photos(val_x, 8, seed=0)
    rendered = references.rendered(
        val_x, 8, 0, references.REFERENCE_SIDE, margins=references.REFERENCE_MARGINS, turned=references.REFERENCE_TURNED
    )
    expected = [images.load_picture(photo.data) for photo in rendered]
    assert all(torch.equal(a.image, b.image) for a, b in zip(framed, expected, strict=True))
    upright = [images.load_picture(p.data) for p in references.rendered(val_x, 8, 0, references.REFERENCE_SIDE)]
    assert not all(torch.equal(a.image, b.image) for a, b in zip(framed, upright, strict=True))


def test_a_stored_picture_keeps_whether_its_surface_was_textured(tmp_path):
    # The detector judges a reference photo on a textured surface by its object alone: the flag must survive the file.
    pixels = np.zeros((28, 28), np.uint8)
    framed = [
        images.Framed(pixels, images.Cues(0.4, 0.5, 0.2, 0.6, 1.0, textured=True)),
        images.Framed(pixels, images.Cues(1.0, 0.1, 0.3, 0.7, 0.9)),
        images.Framed(pixels, None),
    ]
    cache._write(tmp_path / "refs.npz", framed)
    again = cache._read(tmp_path / "refs.npz", 3)
    assert again is not None and [f.cues for f in again] == [f.cues for f in framed]


def test_a_file_stored_without_the_textured_flag_is_not_read(tmp_path):
    views, cues = np.zeros((2, 28, 28), np.uint8), np.ones((2, len(images.Cues.NAMES)))
    np.savez(tmp_path / "old.npz", views=views, cues=cues)
    assert cache._read(tmp_path / "old.npz", 2) is None


def test_worker_processes_frame_the_references_as_this_process_does(val_x, folder, monkeypatch):
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    by_workers = cache.reference_photos(val_x, 8, seed=0)
    for path in folder.iterdir():
        path.unlink()

    @contextlib.contextmanager
    def no_workers():
        yield None

    monkeypatch.setattr(cache, "_workers", no_workers)
    here = cache.reference_photos(val_x, 8, seed=0)
    assert [np.array_equal(a.pixels, b.pixels) for a, b in zip(by_workers, here, strict=True)] == [True] * 8
    assert [a.cues for a in by_workers] == [b.cues for b in here]


@pytest.mark.skipif(sys.platform != "linux", reason="workers are forked on Linux only")
def test_framing_meanwhile_yields_what_reference_photos_gives_and_stores_it_once(val_x, folder, monkeypatch):
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    with cache.framing(val_x, 6, seed=3) as framed:
        assert not list(folder.glob("*.npz"))  # stored when waited for, not before
        first = framed()
        assert framed() is first
    assert len(list(folder.iterdir())) == 1
    again = cache.reference_photos(val_x, 6, seed=3)
    assert all(np.array_equal(a.pixels, b.pixels) for a, b in zip(first, again, strict=True))


@pytest.mark.skipif(sys.platform != "linux", reason="workers are forked on Linux only")
def test_a_worker_that_dies_is_one_error_not_a_hang_and_nothing_is_stored(val_x, folder, monkeypatch):
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    monkeypatch.setattr(cache, "load_picture", lambda *args: os._exit(3))  # as a worker killed for memory dies
    with pytest.raises(FmnistError, match="a worker process died"):
        cache.reference_photos(val_x, 6, seed=0)
    assert not list(folder.glob("*.npz"))


def test_other_images_seed_or_count_are_other_files(val_x, folder):
    cache.reference_photos(val_x, 4, seed=0)
    cache.reference_photos(val_x, 4, seed=1)
    cache.reference_photos(val_x, 3, seed=0)
    other = val_x.clone()
    other[0, 0, 0] ^= 1
    cache.reference_photos(other, 4, seed=0)
    assert len(list(folder.iterdir())) == 4


@pytest.mark.parametrize(
    ("name", "value"), [("REFERENCE_SIDE", (64, 96)), ("REFERENCE_MARGINS", (0.2, 1.5)), ("REFERENCE_TURNED", 0.0)]
)
def test_another_style_of_references_is_another_file(val_x, name, value, monkeypatch):
    before = cache.key(val_x, 4, 0)
    monkeypatch.setattr(references, name, value)
    assert cache.key(val_x, 4, 0) != before


@pytest.mark.parametrize("damage", [b"", b"not a zip file", b"PK\x03\x04 torn"])
def test_an_unreadable_cache_file_is_rendered_again_and_replaced(val_x, folder, damage):
    first = cache.reference_photos(val_x, 4, seed=0)
    [path] = folder.iterdir()
    path.write_bytes(damage)
    again = cache.reference_photos(val_x, 4, seed=0)
    assert all(torch.equal(a.image, b.image) for a, b in zip(first, again, strict=True))
    with np.load(path) as stored:
        assert stored["views"].shape == (4, 28, 28)


def test_a_cache_folder_that_cannot_be_written_only_costs_the_render(val_x, tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setattr(cache, "cache_dir", lambda: blocker)
    assert len(cache.reference_photos(val_x, 4, seed=0)) == 4


@pytest.mark.parametrize("module", [references, images, segmentation], ids=lambda m: m.__name__)
def test_a_change_to_the_code_that_renders_or_frames_gives_another_file(val_x, module, tmp_path, monkeypatch):
    before = cache.key(val_x, 4, seed=0)
    changed = tmp_path / "changed.py"
    changed.write_bytes(Path(str(module.__file__)).read_bytes() + b"\nTHRESHOLD = 3.0\n")
    monkeypatch.setattr(module, "__file__", str(changed))
    assert cache.key(val_x, 4, seed=0) != before


def test_every_module_of_the_framing_is_a_source_of_the_key():
    # The fmnist modules that images.py and references.py call; those that only give a constant, an error class
    # or an atomic write do not change what a reference looks like.
    inert = {"fmnist.atomic", "fmnist.data", "fmnist.errors"}
    used = {
        getattr(value, "__module__", None) or getattr(value, "__name__", "")
        for module in (images, references)
        for value in vars(module).values()
        if isinstance(value, types.ModuleType) or callable(value)
    }
    framing = {name for name in used if name.startswith("fmnist.")} - inert
    assert framing <= {module.__name__ for module in cache.SOURCES}
