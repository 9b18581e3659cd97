import json

import pytest
import torch
from torch import nn

from fmnist import bench, cli, data, train
from fmnist.config import Config

TINY = bench.Plan(
    inference_batches=(1, 8),
    training_batches=(8, 16),
    warmup=1,
    min_repeats=2,
    min_seconds=0,
    training_chunk=32,
    pipeline_images=96,
    pipeline_batch_size=32,
    matmul_sizes=(16, 32),
)


def test_bench_json_has_every_field_the_issue_lists(synthetic_data, tmp_path):
    result = bench.run(Config(hidden=(16,)), data.load(), "cpu", TINY)
    bench.write_json(result, tmp_path / "bench.json")
    loaded = json.loads((tmp_path / "bench.json").read_text())
    assert loaded["device"] == "cpu" and loaded["peak_memory_bytes"] > 0
    inference = TINY.inference_batches
    training = TINY.training_batches
    for kind, batches in (("inference", inference), ("inference_bf16_autocast", inference),
                          ("training", training), ("training_bf16_autocast", training)):
        assert [row["batch_size"] for row in loaded[kind]] == list(batches)
        for row in loaded[kind]:
            assert {"batch_size", "latency_ms_median", "latency_ms_p95", "images_per_second"} <= set(row)
            assert row["latency_ms_median"] > 0
    assert {"textbook_epoch_seconds", "fmnist_epoch_seconds", "speedup"} <= set(loaded["pipeline"])
    assert loaded["pipeline"]["scaled"] and loaded["pipeline"]["images_measured"] == TINY.pipeline_images
    assert {"matmul_gflops", "inference_limit_images_per_second", "training_limit_images_per_second"} <= set(
        loaded["hardware"]
    )
    assert "batch" in bench.format_table(result)
    bench.plot(result, tmp_path / "bench.png")
    assert (tmp_path / "bench.png").read_bytes()[:4] == b"\x89PNG"


def test_flops_are_counted_from_the_layers():
    forward, training = bench.flops_per_image(nn.Sequential(nn.Flatten(), nn.Linear(784, 512), nn.ReLU(),
                                                            nn.Linear(512, 10)))
    assert forward == 2 * (784 * 512 + 512 * 10)
    assert training == 2 * forward + 2 * 512 * 10  # no input gradient for the first layer
    conv_forward, _ = bench.flops_per_image(nn.Sequential(nn.Conv2d(1, 4, 3, padding=1)))
    assert conv_forward == 2 * 4 * 28 * 28 * 9


class Recorder(nn.Module):
    """Notes which images pass through: image i carries i in its first pixel."""

    def __init__(self):
        super().__init__()
        self.seen: list[int] = []

    def forward(self, x):
        self.seen += (x[:, 0, 0, 0] * 255).round().long().tolist()
        return x


def test_textbook_and_fmnist_pipelines_see_each_image_once_per_epoch():
    n = 200  # not a multiple of the batch size: the last batch is short
    images = torch.zeros(n, 28, 28, dtype=torch.uint8)
    images[:, 0, 0] = torch.arange(n, dtype=torch.uint8)
    labels = torch.arange(n) % 10
    seen = []
    for epoch in (bench.textbook_epoch, bench.fmnist_epoch):
        recorder = Recorder()
        model = nn.Sequential(recorder, nn.Flatten(), nn.Linear(784, 10))
        if epoch is bench.textbook_epoch:
            epoch(model, images, labels, torch.device("cpu"), torch.Generator().manual_seed(0), batch_size=16)
        else:
            epoch(model, Config(batch_size=16), images, labels, torch.Generator().manual_seed(0))
        assert sorted(recorder.seen) == list(range(n))
        seen.append(recorder.seen)
    assert seen[0] != list(range(n)) and seen[1] != list(range(n))  # both shuffle


def test_train_profile_writes_a_trace_and_leaves_the_run_unchanged(synthetic_data, tmp_path):
    train.fit(Config(hidden=(16,), epochs=1, batch_size=50), tmp_path / "plain", data.load(), log=lambda _: None,
              progress=False)
    args = ["--hidden", "16", "--epochs", "1", "--batch-size", "50", "--no-progress"]
    assert cli.main(["train", *args, "--out", str(tmp_path / "profiled"), "--profile", str(tmp_path / "trace")]) == 0
    traces = list((tmp_path / "trace").glob("*.pt.trace.json"))
    assert len(traces) == 1 and json.loads(traces[0].read_text())["traceEvents"]

    def metrics(run):
        row = json.loads((tmp_path / run / "metrics.jsonl").read_text())
        return {k: v for k, v in row.items() if k not in ("epoch_seconds", "ms_per_batch", "images_per_second")}

    assert metrics("plain") == metrics("profiled")


def test_profile_restores_the_global_rng(synthetic_data, tmp_path):
    torch.manual_seed(3)
    before = torch.get_rng_state()
    bench.profile_training(Config(hidden=(8,), batch_size=16, dropout=0.5), data.load(), tmp_path, warmup_steps=1,
                           steps=2, log=lambda _: None)
    assert torch.equal(torch.get_rng_state(), before)


def test_bench_rejects_a_bad_thread_count(capsys):
    assert cli.main(["bench", "--threads", "0"]) == 2
    assert "--threads must be >= 1" in capsys.readouterr().err


@pytest.mark.parametrize("size", [3, 12])
def test_batch_of_cycles_through_a_small_set(size):
    images = torch.arange(5 * 4, dtype=torch.uint8).view(5, 2, 2)
    batch = bench._batch_of(images, size)
    assert len(batch) == size and all(torch.equal(batch[i], images[i % 5]) for i in range(size))


def test_bench_measures_the_model_of_a_preset_with_flags_on_top(synthetic_data, tmp_path, monkeypatch, capsys):
    from fmnist import config, models, presets

    monkeypatch.setattr(bench, "QUICK", TINY)  # the real measurement, on the smallest plan
    argv = ["bench", "--quick", "--preset", "cnn", "--hidden", "8,16", "--json", str(tmp_path / "b.json")]
    assert cli.main(argv) == 0
    measured = json.loads((tmp_path / "b.json").read_text())["model"]
    expected = models.build(config.from_dict({**presets.load("cnn"), "hidden": (8, 16)}))
    assert (measured["name"], measured["hidden"]) == ("cnn", [8, 16])
    assert measured["parameters"] == models.parameter_count(expected)  # the preset's head, convs, batch norm
