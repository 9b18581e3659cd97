import numpy as np
import pytest
import torch
from support import synthetic_arrays

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


def test_other_images_seed_or_count_are_other_files(val_x, folder):
    cache.reference_photos(val_x, 4, seed=0)
    cache.reference_photos(val_x, 4, seed=1)
    cache.reference_photos(val_x, 3, seed=0)
    other = val_x.clone()
    other[0, 0, 0] ^= 1
    cache.reference_photos(other, 4, seed=0)
    assert len(list(folder.iterdir())) == 4


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
