import json

import pytest
import torch

from fmnist import cli, data, training
from fmnist.bench import profiler
from fmnist.config import Config


@pytest.mark.slow
def test_train_profile_writes_a_trace_and_leaves_the_run_unchanged(synthetic_data, tmp_path):
    training.fit(
        Config(hidden=(16,), epochs=1, batch_size=50, val_size=0),
        tmp_path / "plain",
        data.load(),
        log=lambda _: None,
        progress=False,
    )
    args = ["--hidden", "16", "--epochs", "1", "--batch-size", "50", "--val-size", "0", "--no-progress"]
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
    profiler.profile_training(
        Config(hidden=(8,), batch_size=16, dropout=0.5, val_size=0),
        data.load(),
        tmp_path,
        warmup_steps=1,
        steps=2,
        log=lambda _: None,
    )
    assert torch.equal(torch.get_rng_state(), before)
