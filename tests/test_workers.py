"""Where a study's workers run (fmnist.studies.workers): GPUs dealt through CUDA_VISIBLE_DEVICES, threads shared."""

import os

import pytest

from fmnist.errors import FmnistError
from fmnist.studies import compare, workers


def test_one_worker_per_visible_gpu_by_default_and_k_per_gpu_on_request():
    assert workers.place(None, None, ["0", "1", "2", "3"], cpus=16) == workers.Placement(("0", "1", "2", "3"), 4)
    assert workers.place(None, 2, ["0", "1"], cpus=16).gpus == ("0", "0", "1", "1")
    assert workers.place(None, 3, ["GPU-a"], cpus=2) == workers.Placement(("GPU-a",) * 3, 1)  # at least one thread


def test_an_explicit_worker_count_is_dealt_round_robin_over_the_gpus():
    assert workers.place(5, None, ["2", "3"], cpus=10).gpus == ("2", "3", "2", "3", "2")
    assert workers.place(1, None, ["2", "3"], cpus=10) == workers.Placement(("2",), 10)


def test_without_gpus_workers_only_share_the_cores():
    assert workers.place(None, None, [], cpus=8) == workers.Placement((None,), 8)
    assert workers.place(3, None, [], cpus=8) == workers.Placement((None, None, None), 2)


@pytest.mark.parametrize(
    "count, per_device, gpus, message",
    [
        (0, None, [], "--workers must be >= 1, got 0"),
        (None, 0, ["0"], "--workers-per-device must be >= 1, got 0"),
        (2, 2, ["0"], "not both"),
        (None, 2, [], "--workers-per-device needs a GPU and none is visible here"),
    ],
)
def test_bad_counts_are_refused(count, per_device, gpus, message):
    with pytest.raises(FmnistError, match=message):
        workers.place(count, per_device, gpus)


def test_visible_gpus_follow_cuda_visible_devices_and_the_device():
    env = {"CUDA_VISIBLE_DEVICES": "3, GPU-5f2e,"}
    assert workers.visible_gpus("cuda", env) == ["3", "GPU-5f2e"]
    assert workers.visible_gpus("auto", env) == ["3", "GPU-5f2e"]
    assert workers.visible_gpus("auto", {"CUDA_VISIBLE_DEVICES": ""}) == []  # CUDA's "no GPU"
    assert workers.visible_gpus("cpu", env) == [] and workers.visible_gpus("mps", env) == []
    import torch

    assert len(workers.visible_gpus("cuda", {})) == (torch.cuda.device_count() if torch.cuda.is_available() else 0)


def test_each_pool_worker_takes_its_own_gpu_as_it_starts(monkeypatch):
    import queue

    import torch

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    monkeypatch.setenv("OMP_NUM_THREADS", "9")
    threads = torch.get_num_threads()
    gpus: queue.Queue = queue.Queue()
    for gpu in ("1", "0"):
        gpus.put(gpu)
    seen = []
    try:
        for _ in range(3):  # the third: a worker started again after one died finds the queue empty
            compare._init_worker(None, 1, gpus)
            seen.append((os.environ["CUDA_VISIBLE_DEVICES"], os.environ["OMP_NUM_THREADS"], torch.get_num_threads()))
    finally:
        torch.set_num_threads(threads)
    assert seen == [("1", "1", 1), ("0", "1", 1), ("0", "1", 1)]


def test_cpu_workers_share_the_usable_cpus_by_default(monkeypatch):
    from fmnist import cpu

    monkeypatch.setattr(cpu, "usable_cpus", lambda: 6)  # a container with a quota of 6 CPUs on a 64-core host
    monkeypatch.setattr(workers.os, "cpu_count", lambda: 64)
    assert workers.place(2, None, []) == workers.Placement((None, None), 3)
