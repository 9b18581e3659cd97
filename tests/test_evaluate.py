import math

import pytest
import torch

from fmnist import models
from fmnist.config import Config
from fmnist.errors import FmnistError
from fmnist.evaluate import Evaluation, Report, evaluate, evaluate_logits


def evaluation(labels, predicted):
    probs = torch.nn.functional.one_hot(torch.tensor(predicted), 10).float()
    return Evaluation(loss=0.0, accuracy=0.0, probabilities=probs, labels=torch.tensor(labels))


def test_confusion_matrix_rows_are_true_classes():
    cm = evaluation([0, 0, 1, 2], [0, 1, 1, 1]).confusion_matrix()
    assert cm[0, 0] == 1 and cm[0, 1] == 1 and cm[1, 1] == 1 and cm[2, 1] == 1 and cm.sum() == 4


def test_per_class_precision_and_recall():
    rows = evaluation([0, 0, 1, 2], [0, 1, 1, 1]).per_class()
    assert rows[0]["recall"] == 0.5 and rows[0]["precision"] == 1.0 and rows[0]["support"] == 2
    assert rows[1]["precision"] == pytest.approx(1 / 3) and rows[1]["recall"] == 1.0
    assert rows[2]["recall"] == 0.0 and rows[9]["support"] == 0


class Constant(torch.nn.Module):
    """Logits that always favour class 3."""

    def forward(self, x):
        logits = torch.zeros(len(x), 10)
        logits[:, 3] = 5.0
        return logits


def test_evaluate_restores_the_mode_and_matches_cross_entropy():
    images = torch.zeros(7, 28, 28, dtype=torch.uint8)
    labels = torch.tensor([3, 3, 3, 1, 2, 3, 0])
    model = Constant().train()
    result = evaluate(model, images, labels, batch_size=3)
    assert result.accuracy == pytest.approx(4 / 7) and model.training  # mode restored
    expected = torch.nn.functional.cross_entropy(Constant()(images), labels).item()
    assert result.loss == pytest.approx(expected)


def test_an_empty_set_is_a_clear_error_not_a_crash():
    model = models.build(Config(hidden=(8,)))
    with pytest.raises(FmnistError, match="no images to evaluate"):
        evaluate(model, torch.zeros(0, 28, 28, dtype=torch.uint8), torch.zeros(0, dtype=torch.long))
    with pytest.raises(FmnistError, match="no images to evaluate"):  # the path eval and export take
        evaluate_logits(model, torch.zeros(0, 28, 28, dtype=torch.uint8), torch.zeros(0, dtype=torch.long))


def graded(labels, probabilities):
    return Evaluation(loss=0.0, accuracy=0.0, probabilities=torch.tensor(probabilities), labels=torch.tensor(labels))


def uniform_but(cls: int, p: float) -> list[float]:
    row = [(1 - p) / 9] * 10
    row[cls] = p
    return row


def test_top_losses_are_the_images_least_sure_of_their_true_class():
    # True-class probabilities 0.9, 0.05, 0.5, 0.01: losses -log p, highest first -> images 3, 1, 2, 0.
    e = graded([0, 1, 2, 3], [uniform_but(0, 0.9), uniform_but(4, 0.9), uniform_but(2, 0.5), uniform_but(5, 0.9)])
    assert e.losses.tolist() == pytest.approx([-math.log(0.9), -math.log(0.1 / 9), -math.log(0.5), -math.log(0.1 / 9)])
    assert e.top_losses(3).tolist() == [1, 3, 2]  # the tie between 1 and 3 keeps image order
    assert e.top_losses(10).tolist() == [1, 3, 2, 0]


def test_most_confused_counts_pairs_with_the_share_of_the_true_class():
    # Shirts (6): 4 images, 3 taken for T-shirts (0), 1 right; coats (4): 2 images, 1 taken for a pullover (2).
    labels = [6, 6, 6, 6, 4, 4, 0]
    predicted = [0, 0, 0, 6, 2, 4, 6]
    e = evaluation(labels, predicted)
    pairs = e.most_confused()
    assert [(c.true, c.predicted, c.count) for c in pairs] == [(6, 0, 3), (0, 6, 1), (4, 2, 1)]
    assert [c.share for c in pairs] == [0.75, 1.0, 0.5]
    assert [(c.true, c.predicted) for c in e.most_confused(min_count=2)] == [(6, 0)]
    assert pairs[0].describe() == "Shirt -> T-shirt/top: 3 (75.0% of Shirt)"


def test_report_text_and_json_say_the_same():
    e = evaluation([6, 6, 6, 6, 4, 4, 0], [0, 0, 0, 6, 2, 4, 6])
    e.accuracy, e.loss = 2 / 7, 1.5
    report = Report(
        "m.pt",
        "photos",
        e,
        torch.zeros(7, 28, 28, dtype=torch.uint8),
        [f"{i}.jpg" for i in range(7)],
        ["photos/9/bad.jpg: image is truncated or corrupt"],
        {"hidden or system file": 1, "not an image Pillow reads": 2},
    )
    result = report.as_dict()
    assert result["accuracy"] == 2 / 7 and result["images"] == 7 and "test_accuracy" not in result
    assert result["most_confused"][0] == {"true": "Shirt", "predicted": "T-shirt/top", "count": 3, "share": 0.75}
    text = report.text(pairs=2)
    assert "photos: accuracy 28.57%" in text and "Shirt -> T-shirt/top: 3 (75.0% of Shirt)" in text
    assert "Coat -> Pullover" not in text  # only the top 2 pairs
    assert "skipped 3 files: hidden or system file: 1; not an image Pillow reads: 2" in text and "bad.jpg" in text
