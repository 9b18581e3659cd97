import itertools
import json
import math
import time

import pytest
import torch

from fmnist import checkpoint, data, train
from fmnist.config import Config
from fmnist.errors import FmnistError
from fmnist.records import EpochRow, Summary
from fmnist.run_dir import model_path

SMALL = dict(hidden=(64,), epochs=2, batch_size=32, eval_batch_size=256)
TIMINGS = ("epoch_seconds", "ms_per_batch", "images_per_second")


def quiet(_msg):
    pass


def fit(cfg, run_dir, **kwargs):
    return train.fit(cfg, run_dir, data.load(), log=quiet, progress=False, **kwargs)


def without_timings(history):
    return [{k: v for k, v in row.items() if k not in TIMINGS} for row in history]


@pytest.mark.parametrize("schedule", ["none", "step", "cosine", "onecycle"])
def test_lr_factor_shapes(schedule):
    cfg = Config(epochs=10, schedule=schedule, step_epochs=4, gamma=0.5)
    steps = 100
    f = [train.lr_factor(cfg, s, steps) for s in range(10 * steps)]
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
    last = train.lr_factor(cfg, 2 * 100 - 1, 100)
    beyond = [train.lr_factor(cfg, s, 100) for s in range(200, 600)]
    assert last < 1e-3 and max(beyond) <= last


def test_warmup_rises_linearly_to_the_peak():
    cfg = Config(epochs=5, warmup_epochs=1)
    f = [train.lr_factor(cfg, s, 10) for s in range(12)]
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
    opt = train.build_optimizer(torch.nn.Linear(3, 2), cfg)
    assert type(opt) is kind
    group = opt.param_groups[0]
    assert group["lr"] == cfg.lr and group["weight_decay"] == cfg.weight_decay
    if cfg.optimizer == "sgd":
        assert group["momentum"] == 0.9 and group["nesterov"]


def test_fit_learns_and_writes_a_self_describing_run(synthetic_data, tmp_path):
    run = tmp_path / "run"
    result = fit(Config(**SMALL), run)
    assert result.summary["test_accuracy"] > 0.9
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2]
    assert set(rows[0]) == EpochRow.__required_keys__  # no validation split: no val_* keys
    summary = json.loads((run / "summary.json").read_text())
    assert Summary.__required_keys__ <= set(summary) <= Summary.__required_keys__ | Summary.__optional_keys__
    assert summary["test_accuracy"] == rows[-1]["test_acc"] and summary["chosen_by"] == "last epoch"
    state = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert state["epoch"] == 2 and state["config"]["hidden"] == [64]
    assert any((run / "tensorboard").iterdir())
    assert (run / "config.toml").read_text().count("hidden = [") == 1


def test_same_seed_same_metrics_other_seed_differs(synthetic_data, tmp_path):
    cfg = Config(**{**SMALL, "epochs": 1})
    a = fit(cfg, tmp_path / "a").history
    b = fit(cfg, tmp_path / "b").history
    c = fit(cfg.replace(seed=1), tmp_path / "c").history
    assert without_timings(a) == without_timings(b)
    assert without_timings(a) != without_timings(c)


