import json

import pytest
import torch

from fmnist import bench, bench_report, cli, data
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
    bench_report.write_json(result, tmp_path / "bench.json")
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
    assert "batch" in bench_report.format_table(result)
    bench_report.plot(result, tmp_path / "bench.png")
    assert (tmp_path / "bench.png").read_bytes()[:4] == b"\x89PNG"


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
