import json

import numpy as np
import pytest
import torch
from support import mosaic, synthetic_arrays, tiny_checkpoint

from fmnist import checkpoint, trust
from fmnist.answer import answers
from fmnist.errors import FmnistError
from fmnist.images import load_picture
from fmnist.inference import TorchPredictor, probabilities
from fmnist.testing.photos import render_set
from fmnist.trust import ood


@pytest.fixture(scope="module")
def validation():
    a = synthetic_arrays()
    return torch.from_numpy(a["train_images"][:300]), torch.from_numpy(a["train_labels"][:300]).long()


@pytest.fixture(scope="module")
def training():
    """Images the model trained on, none of them in `validation`: the coarse cue's Gaussians are fitted on them."""
    a = synthetic_arrays()
    return torch.from_numpy(a["train_images"][300:900]), torch.from_numpy(a["train_labels"][300:900]).long()


@pytest.mark.slow
def test_fit_keeps_garment_photos_and_rejects_clutter(tmp_path, validation, training, one_thread):
    val_x, val_y = validation
    torch.manual_seed(0)  # the untrained weights, and so the energies, are the same in every run
    path = tiny_checkpoint(tmp_path / "m.pt")
    model, _, _ = checkpoint.load_model(path)
    fitted = trust.fit(trust.model_logits(model), val_x, val_y, training, seed=0, photos=60)
    assert fitted.temperature is not None and set(fitted.references) == set(trust.CUES)
    assert fitted.threshold == 0.015  # 1 - KEEP as written, not 1 - 0.985 = 0.015000000000000013
    other = trust.fit(trust.model_logits(model), val_x, val_y, training, photos=40, cues=("energy", "span", "fill"))
    assert set(other.references) == {"energy", "span", "fill"} and set(other.plain) == {"energy", "span"}
    assert other.basis is None and other.gaussians is None  # neither `residual` nor `coarse` is weighed
    fresh = [load_picture(p.data) for p in render_set(val_x, 20, seed=9)]  # not the reference renders
    logits = trust.model_logits(model)(torch.stack([f.image for f in fresh]))
    kept = trust.judge(fitted, logits, torch.stack([f.image for f in fresh]), [f.cues for f in fresh])
    assert kept.garment.mean() >= 0.75  # about 98 % expected; 20 photos against 60 references leave room
    clutter = [load_picture(mosaic(seed=s)) for s in range(3)]
    views = torch.stack([c.image for c in clutter])
    # 60 references score nothing below 1 / 61, above the threshold (the real fit has 400): the clutter scores
    # below every fresh garment photo, so a threshold between them keeps those and rejects it.
    verdict = trust.judge(fitted, trust.model_logits(model)(views), views, [c.cues for c in clutter])
    assert verdict.scores is not None and kept.scores is not None
    assert verdict.scores.max() < kept.scores.min()


@pytest.mark.slow
def test_fit_and_store_adds_trust_to_the_checkpoint_and_predictors_apply_it(tmp_path, validation, training, one_thread):
    path = tiny_checkpoint(tmp_path / "m.pt")
    model, _, _ = checkpoint.load_model(path)
    fitted = trust.fit_and_store(model, *validation, training, path, seed=0, log=lambda _: None, photos=30)
    assert fitted is not None
    predictor = TorchPredictor(path)
    assert predictor.trust.temperature == pytest.approx(fitted.temperature)
    images = validation[0][:5]
    expected = (predictor.logits(images) / fitted.temperature).softmax(1)
    assert torch.allclose(probabilities(predictor, images), expected)
    assert predictor.describe()["calibrated"] is True
    assert checkpoint.load(path)["model"].keys() == model.state_dict().keys()  # the weights are still there


def test_without_a_validation_split_nothing_is_fitted_and_it_is_said(tmp_path, training):
    path = tiny_checkpoint(tmp_path / "m.pt")
    model, _, _ = checkpoint.load_model(path)
    said = []
    empty = torch.zeros(0, 28, 28, dtype=torch.uint8)
    assert trust.fit_and_store(model, empty, torch.zeros(0, dtype=torch.long), training, path, 0, said.append) is None
    assert "uncalibrated" in said[0] and trust.KEY not in checkpoint.load(path)


def test_unfitted_trust_accepts_everything_with_plain_softmax():
    logits = torch.randn(4, 10)
    verdict = trust.judge(trust.UNFITTED, logits, torch.zeros(4, 28, 28, dtype=torch.uint8), [None] * 4)
    assert verdict.scores is None and verdict.garment.all()
    assert torch.allclose(verdict.probabilities, logits.softmax(1))
    [first, *_] = answers(trust.UNFITTED, logits, torch.zeros(4, 28, 28, dtype=torch.uint8), [None] * 4)
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
    views = torch.zeros(2, 28, 28, dtype=torch.uint8)
    verdict = trust.judge(again, logits, views, [None, None])
    assert list(verdict.garment) == [False, True]
    assert trust.judge(again, logits, views, [None, None], threshold=0.0).garment.all()
    assert ood.p_values(np.array([-20.0]), again.references["energy"], "low")[0] < 0.2