@pytest.mark.parametrize("augment", [(), ("flip", "crop")])
def test_resume_after_interrupt_matches_an_uninterrupted_run(synthetic_data, tmp_path, augment):
    cfg = Config(**{**SMALL, "epochs": 3}, dropout=0.2, augment=augment)
    straight = fit(cfg, tmp_path / "straight").history

    def stop_after_first_epoch(msg):
        if msg.startswith("epoch   1/"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train.fit(cfg, tmp_path / "cut", data.load(), log=stop_after_first_epoch, progress=False)
    assert torch.load(tmp_path / "cut" / "checkpoints" / "last.pt", weights_only=True)["epoch"] == 1
    resumed = fit(cfg, tmp_path / "cut", resume=True).history
    assert without_timings(resumed) == without_timings(straight)


def test_cnn_with_bf16_and_channels_last_trains_and_resumes_exactly(synthetic_data, tmp_path):
    cfg = Config(model="cnn", hidden=(8, 16), batch_norm=True, amp="bf16", epochs=2, batch_size=32,
                 eval_batch_size=256, lr=0.05)
    straight = fit(cfg, tmp_path / "straight")
    assert straight.summary["test_accuracy"] > 0.5  # ten classes: chance is 0.1
    conv = next(m for m in straight.model if isinstance(m, torch.nn.Conv2d) and m.in_channels > 1)
    assert conv.weight.is_contiguous(memory_format=torch.channels_last) and not conv.weight.is_contiguous()

    def stop_after_first_epoch(msg):
        if msg.startswith("epoch   1/"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train.fit(cfg, tmp_path / "cut", data.load(), log=stop_after_first_epoch, progress=False)
    resumed = fit(cfg, tmp_path / "cut", resume=True)
    assert without_timings(resumed.history) == without_timings(straight.history)


def test_wall_seconds_cover_every_process_of_a_resumed_run(synthetic_data, tmp_path, monkeypatch):
    cfg = Config(**SMALL)
    real_epoch = train.train_one_epoch

    def slow_first_epoch(*args):
        if args[8] == 1:  # the epoch number
            time.sleep(1.5)
        return real_epoch(*args)

    def stop_after_first_epoch(msg):
        if msg.startswith("epoch   1/"):
            raise KeyboardInterrupt

    monkeypatch.setattr(train, "train_one_epoch", slow_first_epoch)
    with pytest.raises(KeyboardInterrupt):
        train.fit(cfg, tmp_path / "run", data.load(), log=stop_after_first_epoch, progress=False)
    resumed = fit(cfg, tmp_path / "run", resume=True)
    assert resumed.summary["wall_seconds"] > 1.5  # the first process's slow epoch counts
    written = (tmp_path / "run" / "summary.json").read_bytes()
    again = fit(cfg, tmp_path / "run", resume=True)  # a finished run: nothing to train
    assert (tmp_path / "run" / "summary.json").read_bytes() == written
    assert again.summary == resumed.summary


def test_validation_split_chooses_the_best_checkpoint(synthetic_data, tmp_path):
    run = tmp_path / "run"
    result = fit(Config(**SMALL, val_size=200), run)
    assert set(result.history[0]) == EpochRow.__required_keys__ | EpochRow.__optional_keys__
    best_epoch = max(result.history, key=lambda r: r["val_acc"])["epoch"]
    assert result.summary["chosen_epoch"] == best_epoch
    assert result.summary["chosen_by"] == "best validation accuracy"
    assert torch.load(run / "checkpoints" / "best.pt", weights_only=True)["epoch"] == best_epoch


def test_existing_run_is_never_overwritten(synthetic_data, tmp_path):
    run = tmp_path / "run"
    fit(Config(**{**SMALL, "epochs": 1}), run)
    before = (run / "checkpoints" / "last.pt").read_bytes()
    with pytest.raises(FmnistError, match="already holds a run"):
        fit(Config(**{**SMALL, "epochs": 1}), run)
    assert (run / "checkpoints" / "last.pt").read_bytes() == before


def test_non_finite_loss_stops_with_epoch_and_step(synthetic_data, tmp_path):
    cfg = Config(**SMALL, optimizer="sgd", lr=1e6, schedule="none")
    with pytest.raises(train.NonFiniteLoss, match=r"non-finite loss at epoch 1, step \d+"):
        fit(cfg, tmp_path / "run")


def test_checkpoint_round_trip_gives_the_same_predictions(synthetic_data, tmp_path):
    result = fit(Config(**{**SMALL, "epochs": 1}), tmp_path / "run")
    model, cfg, state = checkpoint.load_model(model_path(tmp_path / "run"))
    x = data.as_input(data.load().test_images[:50])
    assert torch.equal(model(x), result.model.eval()(x))
    assert cfg == Config(**{**SMALL, "epochs": 1}) and state["epoch"] == 1
    assert math.isclose(state["history"][-1]["test_acc"], result.summary["test_accuracy"])


def test_on_nan_skip_keeps_training(synthetic_data, tmp_path, monkeypatch):
    poisoned = {"left": 3}
    real_ce = train.F.cross_entropy

    def sometimes_nan(logits, y, **kwargs):
        loss = real_ce(logits, y, **kwargs)
        if poisoned["left"]:
            poisoned["left"] -= 1
            return loss * float("nan")
        return loss

    monkeypatch.setattr(train.F, "cross_entropy", sometimes_nan)
    messages = []
    cfg = Config(**SMALL, on_nan="skip")
    result = train.fit(cfg, tmp_path / "run", data.load(), log=messages.append, progress=False)
    assert "epoch 1: skipped 3 batches with a non-finite loss (--on-nan skip)" in messages
    assert math.isfinite(result.history[0]["train_loss"]) and result.summary["test_accuracy"] > 0.9
    poisoned["left"] = 1
    with pytest.raises(train.NonFiniteLoss, match="epoch 1, step 1 "):
        fit(Config(**SMALL), tmp_path / "stop")


@pytest.mark.parametrize("amp, dtype", [("none", torch.float32), ("bf16", torch.bfloat16)])
def test_amp_runs_the_training_forward_in_bf16_and_evaluation_in_fp32(
        synthetic_data, tmp_path, monkeypatch, amp, dtype):
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


def interrupted_after_first_epoch(cfg, run_dir):
    def stop_after_first_epoch(msg):
        if msg.startswith("epoch   1/"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train.fit(cfg, run_dir, data.load(), log=stop_after_first_epoch, progress=False)


def edit_checkpoint(path, change):
    state = torch.load(path, weights_only=True)
    change(state)
    torch.save(state, path)


def test_a_run_saved_on_cuda_resumes_with_device_cpu(synthetic_data, tmp_path, capsys):
    """The device is where a run trains, not what it is: a CUDA run continues on the CPU, whose
    generators cannot take a CUDA generator's state, so augmentation draws afresh from there."""
    from fmnist.cli import main

    run = tmp_path / "run"
    interrupted_after_first_epoch(Config(**SMALL, augment=("flip",), device="cpu"), run)

    def as_if_saved_on_cuda(state):
        state["config"]["device"] = "cuda"
        # what torch.cuda's Philox generators save: 16 bytes, seed and offset
        state["rng"] = [{**state["rng"][0], "device": "cuda", "augment": torch.zeros(16, dtype=torch.uint8),
                         "cuda": torch.zeros(16, dtype=torch.uint8)}]

    edit_checkpoint(run / "checkpoints" / "last.pt", as_if_saved_on_cuda)
    (run / "config.toml").write_text((run / "config.toml").read_text().replace('device = "cpu"', 'device = "cuda"'))
    assert main(["train", "--resume", str(run), "--device", "cpu", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "saved by 1 process(es) on cuda, resumed by 1 on cpu" in out and "test accuracy" in out
    summary = json.loads((run / "summary.json").read_text())
    assert summary["device"] == "cpu" and summary["epochs"] == 2


def test_checkpoints_from_before_per_rank_states_resume_exactly(synthetic_data, tmp_path):
    cfg = Config(**SMALL, dropout=0.2, augment=("crop",))
    straight = fit(cfg, tmp_path / "straight").history
    interrupted_after_first_epoch(cfg, tmp_path / "cut")

    def one_dict_without_device(state):  # the layout fit() wrote before
        state["rng"] = {k: v for k, v in state["rng"][0].items() if k != "device"}

    edit_checkpoint(tmp_path / "cut" / "checkpoints" / "last.pt", one_dict_without_device)
    resumed = fit(cfg, tmp_path / "cut", resume=True).history
    assert without_timings(resumed) == without_timings(straight)


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
