import json

import pytest
import torch

from fmnist import cli, data, training
from fmnist.bench import report as bench_report
from fmnist.bench import speed
from fmnist.config import Config

TINY = speed.Plan(
    inference_batches=(1, 8),
    training_batches=(8, 16),
    warmup=1,
    min_repeats=2,
    min_seconds=0,
    training_chunk=32,
    pipeline_images=96,
    pipeline_batch_size=32,
    matmul_sizes=(16, 32),
    steady_epochs=1,
)


@pytest.mark.slow
def test_bench_json_has_every_field_the_issue_lists(synthetic_data, tmp_path):
    result = speed.run(Config(hidden=(16,)), data.load(), "cpu", TINY)
    bench_report.write_json(result, tmp_path / "bench.json")
    loaded = json.loads((tmp_path / "bench.json").read_text())
    assert loaded["device"] == "cpu" and loaded["peak_memory_bytes"] > 0
    inference = TINY.inference_batches
    training = sorted({*TINY.training_batches, Config().batch_size})  # with the config's own
    for kind, batches in (
        ("inference", inference),
        ("inference_bf16_autocast", inference),
        ("inference_onnxruntime", inference),
        ("inference_onnxruntime_int8", inference),
        ("training", training),
        ("training_bf16_autocast", training),
        ("training_steady", training),
        ("training_bf16_autocast_steady", training),
    ):
        assert [row["batch_size"] for row in loaded[kind]] == list(batches)
        for row in loaded[kind]:
            assert {"batch_size", "latency_ms_median", "latency_ms_p95", "images_per_second"} <= set(row)
            assert row["latency_ms_median"] > 0
    assert loaded["steady_state"]["source"].startswith("1 epochs of mlp")
    assert {"textbook_epoch_seconds", "fmnist_epoch_seconds", "speedup"} <= set(loaded["pipeline"])
    assert loaded["pipeline"]["scaled"] and loaded["pipeline"]["images_measured"] == TINY.pipeline_images
    assert {"matmul_gflops", "inference_limit_images_per_second", "training_limit_images_per_second"} <= set(
        loaded["hardware"]
    )
    table = bench_report.format_table(result)
    assert "ort fp32" in table and "ort int8" in table and "onnxruntime int8 against PyTorch fp32" in table
    bench_report.plot(result, tmp_path / "bench.png")
    assert (tmp_path / "bench.png").read_bytes()[:4] == b"\x89PNG"


def test_bench_rejects_a_bad_thread_count(capsys):
    assert cli.main(["bench", "--threads", "0"]) == 2
    assert "--threads must be >= 1" in capsys.readouterr().err


@pytest.mark.parametrize("size", [3, 12])
def test_batch_of_cycles_through_a_small_set(size):
    images = torch.arange(5 * 4, dtype=torch.uint8).view(5, 2, 2)
    batch = speed._batch_of(images, size)
    assert len(batch) == size and all(torch.equal(batch[i], images[i % 5]) for i in range(size))


@pytest.mark.slow
def test_bench_measures_the_model_of_a_preset_with_flags_on_top(synthetic_data, tmp_path, monkeypatch, capsys):
    from fmnist import config, models, presets

    monkeypatch.setattr(speed, "QUICK", TINY)  # the real measurement, on the smallest plan
    argv = ["bench", "--quick", "--preset", "cnn", "--hidden", "8,16", "--json", str(tmp_path / "b.json")]
    assert cli.main(argv) == 0
    measured = json.loads((tmp_path / "b.json").read_text())["model"]
    expected = models.build(config.from_dict({**presets.load("cnn"), "hidden": (8, 16)}))
    assert (measured["name"], measured["hidden"]) == ("cnn", [8, 16])
    assert measured["parameters"] == models.parameter_count(expected)  # the preset's head, convs, batch norm


def adam_second_moments(optimizer_state: dict) -> list[torch.Tensor]:
    return [s["exp_avg_sq"] for s in optimizer_state["state"].values()]


def test_steady_state_rows_start_from_trained_optimizer_state(synthetic_data):
    cfg = Config(hidden=(16,), batch_size=50, val_size=0)
    dataset = data.load()
    images, labels = dataset.train_images, dataset.train_labels
    trained = speed.train_steady_state(cfg, images, labels, epochs=2)
    moments = adam_second_moments(trained.optimizer)
    assert moments and all(m.any() for m in moments)  # every tensor got gradients
    assert max(float(m.max()) for m in moments) < 1.0  # squared gradients, averaged: small
    assert all(s["step"] == 2 * len(images) // 50 for s in trained.optimizer["state"].values())

    steady, fresh = speed.step_state(cfg, images, trained), speed.step_state(cfg, images, None)
    for a, b in zip(adam_second_moments(steady.optimizer.state_dict()), moments, strict=True):
        assert torch.equal(a, b)
    assert not fresh.optimizer.state_dict()["state"]  # Adam's state is created by the first step
    steady_weights, fresh_weights = steady.model.state_dict(), fresh.model.state_dict()
    assert all(torch.equal(steady_weights[k], v) for k, v in trained.model.items())
    assert any(not torch.equal(steady_weights[k], v) for k, v in fresh_weights.items())


@pytest.mark.slow
def test_bench_from_a_run_measures_its_config_and_state(synthetic_data, tmp_path, monkeypatch):
    cfg = Config(hidden=(12,), epochs=1, batch_size=50, val_size=0)
    training.fit(cfg, tmp_path / "run", data.load(), log=lambda _: None, progress=False)
    measured = []

    def record(cfg, *args, **kwargs):
        measured.append((cfg, args[-1]))
        raise KeyboardInterrupt  # stop before any timing

    monkeypatch.setattr(speed, "run", record)
    assert cli.main(["bench", "--from", str(tmp_path / "run")]) == 130
    ((got, trained),) = measured
    assert got == cfg and "after 1 epochs" in trained.source
    assert adam_second_moments(trained.optimizer)[0].any()


def test_bench_from_refuses_a_preset_on_top(capsys, tmp_path):
    assert cli.main(["bench", "--from", str(tmp_path), "--preset", "cnn"]) == 2
    assert "--from measures the run's own model" in capsys.readouterr().err
