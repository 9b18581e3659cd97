import dataclasses
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from support import labelled_folder

import fmnist
from fmnist import adapt, api, checkpoint, config, data, models, training, trust
from fmnist.cli import main
from fmnist.errors import FmnistError
from fmnist.evaluate import evaluate
from fmnist.images import Cues, Framed
from fmnist.run_dir import RunDir

SMALL = adapt.Recipe(epochs=2, repeats=2, rehearsal=2.0)


@pytest.fixture
def parent(synthetic_data, tmp_path, one_thread):
    """A small MLP trained for two epochs on the synthetic set, with a 200-image validation split."""
    cfg = config.Config(hidden=(32,), epochs=2, batch_size=32, val_size=200)
    training.fit(cfg, tmp_path / "parent", data.load(), log=lambda _: None, progress=False)
    return tmp_path / "parent"


@pytest.fixture
def few_references(monkeypatch):
    """The detector's Fashion-MNIST reference photos, 20 instead of 400: framing each costs tens of ms."""
    monkeypatch.setattr(trust, "REFERENCE_PHOTOS", 20)


@pytest.mark.slow
def test_messy_folders_each_get_one_line_and_the_rest_is_used(tmp_path, synthetic_data):
    root = tmp_path / "photos"
    good = labelled_folder(root, per_class=5)
    shutil.rmtree(root / "bag")  # a class with no photos
    for extra in sorted((root / "sandal").iterdir())[2:]:  # a class with 2 photos
        extra.unlink()
    trouser = sorted((root / "Trousers").iterdir())
    shutil.copy(trouser[0], root / "DRESS" / "same-as-trouser.jpg")  # one picture in two classes
    shutil.copy(trouser[1], root / "Trousers" / "copy.jpg")  # twice in one class
    (root / "hats").mkdir()  # no class
    (root / "hats" / "cap.jpg").write_bytes(trouser[2].read_bytes())

    photos = adapt.read_photos(root, holdout=0.3, seed=0)

    notes = "\n".join(photos.notes)
    assert all("\n" not in note for note in photos.notes)
    assert "hats: folder name is not a class, so its pictures are left out" in notes
    assert "no photos of Bag: adapting the other classes" in notes
    assert "Sandal: 2 photos, all trained on and none held out" in notes
    assert "the same picture is in 2 classes, so it is left out" in notes and "same-as-trouser.jpg" in notes
    assert f"the same picture as {root / 'Trousers' / 'copy.jpg'}, counted once" in notes
    labels = photos.found.labels.tolist()
    assert labels.count(1) == 4 and labels.count(3) == 5 and 8 not in labels  # trouser lost its ambiguous copy
    held = photos.held_out
    assert not held[photos.found.labels == 5].any()  # too few to hold any out
    assert int(held[photos.found.labels == 3].sum()) == 2  # round(0.3 * 5)
    assert len(good) == 50 and len(photos.manifest()) == len(labels)


def test_photos_the_parent_was_adapted_on_are_held_out_last_and_said(tmp_path, synthetic_data):
    root = tmp_path / "photos"
    labelled_folder(root, per_class=5)
    everything = adapt.read_photos(root, holdout=0.4, seed=0)
    seen = frozenset(d for d, h in zip(everything.digests, everything.held_out.tolist(), strict=True) if h)
    fresh = adapt.read_photos(root, holdout=0.4, seed=0, seen=seen)  # held out: the others, as many
    assert not any(d in seen for d, h in zip(fresh.digests, fresh.held_out.tolist(), strict=True) if h)
    assert not any("the parent was adapted on" in note for note in fresh.notes)
    forced = adapt.read_photos(root, holdout=0.8, seed=0, seen=seen)  # 4 of 5 a class: some must be seen ones
    assert any(note.endswith("photos it has not seen would check both models fairly") for note in forced.notes)


def test_an_unreadable_photo_is_named_and_left_out(tmp_path, synthetic_data):
    root = tmp_path / "photos"
    labelled_folder(root, per_class=1)
    photos = adapt.read_photos(root, holdout=0.3, seed=0)
    assert any("cut-short.jpg" in note for note in photos.notes)
    assert f"{root / 'bag' / 'notes.txt'}: not an image Pillow reads, left out" in photos.notes


