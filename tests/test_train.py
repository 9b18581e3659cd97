import collections
import itertools
import json
import math
import tempfile
import time
from pathlib import Path

import pytest
import torch
from support import PlotRecorder, interrupted_after_first_epoch

from fmnist import checkpoint, data, monitor, training
from fmnist import config as config_lib
from fmnist.config import Config
from fmnist.errors import FmnistError
from fmnist.evaluate import evaluate
from fmnist.records import EpochRow, Summary
from fmnist.run_dir import model_path

SMALL = dict(hidden=(64,), epochs=2, batch_size=32, eval_batch_size=256, val_size=0)
TIMINGS = ("epoch_seconds", "ms_per_batch", "images_per_second")


def quiet(_msg):
    pass


def fit(cfg, run_dir, **kwargs):
    return training.fit(cfg, run_dir, data.load(), log=quiet, progress=False, **kwargs)


def without_timings(history):
    return [{k: v for k, v in row.items() if k not in TIMINGS} for row in history]


@pytest.mark.parametrize("schedule", ["none", "step", "cosine", "onecycle"])
def test_lr_factor_shapes(schedule):
    cfg = Config(epochs=10, schedule=schedule, step_epochs=4, gamma=0.5)
    steps = 100
    f = [training.lr_factor(cfg, s, steps) for s in range(10 * steps)]
    assert max(f) <= 1.0 + 1e-9
    if schedule == "none":
        assert set(f) == {1.0}
    if schedule == "cosine":
        assert f[0] == 1.0 and f[-1] < 1e-4 and all(a >= b for a, b in itertools.pairwise(f))
    if schedule == "step":
        assert f[399] == 1.0 and f[400] == 0.5 and f[800] == 0.25
    if schedule == "onecycle":
        peak = f.index(max(f))
        assert f[0] == pytest.approx(1 / 25, rel=0.1) and 250 <= peak <= 310 and f[-1] < 1e-4


@pytest.mark.parametrize("schedule", ["cosine", "onecycle"])
def test_lr_factor_stays_at_its_floor_past_the_last_step(schedule):
    cfg = Config(epochs=2, schedule=schedule)
    last = training.lr_factor(cfg, 2 * 100 - 1, 100)
    beyond = [training.lr_factor(cfg, s, 100) for s in range(200, 600)]
    assert last < 1e-3 and max(beyond) <= last


def test_warmup_rises_linearly_to_the_peak():
    cfg = Config(epochs=5, warmup_epochs=1)
    f = [training.lr_factor(cfg, s, 10) for s in range(12)]
    assert f[:10] == pytest.approx([(s + 1) / 10 for s in range(10)])
    assert f[10] == pytest.approx(1.0)


@pytest.mark.parametrize(
    "cfg, kind",
    [
        (Config(optimizer="sgd", momentum=0.9, nesterov=True), torch.optim.SGD),
        (Config(optimizer="adam"), torch.optim.Adam),
        (Config(optimizer="adamw", weight_decay=0.05), torch.optim.AdamW),
    ],
)
def test_build_optimizer(cfg, kind):
    opt = training.build_optimizer(torch.nn.Linear(3, 2), cfg)
    assert type(opt) is kind
    group = opt.param_groups[0]
    assert group["lr"] == cfg.lr and group["weight_decay"] == cfg.weight_decay
    if cfg.optimizer == "sgd":
        assert group["momentum"] == 0.9 and group["nesterov"]


@pytest.mark.slow
def test_fit_learns_and_writes_a_self_describing_run(synthetic_data, tmp_path):
    run = tmp_path / "run"
    result = fit(Config(**SMALL, test_curve=True), run)
    assert result.summary["test_accuracy"] > 0.9
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2]
    assert set(rows[0]) == EpochRow.__required_keys__ | {"test_loss", "test_acc"}  # no validation split: no val_*
    summary = json.loads((run / "summary.json").read_text())
    assert Summary.__required_keys__ <= set(summary) <= Summary.__required_keys__ | Summary.__optional_keys__
    assert summary["test_accuracy"] == rows[-1]["test_acc"] and summary["chosen_by"] == "last epoch"
    state = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert state["epoch"] == 2 and state["config"]["hidden"] == [64]
    assert any((run / "tensorboard").iterdir())
    assert (run / "config.toml").read_text().count("hidden = [") == 1


