import json

import numpy as np
import pytest
import torch
from support import mosaic, synthetic_arrays, tiny_checkpoint

from fmnist import checkpoint, trust
from fmnist.answers import answer
from fmnist.images import load_picture
from fmnist.inference import TorchPredictor, probabilities
from fmnist.testing.photos import render_set
from fmnist.trust import ood


@pytest.fixture(scope="module")
def validation():
    a = synthetic_arrays()
    return torch.from_numpy(a["train_images"][:300]), torch.from_numpy(a["train_labels"][:300]).long()


@pytest.mark.slow
def test_fit_keeps_garment_photos_and_rejects_clutter(tmp_path, validation, one_thread):
    val_x, val_y = validation
    torch.manual_seed(0)  # the untrained weights, and so the energies, are the same in every run
    path = tiny_checkpoint(tmp_path / "m.pt")
    model, _, _ = checkpoint.load_model(path)
    fitted = trust.fit(trust.model_logits(model), val_x, val_y, seed=0, photos=40)
    assert fitted.temperature is not None and set(fitted.references) == set(trust.CUES)
    assert 0 < fitted.threshold < 1
    fresh = [load_picture(p.data) for p in render_set(val_x, 20, seed=9)]  # not the reference renders
    logits = trust.model_logits(model)(torch.stack([f.image for f in fresh]))
    kept = trust.judge(fitted, logits, [f.cues for f in fresh]).garment.mean()
    assert kept >= 0.75  # about 95 % expected; 20 photos against a threshold from 40 leave room either way
    clutter = [load_picture(mosaic(seed=s)) for s in range(3)]
    verdict = trust.judge(
        fitted, trust.model_logits(model)(torch.stack([c.image for c in clutter])), [c.cues for c in clutter]
    )
    assert not verdict.garment.any()
    assert verdict.scores is not None and (verdict.scores < fitted.threshold).all()


@pytest.mark.slow
def test_fit_and_store_adds_trust_to_the_checkpoint_and_predictors_apply_it(tmp_path, validation, one_thread):
    path = tiny_checkpoint(tmp_path / "m.pt")
    model, _, _ = checkpoint.load_model(path)
    fitted = trust.fit_and_store(model, *validation, path, seed=0, log=lambda _: None, photos=30)
    assert fitted is not None
    predictor = TorchPredictor(path)
    assert predictor.trust.temperature == pytest.approx(fitted.temperature)
    images = validation[0][:5]
    expected = (predictor.logits(images) / fitted.temperature).softmax(1)
    assert torch.allclose(probabilities(predictor, images), expected)
    assert predictor.describe()["calibrated"] is True
    assert checkpoint.load(path)["model"].keys() == model.state_dict().keys()  # the weights are still there


def test_without_a_validation_split_nothing_is_fitted_and_it_is_said(tmp_path):
    path = tiny_checkpoint(tmp_path / "m.pt")
    model, _, _ = checkpoint.load_model(path)
    said = []
    empty = torch.zeros(0, 28, 28, dtype=torch.uint8)
    assert trust.fit_and_store(model, empty, torch.zeros(0, dtype=torch.long), path, 0, said.append) is None
    assert "uncalibrated" in said[0] and trust.KEY not in checkpoint.load(path)


def test_unfitted_trust_accepts_everything_with_plain_softmax():
    logits = torch.randn(4, 10)
    verdict = trust.judge(trust.UNFITTED, logits, [None] * 4)
    assert verdict.scores is None and verdict.garment.all()
    assert torch.allclose(verdict.probabilities, logits.softmax(1))
    [first, *_] = answer(trust.UNFITTED, logits, [None] * 4)
    assert (first.garment, first.in_distribution_score, first.ood_threshold, first.calibrated) == (
        True,
        None,
        None,
        False,
    )


def test_threshold_override_and_round_trip_through_json():
    fitted = trust.Trust(1.5, {"energy": np.linspace(0, 10, 50)}, 0.2)
    again = trust.Trust.from_dict(json.loads(json.dumps(fitted.to_dict())))
    assert again.temperature == 1.5 and again.threshold == 0.2
    assert np.array_equal(again.references["energy"], fitted.references["energy"])
    logits = torch.tensor([[-20.0] * 10, [5.0] + [0.0] * 9])  # energy far below the references, and typical
    verdict = trust.judge(again, logits, [None, None])
    assert list(verdict.garment) == [False, True]
    assert trust.judge(again, logits, [None, None], threshold=0.0).garment.all()
    assert ood.p_values(np.array([-20.0]), again.references["energy"], "low")[0] < 0.2