def framed(n: int) -> tuple[list[Framed], torch.Tensor]:
    images = torch.randint(0, 255, (n, 28, 28), dtype=torch.uint8)
    cues = [Cues(0.5 + i / (2 * n), 0.5, 0.4, 0.5, 1.0) for i in range(n)]  # a plain backdrop: border_fit judged
    return [Framed(x.numpy(), c) for x, c in zip(images, cues, strict=True)], torch.arange(n) % 10


@pytest.mark.slow
@pytest.mark.parametrize("kept_enough", [0.0, 1.01], ids=["the-detector-keeps-them", "it-rejects-them"])
@pytest.mark.parametrize("n", [trust.MIN_DETECTOR_PHOTOS - 1, trust.MIN_DETECTOR_PHOTOS, trust.MIN_TEMPERATURE_IMAGES])
def test_refit_fits_nothing_below_its_minimum_and_learns_only_photos_it_rejects(
    n, kept_enough, few_references, synthetic_data, one_thread, monkeypatch
):
    # With 20 references no p-value reaches the threshold, so the detector keeps every photo: the share it must
    # keep (KEPT_ENOUGH) decides alone whether the user's photos are ones it already takes for garments.
    monkeypatch.setattr(trust, "KEPT_ENOUGH", kept_enough)
    model = models.build(config.Config(hidden=(16,)))
    photos, labels = framed(n)
    val_x = data.load().train_images[:50]
    training = data.load().train_images[50:650], data.load().train_labels[50:650]
    refitted, notes = trust.refit(trust.model_logits(model), photos, labels, val_x, training)
    assert refitted.has_detector
    text = "\n".join(notes)
    assert (refitted.temperature is None) == (n < trust.MIN_TEMPERATURE_IMAGES) == ("uncalibrated: " in text)
    joined = n >= trust.MIN_DETECTOR_PHOTOS and kept_enough > 1  # they join the references (border_fit from 0.5)
    assert (refitted.references["border_fit"].min() == pytest.approx(0.5)) == joined
    assert ("learns only Fashion-MNIST photos" in text) != joined
    assert ("keeps 100% of your held-out photos as it is" in text) == (kept_enough == 0.0)


def test_too_few_photos_for_a_temperature_keep_one_fitted_for_the_same_weights(few_references, synthetic_data):
    model = models.build(config.Config(hidden=(16,)))
    photos, labels = framed(10)
    training = data.load().train_images[50:650], data.load().train_labels[50:650]
    for same in (None, 1.7):
        refitted, notes = trust.refit(
            trust.model_logits(model), photos, labels, data.load().train_images[:50], training, same_weights=same
        )
        assert refitted.temperature == same
        assert any(note.endswith("the parent's temperature stays, fitted for the same weights") for note in notes) == (
            same is not None
        )


def test_the_refitted_detector_draws_the_parents_reference_photos(parent, tmp_path, few_references, monkeypatch):
    root = tmp_path / "photos"
    labelled_folder(root, per_class=6)
    seeds = []
    drawn = trust.reference_photos
    monkeypatch.setattr(trust, "reference_photos", lambda *a, **k: seeds.append(a[2]) or drawn(*a, **k))
    adapt.adapt(parent, root, tmp_path / "adapted", dataclasses.replace(SMALL, seed=7), log=lambda _: None)
    assert seeds == [checkpoint.load_model(RunDir(parent).chosen_checkpoint(), "cpu")[1].seed]


def test_the_report_says_when_the_parents_weights_are_kept():
    side = adapt.Side(0.8, 0.9, 0.9)
    for alpha in (0.0, 0.5):
        mix, photos, trusted = adapt.Mix(alpha, 0.8, 0.9, 0.9), {"trained": 10, "held_out": 5}, {"calibrated": True}
        report = adapt.Report(Path("run"), {"path": "p", "sha256": "0"}, mix, side, side, photos, trusted, [], 1)
        assert ("the adapted run keeps the parent's weights" in report.text()) == (alpha == 0)