@pytest.mark.slow
def test_same_seed_same_metrics_other_seed_differs(synthetic_data, tmp_path):
    cfg = Config(**{**SMALL, "epochs": 1})
    a = fit(cfg, tmp_path / "a").history
    b = fit(cfg, tmp_path / "b").history
    c = fit(cfg.replace(seed=1), tmp_path / "c").history
    assert without_timings(a) == without_timings(b)
    assert without_timings(a) != without_timings(c)


@pytest.mark.parametrize("augment", [(), ("flip", "crop")])
@pytest.mark.slow
def test_resume_after_interrupt_matches_an_uninterrupted_run(synthetic_data, tmp_path, augment):
    cfg = Config(**{**SMALL, "epochs": 3}, dropout=0.2, augment=augment)
    straight = fit(cfg, tmp_path / "straight").history

    def stop_after_first_epoch(msg):
        if msg.startswith("epoch   1/"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        training.fit(cfg, tmp_path / "cut", data.load(), log=stop_after_first_epoch, progress=False)
    assert torch.load(tmp_path / "cut" / "checkpoints" / "last.pt", weights_only=True)["epoch"] == 1
    resumed = fit(cfg, tmp_path / "cut", resume=True).history
    assert without_timings(resumed) == without_timings(straight)


@pytest.mark.slow
def test_cnn_with_bf16_and_channels_last_trains_and_resumes_exactly(synthetic_data, tmp_path):
    cfg = Config(
        model="cnn",
        val_size=0,
        hidden=(8, 16),
        batch_norm=True,
        amp="bf16",
        epochs=2,
        batch_size=32,
        eval_batch_size=256,
        lr=0.05,
    )
    straight = fit(cfg, tmp_path / "straight")
    assert straight.summary["test_accuracy"] > 0.5  # ten classes: chance is 0.1
    conv = next(m for m in straight.model if isinstance(m, torch.nn.Conv2d) and m.in_channels > 1)
    assert conv.weight.is_contiguous(memory_format=torch.channels_last) and not conv.weight.is_contiguous()

    def stop_after_first_epoch(msg):
        if msg.startswith("epoch   1/"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        training.fit(cfg, tmp_path / "cut", data.load(), log=stop_after_first_epoch, progress=False)
    resumed = fit(cfg, tmp_path / "cut", resume=True)
    assert without_timings(resumed.history) == without_timings(straight.history)


@pytest.mark.slow
def test_wall_seconds_cover_every_process_of_a_resumed_run(synthetic_data, tmp_path, monkeypatch):
    cfg = Config(**SMALL)
    real_epoch = training.train_one_epoch

    def slow_first_epoch(*args):
        if args[8] == 1:  # the epoch number
            time.sleep(1.5)
        return real_epoch(*args)

    def stop_after_first_epoch(msg):
        if msg.startswith("epoch   1/"):
            raise KeyboardInterrupt

    monkeypatch.setattr(training, "train_one_epoch", slow_first_epoch)
    with pytest.raises(KeyboardInterrupt):
        training.fit(cfg, tmp_path / "run", data.load(), log=stop_after_first_epoch, progress=False)
    resumed = fit(cfg, tmp_path / "run", resume=True)
    assert resumed.summary["wall_seconds"] > 1.5  # the first process's slow epoch counts
    written = (tmp_path / "run" / "summary.json").read_bytes()
    again = fit(cfg, tmp_path / "run", resume=True)  # a finished run: nothing to train
    assert (tmp_path / "run" / "summary.json").read_bytes() == written
    assert again.summary == resumed.summary


@pytest.mark.slow
def test_validation_split_chooses_the_best_checkpoint(synthetic_data, tmp_path):
    run = tmp_path / "run"
    result = fit(Config(**{**SMALL, "val_size": 200}), run)
    # ema_*: only with --ema-decay; test_*: only with --test-curve
    others = {key for key in EpochRow.__optional_keys__ if key.startswith(("ema_", "test_"))}
    assert set(result.history[0]) == EpochRow.__required_keys__ | EpochRow.__optional_keys__ - others
    best_epoch = max(result.history, key=lambda r: r["val_acc"])["epoch"]
    assert result.summary["chosen_epoch"] == best_epoch
    assert result.summary["chosen_by"] == "best validation accuracy"
    assert torch.load(run / "checkpoints" / "best.pt", weights_only=True)["epoch"] == best_epoch


@pytest.mark.slow
def test_existing_run_is_never_overwritten(synthetic_data, tmp_path):
    run = tmp_path / "run"
    fit(Config(**{**SMALL, "epochs": 1}), run)
    before = (run / "checkpoints" / "last.pt").read_bytes()
    with pytest.raises(FmnistError, match="already holds a run"):
        fit(Config(**{**SMALL, "epochs": 1}), run)
    assert (run / "checkpoints" / "last.pt").read_bytes() == before


def test_non_finite_loss_stops_with_epoch_and_step(synthetic_data, tmp_path):
    cfg = Config(**SMALL, optimizer="sgd", lr=1e6, schedule="none")
    with pytest.raises(training.NonFiniteLoss, match=r"non-finite loss at epoch 1, step \d+"):
        fit(cfg, tmp_path / "run")


@pytest.mark.slow
def test_checkpoint_round_trip_gives_the_same_predictions(synthetic_data, tmp_path):
    result = fit(Config(**{**SMALL, "epochs": 1}), tmp_path / "run")
    model, cfg, state = checkpoint.load_model(model_path(tmp_path / "run"))
    x = data.as_input(data.load().test_images[:50])
    assert torch.equal(model(x), result.model.eval()(x))
    assert cfg == Config(**{**SMALL, "epochs": 1}) and state["epoch"] == 1
    # Without --test-curve the test set is evaluated once, on the chosen weights, for the summary.
    assert "test_acc" not in state["history"][-1]
    test = evaluate(model, data.load().test_images, data.load().test_labels, batch_size=256)  # as SMALL evaluates
    assert result.summary["test_accuracy"] == test.accuracy and result.summary["test_loss"] == pytest.approx(test.loss)


@pytest.mark.slow
def test_on_nan_skip_keeps_training(synthetic_data, tmp_path, monkeypatch):
    poisoned = {"left": 3}
    real_ce = training.F.cross_entropy

    def sometimes_nan(logits, y, **kwargs):
        loss = real_ce(logits, y, **kwargs)
        if poisoned["left"]:
            poisoned["left"] -= 1
            return loss * float("nan")
        return loss

    monkeypatch.setattr(training.F, "cross_entropy", sometimes_nan)
    messages = []
    cfg = Config(**SMALL, on_nan="skip")
    result = training.fit(cfg, tmp_path / "run", data.load(), log=messages.append, progress=False)
    assert "epoch 1: skipped 3 batches with a non-finite loss (--on-nan skip)" in messages
    assert math.isfinite(result.history[0]["train_loss"]) and result.summary["test_accuracy"] > 0.9
    poisoned["left"] = 1
    with pytest.raises(training.NonFiniteLoss, match="epoch 1, step 1 "):
        fit(Config(**SMALL), tmp_path / "stop")


@pytest.mark.parametrize("amp, dtype", [("none", torch.float32), ("bf16", torch.bfloat16)])
@pytest.mark.slow
def test_amp_runs_the_training_forward_in_bf16_and_evaluation_in_fp32(
    synthetic_data, tmp_path, monkeypatch, amp, dtype
):
    seen = {"train": set(), "eval": set()}
    real_forward = torch.nn.Linear.forward

    def recording_forward(self, x):
        out = real_forward(self, x)
        seen["train" if self.training else "eval"].add(out.dtype)
        return out

    monkeypatch.setattr(torch.nn.Linear, "forward", recording_forward)
    result = fit(Config(**SMALL, amp=amp), tmp_path / "run")
    assert seen == {"train": {dtype}, "eval": {torch.float32}}
    assert result.summary["test_accuracy"] > 0.9


def edit_checkpoint(path, change):
    state = torch.load(path, weights_only=True)
    change(state)
    torch.save(state, path)


@pytest.mark.slow
def test_a_run_saved_on_cuda_resumes_with_device_cpu(synthetic_data, tmp_path, capsys):
    """The device is where a run trains, not what it is: a CUDA run continues on the CPU, whose
    generators cannot take a CUDA generator's state, so augmentation draws afresh from there."""
    from fmnist.cli import main

    run = tmp_path / "run"
    interrupted_after_first_epoch(Config(**SMALL, augment=("flip",), device="cpu"), run)

    def as_if_saved_on_cuda(state):
        state["config"]["device"] = "cuda"
        # what torch.cuda's Philox generators save: 16 bytes, seed and offset
        state["rng"] = [
            {
                **state["rng"][0],
                "device": "cuda",
                "augment": torch.zeros(16, dtype=torch.uint8),
                "cuda": torch.zeros(16, dtype=torch.uint8),
            }
        ]

    edit_checkpoint(run / "checkpoints" / "last.pt", as_if_saved_on_cuda)
    (run / "config.toml").write_text((run / "config.toml").read_text().replace('device = "cpu"', 'device = "cuda"'))
    assert main(["train", "--resume", str(run), "--device", "cpu", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "saved by 1 process(es) on cuda, resumed by 1 on cpu" in out and "test accuracy" in out
    summary = json.loads((run / "summary.json").read_text())
    assert summary["device"] == "cpu" and summary["epochs"] == 2


@pytest.mark.slow
def test_checkpoints_from_before_per_rank_states_resume_exactly(synthetic_data, tmp_path):
    cfg = Config(**SMALL, dropout=0.2, augment=("crop",))
    straight = fit(cfg, tmp_path / "straight").history
    interrupted_after_first_epoch(cfg, tmp_path / "cut")

    def one_dict_without_device(state):  # the layout fit() wrote before
        state["rng"] = {k: v for k, v in state["rng"][0].items() if k != "device"}

    edit_checkpoint(tmp_path / "cut" / "checkpoints" / "last.pt", one_dict_without_device)
    resumed = fit(cfg, tmp_path / "cut", resume=True).history
    assert without_timings(resumed) == without_timings(straight)


@pytest.mark.slow
def test_compile_option_compiles_the_training_forward_only(synthetic_data, tmp_path, monkeypatch):
    compiled = []

    def fake_compile(model, mode):  # inductor needs seconds per graph; this checks the wiring
        compiled.append((type(model).__name__, mode))
        return model

    monkeypatch.setattr(torch, "compile", fake_compile)
    fit(Config(**{**SMALL, "epochs": 1}, compile="reduce-overhead"), tmp_path / "run")
    assert compiled == [("Sequential", "reduce-overhead")]
    fit(Config(**{**SMALL, "epochs": 1}), tmp_path / "plain")
    assert len(compiled) == 1


@pytest.mark.slow
def test_ema_is_evaluated_chosen_on_validation_and_resumes_exactly(synthetic_data, tmp_path):
    cfg = Config(**{**SMALL, "val_size": 200}, ema_decay=0.9, dropout=0.2, augment=("flip",))
    straight = fit(cfg, tmp_path / "straight")
    for row in straight.history:
        assert {"ema_val_acc", "ema_val_loss"} <= set(row) and "ema_test_acc" not in row  # test: only the chosen
    chosen, weights = monitor.choose(straight.history)
    assert straight.summary["weights"] == weights and straight.summary["chosen_epoch"] == chosen["epoch"]
    assert straight.summary["val_accuracy"] == max(max(r["val_acc"], r["ema_val_acc"]) for r in straight.history)
    best = torch.load(tmp_path / "straight" / "checkpoints" / "best.pt", weights_only=True)
    assert best["weights"] == weights
    # best.pt's "model" holds the chosen weights: what eval, export and serve load
    expected = best["ema"] if weights == "ema" else best["model"]
    model, _, _ = checkpoint.load_model(model_path(tmp_path / "straight"))
    x = data.as_input(data.load().test_images[:50])
    if weights == "ema":
        reference = {k.removeprefix("module."): v for k, v in expected.items() if k != "n_averaged"}
        assert all(torch.equal(model.state_dict()[k], v) for k, v in reference.items())
    assert torch.equal(model(x), straight.model.eval()(x))

    interrupted_after_first_epoch(cfg, tmp_path / "cut")
    resumed = fit(cfg, tmp_path / "cut", resume=True)
    assert without_timings(resumed.history) == without_timings(straight.history)  # EMA metrics included
    last = torch.load(tmp_path / "cut" / "checkpoints" / "last.pt", weights_only=True)
    assert all(
        torch.equal(v, best_v)
        for v, best_v in zip(
            last["ema"].values(),
            torch.load(tmp_path / "straight" / "checkpoints" / "last.pt", weights_only=True)["ema"].values(),
            strict=True,
        )
    )


@pytest.mark.slow
def test_early_stopping_stops_on_a_plateau_and_stays_stopped(synthetic_data, tmp_path, monkeypatch):
    # Validation accuracy frozen at one value: a plateau from the first epoch.
    real_evaluate = training.evaluate

    def flat(model, images, labels, batch_size):
        result = real_evaluate(model, images, labels, batch_size)
        if len(images) == 200:
            result.accuracy = 0.5
        return result

    monkeypatch.setattr(training, "evaluate", flat)
    cfg = Config(**{**SMALL, "epochs": 6, "val_size": 200}, patience=2)
    result = fit(cfg, tmp_path / "run")
    assert len(result.history) == 3  # the best epoch, then 2 without a gain
    assert result.summary["epochs"] == 3 and "early stopping" in result.summary["stopped"]
    again = fit(cfg, tmp_path / "run", resume=True)  # a stopped run trains no further
    assert len(again.history) == 3


@pytest.mark.slow
def test_time_budget_stops_at_an_epoch_boundary_with_a_valid_checkpoint(synthetic_data, tmp_path, monkeypatch):
    real_epoch = training.train_one_epoch

    def slow_epoch(*args):
        time.sleep(0.5)
        return real_epoch(*args)

    monkeypatch.setattr(training, "train_one_epoch", slow_epoch)
    cfg = Config(**{**SMALL, "epochs": 6}, max_time=1.2)
    result = fit(cfg, tmp_path / "run")
    assert 1 <= len(result.history) < 6
    assert "time budget" in result.summary["stopped"] and "planned 6 epochs" in result.summary["stopped"]
    model, _, state = checkpoint.load_model(model_path(tmp_path / "run"))
    assert state["epoch"] == len(result.history)
    # max_time may change on --resume: without a budget the run goes on to its planned epochs
    more = fit(cfg.replace(max_time=0.0), tmp_path / "run", resume=True)
    assert len(more.history) == 6 and "stopped" not in more.summary


def test_accumulated_gradients_match_one_large_batch():
    torch.manual_seed(0)
    images = torch.randint(0, 256, (120, 28, 28), dtype=torch.uint8)
    labels = torch.randint(0, 10, (120,))
    order = torch.randperm(120)
    weights = []
    for batch, accumulate in ((40, 1), (10, 4), (10, 1)):
        cfg = Config(hidden=(32,), batch_size=batch, accumulate=accumulate, optimizer="sgd", lr=0.1, epochs=1)
        st = training.build_step_state(cfg, torch.device("cpu"), 3)
        training.train_one_epoch(st.model, st.optimizer, st.scheduler, images, labels, order, cfg, st.aug_generator)
        weights.append(torch.cat([p.detach().flatten() for p in st.model.parameters()]))
        assert st.scheduler.last_epoch == 120 // (batch * accumulate)  # optimizer steps, not batches
    assert torch.allclose(weights[0], weights[1], atol=1e-6)
    assert not torch.allclose(weights[0], weights[2], atol=1e-3)  # small batches without accumulation differ


def test_an_accumulation_group_cut_short_by_the_epoch_weighs_its_own_images():
    """20 images in batches of 10, 4 per step: the epoch ends the group after 2 batches, and its step is
    that of one batch of those 20 images."""
    torch.manual_seed(0)
    images = torch.randint(0, 256, (20, 28, 28), dtype=torch.uint8)
    labels = torch.randint(0, 10, (20,))
    order = torch.arange(20)
    weights = []
    for batch, accumulate in ((20, 1), (10, 4)):
        cfg = Config(hidden=(32,), batch_size=batch, accumulate=accumulate, optimizer="sgd", lr=0.1, epochs=1)
        st = training.build_step_state(cfg, torch.device("cpu"), 1)
        training.train_one_epoch(st.model, st.optimizer, st.scheduler, images, labels, order, cfg, st.aug_generator)
        weights.append(torch.cat([p.detach().flatten() for p in st.model.parameters()]))
        assert st.scheduler.last_epoch == 1
    assert torch.allclose(weights[0], weights[1], atol=1e-6)


@pytest.mark.slow
def test_mixup_and_cutmix_train(synthetic_data, tmp_path):
    result = fit(Config(**SMALL, mixup_alpha=0.4, cutmix_alpha=1.0), tmp_path / "run")
    assert result.summary["test_accuracy"] > 0.5  # ten classes: chance is 0.1


def test_best_checkpoint_holds_the_ema_weights_when_they_win_on_validation():
    model = torch.nn.Linear(3, 2)
    ema = training.ModelEma(model, 0.5)
    ema.update(model)
    with torch.no_grad():
        model.weight.add_(1.0)
    ema.update(model)  # the EMA now lags the raw weights
    state = {"model": model.state_dict(), "epoch": 1}
    row = {"epoch": 1, "val_acc": 0.80, "ema_val_acc": 0.82}
    best = training.best_state(state, row, ema)
    assert best["weights"] == "ema" and torch.equal(best["model"]["weight"], ema.module.weight)
    assert not torch.equal(best["model"]["weight"], model.weight)
    raw = training.best_state(state, {**row, "ema_val_acc": 0.79}, ema)
    assert raw["weights"] == "raw" and raw["model"] is state["model"]


# ---------------------------------------------------------------- any accepted config on any data size


@pytest.mark.parametrize(
    "n, batch", [(1, 64), (63, 64), (64, 64), (65, 64), (129, 64), (2049, 64), (55000, 63), (7, 1), (7, 2), (5, 3)]
)
def test_batch_plan_merges_a_remainder_into_the_batch_before_it(n, batch):
    plan = training.batch_plan(n, batch)
    assert plan[0][0] == 0 and plan[-1][1] == n
    assert all(stop == start for (_, stop), (start, _) in itertools.pairwise(plan))  # contiguous, no overlap
    assert len(plan) == max(1, n // batch)
    sizes = [stop - start for start, stop in plan]
    assert min(sizes) >= min(n, batch) and max(sizes) < 2 * batch


@pytest.mark.parametrize(
    "warmup_epochs, schedule, epochs, steps",
    [
        (0.01, "cosine", 5, 50),  # half a warmup step
        (0.3, "none", 1, 1),  # warmup shorter than the only step
        (0.0, "onecycle", 1, 1),  # the one-cycle rise over 30% of a 1-step run
        (0.0, "onecycle", 2, 1),
        (0.5, "step", 1, 1),
    ],
)
def test_the_lr_never_exceeds_its_peak_however_few_the_steps(warmup_epochs, schedule, epochs, steps):
    cfg = Config(epochs=epochs, warmup_epochs=warmup_epochs, schedule=schedule, step_epochs=1)
    factors = [training.lr_factor(cfg, s, steps) for s in range(epochs * steps)]
    assert all(0 < f <= 1.0 + 1e-12 for f in factors), factors


@pytest.mark.slow
def test_batch_norm_trains_through_a_one_image_last_batch(synthetic_data, tmp_path):
    # 129 = 2 x 64 + 1: the last batch of one image fails in batch norm's training mode unless merged
    for model in ("mlp", "cnn"):
        cfg = Config(
            model=model,
            val_size=0,
            hidden=(8,),
            head=4,
            batch_norm=True,
            train_subset=129,
            batch_size=64,
            epochs=1,
            eval_batch_size=300,
        )
        result = fit(cfg, tmp_path / model)
        assert result.summary["epochs"] == 1 and (tmp_path / model / "checkpoints" / "last.pt").exists()


@pytest.mark.parametrize(
    "values, message",
    [
        (dict(batch_norm=True, train_subset=1), "batch norm needs at least 2 images per batch"),
        (dict(batch_norm=True, batch_size=1), "batch norm needs at least 2 images per batch"),
        (dict(batch_norm=True, val_size=999), "batch norm needs at least 2 images per batch"),
    ],
)
def test_a_config_that_cannot_train_on_this_data_is_refused_before_any_work(synthetic_data, tmp_path, values, message):
    with pytest.raises(FmnistError, match=message):
        fit(Config(**{"hidden": (8,), "epochs": 1, "val_size": 0, **values}), tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_an_unexpected_failure_mid_run_is_one_line_and_keeps_the_last_checkpoint(synthetic_data, tmp_path, monkeypatch):
    real_epoch = training.train_one_epoch

    def fails_in_epoch_two(*args):
        if args[8] == 2:  # the epoch number
            raise RuntimeError("\x1b[1mboom\x1b[0m\nsecond line")
        return real_epoch(*args)

    monkeypatch.setattr(training, "train_one_epoch", fails_in_epoch_two)
    run = tmp_path / "run"
    with pytest.raises(training.TrainingFailed) as caught:
        fit(Config(**SMALL), run)
    message = str(caught.value)
    assert "\n" not in message and "during epoch 2: RuntimeError:" in message
    assert f"the checkpoint of epoch 1 is kept (continue with: fmnist train --resume {run})" in message
    assert "Traceback" in (run / "error.log").read_text() and "fails_in_epoch_two" in (run / "error.log").read_text()
    assert checkpoint.load(run / "checkpoints" / "last.pt")["epoch"] == 1
    assert isinstance(caught.value.__cause__, RuntimeError)  # chained: the traceback is not lost


def _option_space():
    """Every option that shapes batches or the model, over values the config validation accepts or refuses."""
    from hypothesis import strategies as st

    return st.fixed_dictionaries(
        {
            "model": st.sampled_from(["mlp", "cnn"]),
            "hidden": st.lists(st.sampled_from([2, 3]), min_size=1, max_size=4).map(tuple),
            "convs": st.sampled_from([1, 2]),
            "head": st.sampled_from([0, 3]),
            "batch_norm": st.booleans(),
            "dropout": st.sampled_from([0.0, 0.5]),
            "batch_size": st.integers(1, 70),
            "schedule": st.sampled_from(["none", "step", "cosine", "onecycle"]),
            "warmup_epochs": st.sampled_from([0.0, 0.01, 0.5]),
            "optimizer": st.sampled_from(["sgd", "adam", "adamw"]),
            "augment": st.sampled_from([(), ("crop", "erase"), ("flip",)]),
            "on_nan": st.sampled_from(["stop", "stop", "skip"]),
            # training-set sizes: a subset, or what a validation split leaves of the 1000 synthetic images
            "size": st.sampled_from(
                [("train_subset", n) for n in (1, 2, 3, 5, 17, 33, 65, 129)]
                + [("val_size", v) for v in (999, 998, 997, 990, 1000)]
            ),
            "val_size": st.sampled_from([0, 1, 9, 30]),
            "processes": st.sampled_from([1, 2, 3, 4]),
            "last_rank": st.booleans(),
            "divisible": st.sampled_from([True, True, False]),  # batch_size rounded up to a multiple of the processes
        }
    )


def _train_as_one_rank(values: dict, tmp_path, monkeypatch) -> str:
    """fit() as rank 0 or the last rank of `processes` (a world without a process group: the same
    shard, local batch and batch plan as under torchrun, with collectives of one), on 1 epoch. It
    trains, or is refused with FmnistError before anything is written. Rank 0 asks for the run's plots,
    the other ranks do not: the test records them (record_plots) instead of drawing dozens of one-epoch
    runs' plots of the same synthetic test set."""
    from fmnist import distributed, plots

    values = dict(values)
    processes, last_rank = values.pop("processes"), values.pop("last_rank")
    if values.pop("divisible", True):
        values["batch_size"] = -(-values["batch_size"] // processes) * processes
    kind, size = values.pop("size")
    if kind == "val_size":
        values["val_size"] = size
    else:
        values["train_subset"] = size
    try:
        cfg = config_lib.from_dict({"epochs": 1, "eval_batch_size": 500, **values})
    except FmnistError:
        return "invalid"  # refused by the config validation: nothing to train
    rank = processes - 1 if last_rank else 0
    monkeypatch.setattr(distributed, "world", lambda: distributed.World(rank=rank, size=processes))
    run = Path(tempfile.mkdtemp(dir=tmp_path)) / "run"
    train_images = (1000 - cfg.val_size) if not cfg.train_subset else cfg.train_subset
    shard, local = train_images // processes, cfg.batch_size // processes
    trainable = (
        cfg.val_size < 1000
        and cfg.train_subset < 1000 - cfg.val_size
        and shard >= 1
        and cfg.batch_size % processes == 0
        and not (cfg.on_nan == "skip" and processes > 1)
        and not (cfg.batch_norm and min(shard, local) < 2)
    )
    recorder = plots.write_run_plots
    assert isinstance(recorder, PlotRecorder)  # the test's record_plots
    recorder.requests.clear()
    try:
        result = training.fit(cfg, run, data.load(), log=quiet, progress=False)
    except FmnistError as e:
        assert not trainable, f"refused a trainable config: {e}"
        assert "\n" not in str(e) and not run.exists()  # one line, before any work
        return "refused"
    assert trainable, "trained a config that the oracle says cannot train"
    if rank == 0:
        assert result.summary is not None and result.summary["epochs"] == 1
        assert checkpoint.load(run / "checkpoints" / "last.pt")["epoch"] == 1
        assert recorder.requests == [(run, 1, len(data.load().test_labels))]
    else:
        assert result.summary is None and not recorder.requests
    return "trained"


@pytest.mark.slow
def test_every_accepted_option_combination_trains_one_epoch_on_odd_sizes_and_ranks(
    synthetic_data, tmp_path, monkeypatch, one_thread, record_plots
):
    from hypothesis import HealthCheck, given, settings

    @settings(
        max_examples=40,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(_option_space())
    def check(values):
        outcomes[_train_as_one_rank(values, tmp_path, monkeypatch)] += 1

    outcomes: collections.Counter = collections.Counter()
    check()
    assert outcomes["trained"] >= 10 and outcomes["refused"] >= 3, outcomes


@pytest.mark.slow
def test_tunes_search_space_trains_one_epoch_on_odd_sizes(
    synthetic_data, tmp_path, monkeypatch, one_thread, record_plots
):
    import optuna
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from fmnist.studies import tune

    optuna.logging.set_verbosity(optuna.logging.WARNING)

    @settings(
        max_examples=8,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(
        st.sampled_from(["mlp", "cnn"]),
        st.sampled_from([1, 2, 3, 33, 129, 513]),
        st.integers(0, 2**31 - 1),
        st.sampled_from([1, 2]),
    )
    def check(model, size, seed, processes):
        base = Config(model=model, epochs=1, val_size=30, train_subset=size, eval_batch_size=500)
        trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed)).ask()
        drawn = config_lib.to_dict(base.replace(**tune.search_space(trial, base)))
        drawn.pop("train_subset")
        outcomes[
            _train_as_one_rank(
                {**drawn, "size": ("train_subset", size), "processes": processes, "last_rank": True},
                tmp_path,
                monkeypatch,
            )
        ] += 1

    outcomes: collections.Counter = collections.Counter()
    check()
    assert outcomes["trained"] >= 5, outcomes