def test_a_threshold_stored_unrounded_reads_as_written():
    facts = {**trust.Trust(1.5, {"energy": np.linspace(0, 10, 50)}, 0.2).to_dict(), "threshold": 1 - 0.985}
    again = trust.Trust.from_dict(json.loads(json.dumps(facts)))
    assert again.threshold == 0.015 and json.dumps(again.to_dict()["threshold"]) == "0.015"


@pytest.mark.parametrize("gate", [-0.1, 1.5, float("nan")])
def test_a_detector_with_a_gate_outside_0_1_is_refused(gate):
    facts = trust.Trust(1.5, {"energy": np.arange(3.0)}, 0.2, gate=0.05).to_dict()
    assert trust.Trust.from_dict(facts).gate == 0.05
    with pytest.raises(FmnistError, match="gate must be in"):
        trust.Trust.from_dict({**facts, "gate": gate})


def test_a_checkpoint_holds_the_detector_as_tensors_and_reads_older_lists_alike(tmp_path):
    rng = np.random.default_rng(0)
    fitted = trust.Trust(
        1.5,
        {"energy": np.sort(rng.normal(size=50))},
        0.2,
        {"energy": np.sort(rng.normal(size=30))},
        {"photo": np.sort(rng.random(40))},
        rng.normal(size=(3, 784)),
        rng.normal(size=(10, 99, 98)),
        0.05,
    )
    path = tmp_path / "m.pt"
    checkpoint.save(path, {"model": {}})
    trust.store(fitted, path)
    stored = checkpoint.load(path)[trust.KEY]
    # torch.load(weights_only=True) reads 100,000 floats of a list one by one: tensors load 10 times faster
    assert isinstance(stored["gaussians"], torch.Tensor) and isinstance(stored["references"]["energy"], torch.Tensor)
    older = json.loads(json.dumps(fitted.to_dict()))  # what a checkpoint written as lists holds
    for again in (trust.of_state(checkpoint.load(path)), trust.Trust.from_dict(older)):
        assert again.temperature == 1.5 and again.threshold == 0.2 and again.gate == 0.05
        for name in ("references", "plain", "held_out"):
            for cue, values in getattr(fitted, name).items():
                assert np.array_equal(getattr(again, name)[cue], values)
        assert np.array_equal(again.basis, fitted.basis) and np.array_equal(again.gaussians, fitted.gaussians)


# ---------------------------------------------------------------- the minimum sample of every fit


@pytest.mark.parametrize("images", [1, 2, 50, trust.MIN_TEMPERATURE_IMAGES - 1])
def test_too_few_validation_images_fit_nothing_and_say_uncalibrated(tmp_path, validation, training, images):
    path = tiny_checkpoint(tmp_path / "m.pt")
    model, _, _ = checkpoint.load_model(path)
    x, y = validation[0][:images], validation[1][:images]
    said: list[str] = []
    assert trust.fit_and_store(model, x, y, training, path, seed=0, log=said.append, photos=30) is None
    assert "uncalibrated" in said[0] and f"{images:,} images is below" in said[0]
    assert trust.KEY not in checkpoint.load(path) and TorchPredictor(path).describe()["calibrated"] is False
    with pytest.raises(FmnistError, match="uncalibrated"):
        trust.fit(trust.model_logits(model), x, y, training, photos=30)


def test_the_detector_needs_as_many_validation_images_as_reference_photos():
    assert trust.shortfall(trust.REFERENCE_PHOTOS - 1) is not None
    assert trust.shortfall(trust.REFERENCE_PHOTOS) is None and trust.shortfall(5000) is None
    assert trust.shortfall(trust.MIN_TEMPERATURE_IMAGES, photos=10) is None