@pytest.mark.slow
def test_an_adapted_model_adapted_again_keeps_the_first_parents_split_and_draw(
    parent, tmp_path, few_references, monkeypatch
):
    root = tmp_path / "photos"
    labelled_folder(root, per_class=6)
    adapt.adapt(parent, root, tmp_path / "once", dataclasses.replace(SMALL, seed=7), log=lambda _: None)
    seeds = []
    drawn = trust.reference_photos
    monkeypatch.setattr(trust, "reference_photos", lambda *a, **k: seeds.append(a[2]) or drawn(*a, **k))
    adapt.adapt(tmp_path / "once", root, tmp_path / "twice", dataclasses.replace(SMALL, seed=3), log=lambda _: None)
    first = checkpoint.load_model(RunDir(parent).chosen_checkpoint(), "cpu")[1]
    again = checkpoint.load_model(RunDir(tmp_path / "twice").chosen_checkpoint(), "cpu")[1]
    labels = data.load().train_labels
    assert seeds == [first.seed] and again.seed == 3
    assert torch.equal(data.validation_split(labels, again)[1], data.validation_split(labels, first)[1])
    # Its held-out photos are none the first adaptation trained on: they are those it held out.
    manifests = [json.loads((tmp_path / run / "adapt.json").read_text())["photos"] for run in ("once", "twice")]
    trained = {p["sha256"] for p in manifests[0] if not p["held_out"]}
    held = {p["sha256"] for p in manifests[1] if p["held_out"]}
    assert held and not trained & held


@pytest.mark.slow
def test_init_from_holds_out_the_parents_split_whatever_its_seed(parent, tmp_path):
    lines: list[str] = []
    for val_size in (200, 300):
        cfg = config.Config(hidden=(32,), epochs=1, batch_size=32, val_size=val_size, seed=5, init_from=str(parent))
        training.fit(cfg, tmp_path / f"tuned{val_size}", data.load(), log=lines.append, progress=False)
    labels = data.load().train_labels
    first = config.Config(hidden=(32,), val_size=200)
    tuned = RunDir(tmp_path / "tuned200").read_config()
    assert tuned.seed == 5 and tuned.split_seed == 0
    assert torch.equal(data.validation_split(labels, tuned)[1], data.validation_split(labels, first)[1])
    assert [line for line in lines if line.startswith("note:")] == [
        f"note: 100 of the 300 validation images are images {parent} trained on (it held out 200 with split "
        "seed 0): the best epoch, the temperature and the detector are chosen on them"
    ]
    # The run keeps the number: its parent.json and summary.json say it, the run that held out no such image none.
    for val_size, seen in ((200, None), (300, 100)):
        run = RunDir(tmp_path / f"tuned{val_size}")
        assert (
            run.read_parent().get("validation_trained_on")
            == seen
            == run.read_summary()["parent"].get("validation_trained_on")
        )


@pytest.mark.slow
def test_a_fine_tune_restarts_with_the_split_seed_it_saved(parent, tmp_path, capsys):
    # The split seed is resolved when the command builds a new run's config, and a restart asks for what the run saved,
    # with no parent file needed (here it has moved).
    run_dir = tmp_path / "tuned"
    argv = ["train", "--init-from", str(parent), "--hidden", "32", "--epochs", "1", "--batch-size", "32"]
    argv += ["--val-size", "200", "--seed", "5", "--no-progress", "--resume", "auto", "--out", str(run_dir)]
    assert main(argv) == 0
    assert RunDir(run_dir).read_config().split_seed == 0
    (run_dir / "summary.json").unlink()  # as if killed after its last epoch's checkpoint
    parent.rename(tmp_path / "moved")
    assert main(argv) == 0, capsys.readouterr().err
    assert f"resuming {run_dir} after epoch 1" in capsys.readouterr().out
    (run_dir / "summary.json").unlink()  # a config file that asks for -1, as a study's best.toml does
    assert main(["train", "--resume", str(run_dir), "--split-seed", "-1", "--no-progress"]) == 0
    asked = config.Config(hidden=(32,), val_size=200, init_from=str(parent), split_seed=7)
    assert training.inherit_split(asked) is asked  # a split seed given is kept


