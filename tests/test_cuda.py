"""What only a GPU can check: skipped without CUDA; scripts/gpu-check.sh runs them on one."""

from __future__ import annotations

import pytest
import torch
from support import interrupted_after_first_epoch

from fmnist import checkpoint, data, evaluate, training
from fmnist.config import Config
from fmnist.run_dir import model_path

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")

SMALL = dict(
    hidden=(64,), val_size=0, epochs=3, batch_size=32, eval_batch_size=256, dropout=0.2, augment=("flip", "crop")
)
TIMINGS = ("epoch_seconds", "ms_per_batch", "images_per_second")


def fit(cfg, run_dir, **kwargs):
    return training.fit(cfg, run_dir, data.load(), log=lambda _: None, progress=False, **kwargs)


def without_timings(history):
    return [{k: v for k, v in row.items() if k not in TIMINGS} for row in history]


def test_resume_on_cuda_matches_an_uninterrupted_run(synthetic_data, tmp_path, monkeypatch):
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # deterministic cuBLAS reductions
    cfg = Config(**SMALL, device="cuda")
    straight = fit(cfg, tmp_path / "straight")
    assert straight.summary["device"].startswith("cuda") and "gpu" in straight.summary["hardware"]
    interrupted_after_first_epoch(cfg, tmp_path / "cut")
    rng = torch.load(tmp_path / "cut" / "checkpoints" / "last.pt", weights_only=True)["rng"]
    assert rng[0]["device"] == "cuda" and rng[0]["augment"].device.type == "cpu"
    resumed = fit(cfg, tmp_path / "cut", resume=True)
    assert without_timings(resumed.history) == without_timings(straight.history)


def test_a_cuda_run_continues_on_the_cpu(synthetic_data, tmp_path):
    interrupted_after_first_epoch(Config(**SMALL, device="cuda"), tmp_path / "run")
    messages = []
    result = training.fit(
        Config(**SMALL, device="cpu"), tmp_path / "run", data.load(), resume=True, log=messages.append, progress=False
    )
    assert any("on cuda, resumed by 1 on cpu" in m for m in messages)
    assert result.summary["device"] == "cpu" and len(result.history) == 3


@pytest.mark.parametrize("options", [dict(amp="bf16"), dict(tf32=True)])
def test_fast_paths_train_to_the_same_accuracy(synthetic_data, tmp_path, options):
    base = fit(Config(**SMALL, device="cuda"), tmp_path / "fp32").summary["test_accuracy"]
    fast = fit(Config(**SMALL, device="cuda", **options), tmp_path / "fast").summary["test_accuracy"]
    assert abs(fast - base) < 0.03
    assert torch.backends.cuda.matmul.allow_tf32 == options.get("tf32", False)


def test_evaluation_on_cuda_agrees_with_the_cpu(synthetic_data, tmp_path):
    fit(Config(**{**SMALL, "epochs": 1}, device="cuda"), tmp_path / "run")
    test = data.load()
    results = {}
    for device in ("cpu", "cuda"):
        model, _, _ = checkpoint.load_model(model_path(tmp_path / "run"), device)
        results[device] = evaluate.evaluate(model, test.test_images.to(device), test.test_labels.to(device))
    assert torch.allclose(results["cpu"].probabilities, results["cuda"].probabilities, atol=1e-4)
    assert results["cpu"].accuracy == results["cuda"].accuracy
