"""Multi-process data parallelism under torchrun: which process this is, and the few collectives fit() needs.

Outside torchrun (no WORLD_SIZE in the environment) everything here is a no-op for one process,
so the single-process path has no branches of its own.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from fmnist.errors import FmnistError


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0
    launched: bool = False  # started by torchrun: joins a process group, even a group of one

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.size > 1


def world() -> World:
    """This process's place, from the variables torchrun sets."""
    return World(
        rank=int(os.environ.get("RANK", 0)),
        size=int(os.environ.get("WORLD_SIZE", 1)),
        local_rank=int(os.environ.get("LOCAL_RANK", 0)),
        launched="WORLD_SIZE" in os.environ,
    )


def backend_for(device: torch.device) -> str:
    return "nccl" if device.type == "cuda" else "gloo"


def init(device: torch.device) -> World:
    """Join the process group when started by torchrun: NCCL for CUDA, gloo for CPU.

    A CUDA process takes its own GPU before joining: NCCL sends from the current device, and
    without set_device every rank's first collective would run on cuda:0. Under torchrun one
    process joins a group of one too, so that `--nproc_per_node=1` runs every collective.
    """
    w = world()
    if w.launched and not dist.is_initialized():
        if device.type == "mps":
            raise FmnistError("torchrun needs --device cuda or cpu: PyTorch has no collectives for mps")
        if device.type == "cuda":
            torch.cuda.set_device(device_for(device, w))
        dist.init_process_group(backend_for(device))
    return w


def restart_hazard(environ: Mapping[str, str]) -> str | None:
    """Why a restart by torchrun --max-restarts may hang, from the variables torchrun gives its workers; None
    when it cannot. By default torchrun's agent keeps one TCPStore for all its rounds and the workers' process
    group joins it without a per-round prefix, so a restarted rank can read the address a dead one published
    and wait on it (pytorch/pytorch#135712); TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1, torch's own opt-out, gives
    every round a store of its own."""
    if int(environ.get("TORCHELASTIC_MAX_RESTARTS", "0")) > 0 and environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True":
        return (
            "warning: torchrun --max-restarts shares its rendezvous store with the workers, and a restarted "
            "process group can hang on the previous round's addresses; launch torchrun with "
            "TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1 in its environment"
        )
    return None


def device_for(device: torch.device, w: World) -> torch.device:
    """One GPU per process on a node; CPU processes share the CPU."""
    if device.type == "cuda" and w.launched:
        if w.local_rank >= torch.cuda.device_count():
            raise FmnistError(f"local rank {w.local_rank} has no GPU ({torch.cuda.device_count()} visible)")
        return torch.device("cuda", w.local_rank)
    return device


def collective_device(backend: str, w: World) -> torch.device:
    """Where tensors sent over `backend` must live: NCCL moves only this process's GPU memory."""
    return torch.device("cuda", w.local_rank) if backend == "nccl" else torch.device("cpu")


def sync_batch_norm(net: nn.Module, device: torch.device) -> nn.Module:
    """Batch norm over the whole effective batch, as one process computes it, where PyTorch can
    (SyncBatchNorm runs on GPUs only); on CPU each process normalises by its own shard."""
    return nn.SyncBatchNorm.convert_sync_batchnorm(net) if device.type == "cuda" else net


def all_reduce_sum(values: torch.Tensor, w: World) -> torch.Tensor:
    """The sum of `values` over all processes, on the device `values` came from."""
    if not dist.is_initialized():
        return values
    sent = values.to(collective_device(dist.get_backend(), w))
    dist.all_reduce(sent, op=dist.ReduceOp.SUM)
    return sent.to(values.device)


def gather(obj, w: World) -> list | None:
    """Every rank's value of a picklable object, in rank order, on rank 0; None on the others."""
    if not dist.is_initialized():
        return [obj]
    box = [None] * w.size if w.is_main else None
    dist.gather_object(obj, box, dst=0)
    return box


def broadcast(obj, w: World):
    """Rank 0's value of a picklable object, on every rank."""
    if not dist.is_initialized():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def backend() -> str | None:
    """The process group's backend ("nccl", "gloo"), None outside one."""
    return str(dist.get_backend()) if dist.is_initialized() else None


@contextmanager
def group(device: torch.device) -> Iterator[World]:
    """`init`, and leave the process group when the block ends. After a block that finished the ranks
    first meet at a barrier, so that none tears down its gloo or NCCL threads while another still
    exchanges with it (a rank torn down mid-exchange can abort with "terminate called without an active
    exception"); after an exception each leaves at once, since the others may never arrive."""
    w = init(device)
    try:
        yield w
    except BaseException:
        _leave(finished=False)
        raise
    _leave(finished=True)


def _leave(finished: bool) -> None:
    if dist.is_initialized():
        if finished:
            dist.barrier()
        dist.destroy_process_group()