@pytest.mark.slow
def test_a_comparison_of_fine_tunes_runs_again(parent, tmp_path):
    from fmnist.studies import compare

    base = {"hidden": "32", "epochs": "1", "batch_size": "32", "val_size": "200", "init_from": str(parent)}
    experiment = compare.build_experiment(base=base, seeds=[3], threshold=0.5)
    (result,) = compare.run_grid(experiment, tmp_path / "grid", data.load(), log=lambda _: None)
    parent.rename(tmp_path / "moved")  # the rerun reads the split seed its run saved
    (result,) = compare.run_grid(experiment, tmp_path / "grid", data.load(), log=lambda _: None)
    assert result.summary and RunDir(result.run.run_dir).read_config().split_seed == 0


@pytest.mark.slow
def test_adapt_reports_before_and_after_and_names_its_parent(parent, tmp_path, few_references):
    root = tmp_path / "photos"
    labelled_folder(root, per_class=6)
    lines: list[str] = []
    report = adapt.adapt(parent, root, tmp_path / "adapted", SMALL, log=lines.append)

    run = RunDir(tmp_path / "adapted")
    parent_file = RunDir(parent).chosen_checkpoint()
    assert report.parent == {"path": str(parent_file.resolve()), "sha256": checkpoint.sha256(parent_file)}
    assert json.loads(run.parent.read_text()) == report.parent
    assert run.read_summary()["parent"] == report.parent
    saved = json.loads((run.path / "adapt-report.json").read_text())
    assert saved["before"]["test_accuracy"] == report.before.test_accuracy
    assert report.photos == {"trained": 40, "held_out": 20}
    assert report.after.photos_accuracy is not None and report.after.photos_kept is not None
    assert report.before.photos_kept is None  # the parent was fitted without a detector
    assert (run.path / "before_after.png").stat().st_size > 0
    assert not report.trust["calibrated"] and any(line.startswith("uncalibrated:") for line in lines)
    assert checkpoint.load(run.chosen_checkpoint())[trust.KEY]["references"]  # the refitted detector is stored
    assert "parent" in report.text() and "held-out photos: accuracy" in report.text()
    mix = report.mix  # the interpolation kept is within the forgetting allowed on Fashion-MNIST validation
    assert mix.alpha in adapt.MIXES and mix.fashion_accuracy >= mix.parent_fashion_accuracy - SMALL.forgetting
    state = checkpoint.load(run.chosen_checkpoint())
    tuned, start = state[adapt.TUNED_KEY], checkpoint.load(parent_file)["model"]
    for name, weights in state["model"].items():
        assert torch.allclose(weights, torch.lerp(start[name], tuned[name], mix.alpha))
    assert run.read_summary()["weights"] == f"parent + {mix.alpha:g} x (fine-tuned - parent)"
    assert run.read_summary()["test_accuracy"] == pytest.approx(report.after.test_accuracy)
    held_x, held_y, _ = adapt.read_photos(root, SMALL.holdout, SMALL.seed).part(held_out=True)
    mixed = evaluate(checkpoint.load_model(run.chosen_checkpoint())[0], held_x, held_y)
    summary = run.read_summary()  # validation figures of the mixed weights on the held-out photos
    assert (summary["val_accuracy"], summary["val_loss"]) == pytest.approx((mixed.accuracy, mixed.loss))


def test_distillation_rehearses_the_parents_probabilities_and_the_photos_labels(tmp_path, synthetic_data):
    labelled_folder(tmp_path / "photos", per_class=4)
    photos = adapt.read_photos(tmp_path / "photos", holdout=0.3, seed=0)
    parent_cfg = config.Config(hidden=(8,), val_size=200)
    torch.manual_seed(0)
    parent = models.build(parent_cfg)
    recipe = adapt.Recipe(repeats=2, rehearsal=1.5, distill=True)
    plain = adapt.build_split(photos, data.load(), parent_cfg, recipe)
    distilled = adapt.build_split(photos, data.load(), parent_cfg, recipe, parent)
    shown = int((~photos.held_out).sum()) * recipe.repeats
    assert torch.equal(plain.train_x, distilled.train_x) and distilled.train_y.shape == (len(plain.train_y), 10)
    assert torch.equal(distilled.train_y[:shown].argmax(1), plain.train_y[:shown])
    assert torch.equal(distilled.train_y[:shown].amax(1), torch.ones(shown))  # one-hot
    memory = trust.model_logits(parent)(plain.train_x[shown:]).softmax(1)
    assert len(memory) == 3 * shown // 2 and torch.allclose(distilled.train_y[shown:], memory)


