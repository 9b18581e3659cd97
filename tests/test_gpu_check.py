"""scripts/gpu-check.sh: its --dry-run on the CPU end to end, and the summary's figures and targets."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from fmnist import data
from fmnist.bench import report as bench_report
from fmnist.bench import speed
from fmnist.config import Config

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "gpu-check.sh"
STEPS = [
    "install",
    "prepare",
    "cuda-tests",
    "bench",
    "train-default",
    "kill-resume",
    "eval",
    "predict",
    "torchrun",
    "cnn",
    "multi-gpu",
    "amp-bf16",
    "tf32",
    "compile",
]


def load_summary_module():
    spec = importlib.util.spec_from_file_location("gpu_check_summary", ROOT / "scripts" / "gpu_check_summary.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_script(out: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHON=sys.executable, OMP_NUM_THREADS="1")
    env.pop("OUT", None)
    return subprocess.run(
        ["bash", str(SCRIPT), "--dry-run", "--out", str(out), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=1500,
    )


@pytest.mark.real_data
@pytest.mark.slow
def test_dry_run_runs_every_step_and_writes_both_summaries(real_data_dir, tmp_path):
    # About a minute on an idle CPU; the budget leaves room for a busy one.
    done = run_script(tmp_path / "out", "--budget", "1200", "--cpu-accuracy", "0.5")
    assert done.returncode == 0, (
        done.stdout[-2000:],
        done.stderr[-2000:],
        (tmp_path / "out" / "gpu-check.log").read_text()[-3000:],
    )
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["dry_run"] and summary["device"] == "cpu" and summary["gpu"].startswith("none")
    assert [s["name"] for s in summary["steps"]] == STEPS
    status = {s["name"]: s["status"] for s in summary["steps"]}
    assert {name for name, s in status.items() if s == "skipped"} == {
        "install",
        "bench",
        "multi-gpu",
        "amp-bf16",
        "tf32",
        "compile",
    }
    assert summary["failed"] == 0 and summary["passed"] == 8
    fig = summary["figures"]
    default = fig["default"]
    assert default["test_accuracy"] > 0.5 and default["process_wall_seconds"] > default["fit_wall_seconds"]
    assert fig["resume"]["epochs_before_kill"] >= 1 and fig["resume"]["identical"]
    assert fig["eval"]["matches_run"] and fig["predict"]["images"] == 3
    assert fig["torchrun"]["processes"] == 1 and fig["torchrun"]["process_group"] == "gloo"
    assert fig["cnn"]["epochs"] == 1
    accuracy_target = summary["targets"][-1]
    assert accuracy_target["value"] == pytest.approx(fig["default"]["test_accuracy"] - 0.5)
    text = (tmp_path / "out" / "summary.md").read_text()
    assert text == done.stdout and text.startswith("# fmnist GPU check: none (dry run on the CPU)")
    assert "Dry run on the CPU" in text and "| kill-resume | pass |" in text


def test_steps_beyond_the_budget_fail_and_the_summary_says_so(tmp_path):
    done = run_script(tmp_path / "out", "--budget", "1")
    assert done.returncode == 1
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    failed = [s for s in summary["steps"] if s["status"] == "fail"]
    assert failed and all("no time left" in s["note"] for s in failed)
    assert summary["figures"]["default"] is None and all(t["met"] is None for t in summary["targets"])
    assert "| train-default | fail |" in (tmp_path / "out" / "summary.md").read_text()


def test_bench_figures_and_targets_from_a_real_bench_result(synthetic_data, tmp_path, one_thread):
    tiny = speed.Plan(
        inference_batches=(1, 64),
        bf16=False,
        training_batches=(64,),
        warmup=1,
        min_repeats=3,
        min_seconds=0.0,
        max_seconds=0.1,
        training_chunk=128,
        pipeline_images=256,
        matmul_sizes=(64,),
        steady_epochs=1,
        onnxruntime=False,
    )
    result = speed.run(Config(hidden=(16,)), data.load(), "cpu", tiny)
    bench_report.write_json(result, tmp_path / "bench.json")
    summary = load_summary_module()
    figures = summary.bench_figures(tmp_path / "bench.json")
    fastest = max(result["inference"], key=lambda r: r["images_per_second"])
    assert figures["inference_best_images_per_second"] == fastest["images_per_second"]
    assert figures["inference_ms_per_batch_64"] == result["inference"][1]["latency_ms_median"]
    targets = {
        t["target"]: t
        for t in summary.targets(
            {"bench": {**figures, "inference_best_images_per_second": 3e6, "inference_ms_per_batch_64": 0.2}}, None
        )
    }
    assert targets["inference >= 2,000,000 images/s at the best batch size"]["met"] is True
    assert targets["inference <= 0.1 ms per batch of 64"]["met"] is False
    assert targets["cnn preset >= 94 % test accuracy"]["met"] is None  # no cnn run: unknown, not failed


def test_a_dry_run_without_out_writes_outside_the_checkout():
    env = dict(os.environ, PYTHON=sys.executable)
    env.pop("OUT", None)
    # the test tools' own caches may appear meanwhile: other tests run beside this one (pytest-xdist)
    tool_caches = {".hypothesis", ".pytest_cache"}
    before = {p.name for p in ROOT.iterdir()} | tool_caches
    done = subprocess.run(
        ["bash", str(SCRIPT), "--dry-run", "--budget", "0"], env=env, capture_output=True, text=True, timeout=120
    )
    written = Path(done.stderr.strip().splitlines()[-1].removeprefix("gpu-check: results in "))
    try:
        assert {p.name for p in ROOT.iterdir()} | tool_caches == before  # nothing new in the checkout
        assert (written / "summary.json").exists() and ROOT not in written.parents
    finally:
        shutil.rmtree(written, ignore_errors=True)
    assert "gpu-check-out/" in (ROOT / ".gitignore").read_text().splitlines()  # a GPU run's default folder
