import pytest
import torch

from fmnist import models
from fmnist.config import Config
from fmnist.errors import FmnistError
from fmnist.evaluate import Evaluation, evaluate, evaluate_logits


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