def test_the_photos_copies_are_shifted_once_and_the_memory_is_replayed_as_the_parent_learned_it(
    tmp_path, synthetic_data
):
    labelled_folder(tmp_path / "photos", per_class=4)
    photos = adapt.read_photos(tmp_path / "photos", holdout=0.3, seed=0)
    dataset, parent_cfg = data.load(), config.Config(hidden=(8,), val_size=200)
    recipe = adapt.Recipe(repeats=3, rehearsal=1.0, augment=("translate",))
    split = adapt.build_split(photos, dataset, parent_cfg, recipe)
    x, _, _ = photos.part(held_out=False)
    copies, memory = split.train_x[: 3 * len(x)].view(3, len(x), 28, 28), split.train_x[3 * len(x) :]
    assert torch.equal(copies[0], x)  # the photos themselves, then shifted copies
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    shifts = [padded[:, 2 + dy : 30 + dy, 2 + dx : 30 + dx] for dy in range(-2, 3) for dx in range(-2, 3)]
    for copy in copies[1:]:
        assert all(any(torch.equal(c, s[i]) for s in shifts) for i, c in enumerate(copy))
    assert not torch.equal(copies[1], copies[2])  # a draw of its own for each copy
    known = {bytes(image.numpy()) for image in dataset.train_images}
    assert len(memory) == 3 * len(x) and all(bytes(image.numpy()) in known for image in memory)
    assert torch.equal(adapt.build_split(photos, dataset, parent_cfg, recipe).train_x, split.train_x)  # seeded
    plain = adapt.build_split(photos, dataset, parent_cfg, adapt.Recipe(repeats=3, rehearsal=1.0, augment=()))
    assert torch.equal(plain.train_x[: 3 * len(x)], x.repeat(3, 1, 1))
    assert not adapt.adapted_config(parent_cfg, tmp_path / "p.pt", recipe).augment  # no batch augments the memory


def test_interpolate_goes_from_the_parent_to_the_fine_tuned_weights():
    parent = {"w": torch.zeros(3), "steps": torch.tensor(1)}
    tuned = {"w": torch.tensor([2.0, 4.0, -2.0]), "steps": torch.tensor(7)}
    assert torch.equal(adapt.interpolate(parent, tuned, 0.0)["w"], parent["w"])
    assert torch.equal(adapt.interpolate(parent, tuned, 1.0)["w"], tuned["w"])
    half = adapt.interpolate(parent, tuned, 0.5)
    assert torch.equal(half["w"], torch.tensor([1.0, 2.0, -1.0])) and int(half["steps"]) == 7


def test_the_mix_forgets_no_more_than_allowed_and_mixes_the_fine_tuned_weights_again_on_resume(tmp_path):
    """Fine-tuned weights right on every photo and far from the parent: the mix gains on the photos, keeps
    Fashion-MNIST within the forgetting allowed, and a second call (a resumed run) mixes the same weights."""
    torch.manual_seed(0)
    model = models.build(config.Config(hidden=(16,)))
    parent = {k: v.clone() for k, v in model.state_dict().items()}
    tuned = {k: v + 0.05 * torch.randn_like(v) for k, v in parent.items()}
    run = RunDir(tmp_path / "run")
    checkpoint.save(run.best, {"model": tuned})
    fashion_x, photos_x = torch.randint(0, 255, (2, 300, 28, 28), dtype=torch.uint8)
    model.load_state_dict(parent)
    fashion_y = trust.model_logits(model)(fashion_x).argmax(1)  # the parent is right on all of Fashion-MNIST
    model.load_state_dict(tuned)
    photos_y = trust.model_logits(model)(photos_x).argmax(1)  # the fine-tuned model on all the photos
    model.load_state_dict(parent)
    parent_on_photos = float((trust.model_logits(model)(photos_x).argmax(1) == photos_y).double().mean())

    recipe = adapt.Recipe(forgetting=0.35)
    first = adapt.choose_mix(model, parent, run, (photos_x, photos_y), (fashion_x, fashion_y), recipe)
    again = adapt.choose_mix(model, parent, run, (photos_x, photos_y), (fashion_x, fashion_y), recipe)

    assert first == again and first.parent_fashion_accuracy == 1.0 and first.fashion_accuracy >= 0.65
    assert first.photos_accuracy is not None and first.photos_accuracy > parent_on_photos
    assert 0 < first.alpha < 1  # the fine-tuned weights alone forget too much here
    state = checkpoint.load(run.best)
    assert all(torch.equal(state[adapt.TUNED_KEY][k], v) for k, v in tuned.items())
    assert all(torch.allclose(state["model"][k], torch.lerp(parent[k], tuned[k], first.alpha)) for k in tuned)
    assert adapt.choose_mix(model, parent, run, (photos_x, photos_y), (fashion_x, fashion_y), adapt.Recipe()).alpha < (
        first.alpha
    )  # half a point allowed instead of 35: closer to the parent


