"""inference.predict_files: typed results per file, in order, batch by batch, with per-file errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from fmnist import trust as trust_lib
from fmnist.errors import FmnistError
from fmnist.images import export_png, load_image
from fmnist.inference import FilePrediction, PredictOptions, predict_files


class MeanBrightness:
    """A stand-in model: the class is the image's mean level // 26 (0..9); records each batch's size."""

    def __init__(self) -> None:
        self.batches: list[int] = []

    trust = trust_lib.UNFITTED  # no temperature, no detector: every picture counts as a garment

    def logits(self, images: torch.Tensor | np.ndarray) -> torch.Tensor:
        images = torch.as_tensor(images)  # predict_files gives numpy images (a Predictor takes either)
        self.batches.append(len(images))
        classes = (images.float().mean((1, 2)) // 26).long().clamp(max=9)
        return (torch.nn.functional.one_hot(classes, 10).float() * 0.9 + 0.01).log()


def _picture(level: int) -> torch.Tensor:
    image = torch.zeros(28, 28, dtype=torch.uint8)  # a dark border: the dataset's own format, taken as it is
    image[2:26, 2:26] = level
    image[14, 14] = 255  # as every dataset image, it reaches full white
    return image


def test_results_in_order_with_errors_across_batches(tmp_path):
    levels = [10, 60, 110, 160, 210]
    paths = []
    for i, level in enumerate(levels):
        paths.append(tmp_path / f"img{i}.png")
        export_png(_picture(level), paths[-1])
    broken = tmp_path / "broken.png"
    broken.write_text("not an image")
    paths.insert(2, broken)
    model = MeanBrightness()
    results = list(predict_files(model, paths, PredictOptions(top_k=2, batch_size=4)))
    assert all(isinstance(r, FilePrediction) for r in results) and [r.path for r in results] == paths
    assert model.batches == [3, 2]  # the broken file takes no place in the model's batch
    bad = results[2]
    assert bad.answer is None and bad.error is not None and str(broken) in bad.error
    good = [r.answer for r in results if r.answer is not None]
    expected = [int(_picture(level).float().mean()) // 26 for level in levels]
    assert [a.class_index for a in good] == expected and all(len(a.top) == 2 for a in good)
    assert all(a.top[0] == (a.class_name, a.probability) and a.top[0][1] >= a.top[1][1] for a in good)


def test_saved_inputs_are_what_the_model_saw_and_named_uniquely(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    paths = [tmp_path / "a" / "shoe.png", tmp_path / "b" / "shoe.png"]
    for path, level in zip(paths, (80, 200), strict=True):
        export_png(_picture(level), path)
    saved = tmp_path / "seen"
    results = list(predict_files(MeanBrightness(), paths, PredictOptions(top_k=20, save_inputs=saved)))
    assert [r.saved_input for r in results] == [saved / "shoe.png", saved / "shoe-2.png"]
    assert all(r.answer is not None and len(r.answer.top) == 10 for r in results)  # top_k beyond the classes: all ten
    for r in results:
        assert r.saved_input is not None and torch.equal(load_image(r.saved_input), load_image(r.path))


@pytest.mark.parametrize(
    ("options", "message"),
    [({"top_k": 0}, "top_k must be >= 1, got 0"), ({"batch_size": -1}, "batch_size must be >= 1, got -1")],
)
def test_options_are_checked_when_made(options, message):
    with pytest.raises(FmnistError, match=message):
        PredictOptions(**options)


def test_save_inputs_must_be_a_directory(tmp_path, monkeypatch):
    (tmp_path / "file.txt").write_text("")
    with pytest.raises(FmnistError, match="exists and is not a directory"):
        PredictOptions(save_inputs=tmp_path / "file.txt")
    with pytest.raises(FmnistError, match="file.txt is a file, not a directory"):
        PredictOptions(explain=tmp_path / "file.txt" / "maps")

    def unsearchable(path: Path, *args, **kwargs) -> bool:  # as for a user without the right to search a folder above
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(Path, "exists", unsearchable)
    with pytest.raises(FmnistError, match=r"save_inputs .*/seen: cannot be checked: permission denied"):
        PredictOptions(save_inputs=tmp_path / "seen")


def test_save_inputs_and_explain_need_their_own_directories(tmp_path):
    """Both write DIR/<file name>.png: in one directory the heatmaps would silently replace the saved views."""
    with pytest.raises(FmnistError, match="save_inputs and explain are the same directory"):
        PredictOptions(save_inputs=tmp_path / "out", explain=tmp_path / "sub" / ".." / "out")
    PredictOptions(save_inputs=tmp_path / "seen", explain=tmp_path / "why")  # apart: fine