def test_calibrate_refuses_a_checkpoint_whose_split_is_too_small_before_loading_data(tmp_path, capsys, monkeypatch):
    from fmnist import cli, config
    from fmnist.cli import train as cli_train

    path = tiny_checkpoint(tmp_path / "m.pt")
    state = checkpoint.load(path)
    state["config"] = config.to_dict(config.from_dict({**state["config"], "val_size": 20}))
    checkpoint.save(path, state)
    monkeypatch.setattr(cli_train, "load_data", lambda *_: pytest.fail("the data was loaded"))
    assert cli.main(["calibrate", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "validation split of 20 images is below the 400" in err
    assert cli.main(["calibrate", str(path), "--gate", "1.5"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--gate must be in [0, 1], got 1.5" in err
    for cues, message in (
        ("energy,shine", "--cues: unknown cue(s) shine; choose from energy, span"),
        ("span,ink", "--cues must hold the energy"),
        ("energy,span,energy", "--cues must hold the energy and each cue once"),
        (" , ", "--cues: no cue given"),
    ):
        assert cli.main(["calibrate", str(path), "--cues", cues]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err, err
    asked = []
    monkeypatch.setattr(
        trust,
        "calibrate_run",
        lambda path, load, log, gate, cues: (
            asked.append((gate, cues)) or trust.Trust(1.0, {cue: np.zeros(1) for cue in cues}, 0.015, gate=gate)
        ),
    )
    assert cli.main(["calibrate", str(path), "--gate", "0"]) == 0 and cli.main(["calibrate", str(path)]) == 0
    capsys.readouterr()
    assert cli.main(["calibrate", str(path), "--cues", "energy, coarse,largest_part", "--gate", "1"]) == 0
    assert (
        "in-distribution threshold 0.0150, detector energy + coarse + largest_part (gate 1)" in capsys.readouterr().out
    )
    assert cli.main(["calibrate", str(path), "--gate", "1/30"]) == 0  # as the help writes the default
    assert asked == [
        (0.0, trust.CUES),
        (trust.ood.GATE, trust.CUES),
        (1.0, ("energy", "coarse", "largest_part")),
        (1 / 30, trust.CUES),
    ]
    with pytest.raises(SystemExit) as exited:  # argparse's own one-line error
        cli.main(["calibrate", str(path), "--gate", "1/0"])
    err = capsys.readouterr().err
    assert exited.value.code == 2
    assert err.count("\n") == 1 and "invalid number value: '1/0'" in err


@pytest.mark.slow
def test_train_with_a_tiny_validation_split_says_uncalibrated_and_stores_no_trust(synthetic_data, tmp_path, capsys):
    from fmnist import cli
    from fmnist.run_dir import model_path

    args = [
        "train",
        "--hidden",
        "16",
        "--epochs",
        "1",
        "--val-size",
        "1",
        "--no-progress",
        "--out",
        str(tmp_path / "r"),
    ]
    assert cli.main(args) == 0
    out = capsys.readouterr().out
    assert "validation split of 1 images is below" in out and "uncalibrated" in out
    assert trust.KEY not in checkpoint.load(model_path(tmp_path / "r"))


@pytest.mark.slow
def test_an_int8_export_of_a_model_with_a_too_small_split_is_left_uncalibrated(synthetic_data, tmp_path):
    from support import trusted_checkpoint

    from fmnist import config, data, export
    from fmnist.inference import open_onnx

    path = trusted_checkpoint(tmp_path / "m.pt")  # a fitted Trust, as an older fmnist fitted from any split
    state = checkpoint.load(path)
    state["config"] = config.to_dict(config.from_dict({**state["config"], "val_size": 50}))
    checkpoint.save(path, state)
    facts = export.export(export.load_source(path), tmp_path / "m.onnx", data.load(), int8=True, calibration_images=200)
    assert facts[trust.KEY]["temperature"] is None and open_onnx(tmp_path / "m.onnx").describe()["calibrated"] is False


def test_calibrate_fits_on_the_validation_images_that_fit_held_out(synthetic_data, tmp_path, monkeypatch):
    from fmnist import config, data, models
    from fmnist.training import split_data

    cfg = config.Config(hidden=(8,), val_size=400, seed=7)
    path = tmp_path / "m.pt"
    checkpoint.save(path, {"model": models.build(cfg).state_dict(), "config": config.to_dict(cfg), "epoch": 1})
    dataset = data.load(str(synthetic_data))
    seen = []

    def recorded(model, val_x, *rest, gate, cues):
        seen.append((val_x, gate, cues))
        return trust.UNFITTED

    monkeypatch.setattr(trust, "fit_and_store", recorded)
    trust.calibrate_run(path, lambda: dataset, lambda _: None)
    held_out = split_data(cfg, dataset, torch.device("cpu")).val_x
    assert len(held_out) == 400 and torch.equal(seen[0][0], held_out) and seen[0][1] == trust.ood.GATE
    assert seen[0][2] == trust.CUES
    trust.calibrate_run(path, lambda: dataset, lambda _: None, gate=0.0, cues=("energy", "span"))  # --gate 0 --cues ...
    assert seen[1][1:] == (0.0, ("energy", "span"))
    other = config.Config(hidden=(8,), val_size=400, seed=8)  # another seed holds out other images
    assert not torch.equal(split_data(other, dataset, torch.device("cpu")).val_x, held_out)