@pytest.mark.slow
def test_model_adapt_returns_the_new_run_with_its_before_and_after(parent, tmp_path, few_references):
    root = tmp_path / "photos"
    labelled_folder(root, per_class=4)
    model = fmnist.load(parent)
    run = model.adapt(root, out=tmp_path / "mine", epochs=1, repeats=1, rehearsal=1.0, distill=True)
    assert run.path == tmp_path / "mine" and len(run.metrics) == 1
    assert run.adaptation is not None
    assert run.adaptation["parent"]["sha256"] == checkpoint.sha256(RunDir(parent).chosen_checkpoint())
    assert run.adaptation["after"]["test_accuracy"] == pytest.approx(run.summary["test_accuracy"])
    assert fmnist.Run.read(parent).adaptation is None
    with pytest.raises(FmnistError, match="unknown adapt setting lr_max; see fmnist.config.AdaptRecipe"):
        model.adapt(root, out=tmp_path / "other", lr_max=1.0)
    with pytest.raises(FmnistError, match="an export cannot be fine-tuned"):
        api.Model(model.predictor, tmp_path / "model.onnx").adapt(root)
    with pytest.raises(FmnistError, match="epochs: expected an integer, got 2.5"):
        model.adapt(root, out=tmp_path / "other", epochs=2.5)
    # Inside the parent's run, the new run would mix its files with the parent's (run/checkpoints/best.pt...).
    before = sorted(p.name for p in (parent / "checkpoints").iterdir())
    with pytest.raises(FmnistError, match="inside the parent's run"):
        model.adapt(root, out=parent / "checkpoints")
    assert sorted(p.name for p in (parent / "checkpoints").iterdir()) == before
    assert not (tmp_path / "other").exists()


