import re

import pytest
import torch
from support import FOLDER_NAMES, labelled_folder

from fmnist.errors import FmnistError
from fmnist.folders import class_of_folder, load_folders
from fmnist.images import load_image


def test_folder_names_are_forgiving_about_case_punctuation_and_plurals():
    for name, label in FOLDER_NAMES.items():
        assert class_of_folder(name) == label, name
    for name in ("T-shirt_top", "tshirt", "T-shirt/top", "top", "Ankle boot", "ankle-boot", "9"):
        assert class_of_folder(name) in (0, 9)
    for name in ("hats", "10", "shirt-dress", ""):
        assert class_of_folder(name) is None, name


def test_labelled_folders_are_framed_as_predict_frames_them(tmp_path):
    good = labelled_folder(tmp_path)
    result = load_folders(tmp_path)
    assert len(result.paths) == len(good) == 10
    expected = dict(good)
    assert [expected[p] for p in result.paths] == result.labels.tolist()
    assert sorted(result.labels.tolist()) == result.labels.tolist()  # class order
    for image, path in zip(result.images, result.paths, strict=True):
        assert torch.equal(image, load_image(path))
    # The truncated JPEG and the text file in a class folder are named; the hidden and the stray file are counted.
    assert len(result.problems) == 2 and any("cut-short.jpg" in problem for problem in result.problems)
    assert all(problem.endswith(", left out") for problem in result.problems)  # a truncated photo too
    assert f"{tmp_path / 'bag' / 'notes.txt'}: not an image Pillow reads, left out" in result.problems
    assert sum(result.skipped.values()) >= 2 and "files outside class folders" in result.skipped


@pytest.mark.parametrize(
    "make, message",
    [
        (
            lambda root: (root / "hats").mkdir(parents=True),
            "hats: folder name is not a class; name each folder by a class "
            "index 0-9 or a class name (T-shirt/top, Trouser",
        ),
        (lambda root: root.mkdir(), "no class folders inside"),
        (lambda root: (root / "bag").mkdir(parents=True), "no readable pictures"),
        (lambda root: root.write_text("x"), "not a directory"),
        (lambda root: None, "no such directory"),
    ],
)
def test_folder_mistakes_are_one_line_errors(tmp_path, make, message):
    root = tmp_path / "photos"
    make(root)
    with pytest.raises(FmnistError, match=re.escape(message)) as caught:
        load_folders(root)
    assert "\n" not in str(caught.value)


def test_hidden_files_beside_the_class_folders_are_counted_too(tmp_path):
    """docs/EVALUATION.md: hidden and system files are skipped and counted, wherever they are."""
    labelled_folder(tmp_path)
    before = load_folders(tmp_path).skipped.get("hidden or system file", 0)
    (tmp_path / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (tmp_path / "Thumbs.db").write_bytes(b"")
    assert load_folders(tmp_path).skipped["hidden or system file"] == before + 2


@pytest.mark.parametrize("junk", ["__MACOSX", ".ipynb_checkpoints", ".git", "__pycache__", "$RECYCLE.BIN"])
def test_folders_that_archive_tools_and_notebooks_leave_are_skipped_and_counted(tmp_path, junk):
    good = labelled_folder(tmp_path)
    (tmp_path / junk / "bag").mkdir(parents=True)  # as macOS's zip leaves it: AppleDouble forks in a mirror tree
    (tmp_path / junk / "bag" / "._bag.jpg").write_bytes(b"\0\5\26\7\0\2\0\0Mac OS X")
    (tmp_path / junk / "notes-checkpoint.ipynb").write_text("{}")
    result = load_folders(tmp_path)
    assert len(result.paths) == len(good)
    assert (
        result.skipped[
            "folder left by an archive tool, a notebook or the system (__MACOSX, .ipynb_checkpoints, dot-folders)"
        ]
        == 1
    )
