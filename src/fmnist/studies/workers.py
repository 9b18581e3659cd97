"""Where a study's worker processes run: their share of the CPU threads, and on a machine with several GPUs one
GPU each, chosen through CUDA_VISIBLE_DEVICES (the environment variable CUDA reads when a process first uses it,
so that each worker sees its own GPU as cuda:0; the way torchrun's and Ray's workers are placed)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from fmnist.errors import FmnistError


@dataclass(frozen=True)
class Placement:
    """The workers of one study command: `gpus[i]` is worker i's CUDA_VISIBLE_DEVICES (None: left as it is,
    on a machine without GPUs or a study on the CPU), `threads` each worker's torch threads."""

    gpus: tuple[str | None, ...]
    threads: int

    @property
    def workers(self) -> int:
        return len(self.gpus)


def visible_gpus(device: str, env: Mapping[str, str] = os.environ) -> list[str]:
    """The GPUs the workers of a study on `device` (a config's auto/cuda/mps/cpu) are spread over, named as
    CUDA_VISIBLE_DEVICES names them: its entries when it is set (indices or UUIDs), else 0..n-1 for the n GPUs
    torch sees; none for a study on the CPU or MPS."""
    if device not in ("auto", "cuda"):
        return []
    if "CUDA_VISIBLE_DEVICES" in env:
        return [g.strip() for g in env["CUDA_VISIBLE_DEVICES"].split(",") if g.strip()]
    import torch

    return [str(i) for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []


def place(workers: int | None, per_device: int | None, gpus: list[str], cpus: int | None = None) -> Placement:
    """The workers' placement. On GPUs: `per_device` workers on each (default one per GPU), or `workers`
    workers dealt round-robin (worker i on GPU i mod n). Without GPUs: `workers` (default 1), no GPU each.
    Each worker gets cpus (default: cpu.usable_cpus) // workers torch threads (at least 1). Raises FmnistError
    for counts below 1, for --workers-per-device without a GPU, and for both flags at once."""
    if not cpus:
        from fmnist.cpu import usable_cpus

        cpus = usable_cpus()
    for flag, value in (("--workers", workers), ("--workers-per-device", per_device)):
        if value is not None and value < 1:
            raise FmnistError(f"{flag} must be >= 1, got {value}")
    if workers is not None and per_device is not None:
        raise FmnistError("give --workers N (dealt over the GPUs) or --workers-per-device K, not both")
    if not gpus:
        if per_device is not None:
            raise FmnistError("--workers-per-device needs a GPU and none is visible here; use --workers N")
        chosen: list[str | None] = [None] * (workers or 1)
    elif per_device is not None:
        chosen = [gpu for gpu in gpus for _ in range(per_device)]
    else:
        chosen = [gpus[i % len(gpus)] for i in range(workers or len(gpus))]
    return Placement(tuple(chosen), max(1, cpus // len(chosen)))


def enter(threads: int, gpu: str | None) -> None:
    """In a worker process before it trains: its threads and GPU. fit()'s threads = "auto" keeps the
    OMP_NUM_THREADS share; CUDA_VISIBLE_DEVICES takes effect because CUDA is not initialised yet in a fresh
    (spawned) worker."""
    import torch

    torch.set_num_threads(threads)
    os.environ["OMP_NUM_THREADS"] = str(threads)
    if gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = gpu