@pytest.mark.slow
def test_an_interrupted_adaptation_resumes_and_refuses_changed_photos(parent, tmp_path, few_references):
    root = tmp_path / "photos"
    labelled_folder(root, per_class=4)
    out = tmp_path / "adapted"

    def stop_after_first_epoch(line: str) -> None:
        if line.startswith("epoch   1/"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        adapt.adapt(parent, root, out, SMALL, log=stop_after_first_epoch)
    with pytest.raises(FmnistError, match="already holds a run"):
        adapt.adapt(parent, root, out, SMALL)

    extra = root / "coats" / "new.jpg"
    extra.write_bytes(next((root / "coats").iterdir()).read_bytes() + b"\0")  # another file, the same picture
    with pytest.raises(FmnistError, match=r"new.jpg: added since this run started, with 0 more; start a new run"):
        adapt.adapt(None, None, out, resume=True)
    extra.unlink()

    lines: list[str] = []
    report = adapt.adapt(None, None, out, resume=True, log=lines.append)
    assert any(line.startswith(f"resuming {out} after epoch 1") for line in lines)
    assert [row["epoch"] for row in RunDir(out).read_history()] == [1, 2]
    assert report.after.test_accuracy > 0


@pytest.mark.slow
def test_init_from_starts_at_the_parent_and_freeze_keeps_its_layers(parent, tmp_path):
    cfg = config.Config(hidden=(32,), epochs=1, batch_size=32, val_size=200, init_from=str(parent), freeze=1)
    result = training.fit(cfg, tmp_path / "tuned", data.load(), log=lambda _: None, progress=False)
    start = checkpoint.load(RunDir(parent).chosen_checkpoint())["model"]
    tuned = result.model.state_dict()
    assert torch.equal(tuned["1.weight"], start["1.weight"]) and torch.equal(tuned["1.bias"], start["1.bias"])
    assert not torch.equal(tuned["3.weight"], start["3.weight"])
    assert json.loads(RunDir(tmp_path / "tuned").parent.read_text())["sha256"] == checkpoint.sha256(
        RunDir(parent).chosen_checkpoint()
    )


@pytest.mark.slow
def test_init_from_another_architecture_is_one_line(parent, tmp_path):
    cfg = config.Config(hidden=(64,), epochs=1, val_size=200, init_from=str(parent))
    with pytest.raises(FmnistError, match=r"its mlp hidden=32 does not fit this run's mlp hidden=64"):
        training.fit(cfg, tmp_path / "tuned", data.load(), log=lambda _: None, progress=False)


def test_an_adaptation_that_would_freeze_the_output_layer_leaves_no_run(parent, tmp_path):
    root = tmp_path / "photos"
    labelled_folder(root, per_class=4)
    with pytest.raises(FmnistError, match="freeze 9: this model has 2 weight layers"):
        adapt.adapt(parent, root, tmp_path / "run", adapt.Recipe(freeze=9))
    assert not (tmp_path / "run").exists()  # so the same --out takes a recipe that can run


def test_freezing_the_output_layer_is_refused():
    model = models.build(config.Config(hidden=(8, 8)))
    with pytest.raises(FmnistError, match="freeze 3: this model has 3 weight layers"):
        models.freeze(model, 3)
    models.freeze(model, 2)
    assert [p.requires_grad for p in model.parameters()] == [False] * 4 + [True] * 2


@pytest.mark.parametrize(
    "args, message",
    [
        (["adapt", "run", "--out", "new"], "a new adaptation needs a parent model and a folder of photos (--images)"),
        (["adapt", "run", "--resume", "x"], "--resume continues a run with its own parent"),
        (["adapt", "--resume", "x", "--epochs", "5"], "its own parent, photos, directory and recipe; drop the others"),
        (["adapt", "--resume", "nowhere"], "nowhere: no such directory; nothing to resume"),
        (["adapt", "--resume", "."], ".: not an adaptation run (no adapt.json); nothing to resume"),
        (["adapt", "missing.pt", "--images", "."], "missing.pt: cannot read it"),
        (["adapt", "run", "--images", ".", "--augment", "translate,tilt"], "unknown augmentation 'tilt'; choose from"),
        (["adapt", "run", "--images", ".", "--rehearsal", "-1"], "rehearsal must be >= 0, got -1.0"),
        (["adapt", "run", "--images", ".", "--seed", "-5"], "seed must be >= 0, got -5"),
        (["adapt", "model.onnx", "--images", "."], "model.onnx: an export cannot be fine-tuned; adapt the checkpoint"),
        (["train", "--init-from", "model.onnx", "--val-size", "100", "--out", "new"], "an export cannot be trained on"),
    ],
)
def test_adapt_mistakes_are_one_line(args, message, synthetic_data, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err


def test_a_recipe_takes_each_value_in_its_type_or_says_which_is_wrong():
    recipe = adapt.Recipe(epochs=np.int64(3), lr="1e-3", augment="translate, flip", distill=np.False_)  # type: ignore[arg-type]
    assert (recipe.epochs, recipe.lr, recipe.augment, recipe.distill) == (3, 1e-3, ("translate", "flip"), False)
    assert type(recipe.epochs) is int and type(recipe.lr) is float
    for bad, says in (
        ({"lr": "fast"}, "lr: expected a number, got 'fast'"),
        ({"epochs": "5.5"}, "epochs: expected an integer, got '5.5'"),
        ({"freeze": None}, "freeze: expected an integer, got None"),
        ({"epochs": np.float32(2.5)}, "epochs: expected an integer, got"),  # not 2
        ({"repeats": np.True_}, "repeats: expected an integer, got"),
        ({"augment": "fl1p"}, "unknown augmentation 'fl1p'"),
    ):
        with pytest.raises(FmnistError, match=re.escape(says)):
            adapt.Recipe(**bad)
