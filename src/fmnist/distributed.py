"""Multi-process data parallelism under torchrun: which process this is, and the few collectives fit() needs.

Outside torchrun (no WORLD_SIZE in the environment) everything here is a no-op for one process,
so the single-process path has no branches of its own.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from fmnist.errors import FmnistError


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

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
    )


def init(device: torch.device) -> World:
    """Join the process group when started by torchrun: NCCL for CUDA, gloo for CPU."""
    w = world()
    if w.active and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return w


def device_for(device: torch.device, w: World) -> torch.device:
    """One GPU per process on a node; CPU processes share the CPU."""
    if device.type == "cuda" and w.active:
        if w.local_rank >= torch.cuda.device_count():
            raise FmnistError(f"local rank {w.local_rank} has no GPU ({torch.cuda.device_count()} visible)")
        torch.cuda.set_device(w.local_rank)
        return torch.device("cuda", w.local_rank)
    return device


def all_reduce_sum(values: torch.Tensor, w: World) -> torch.Tensor:
    if w.active:
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


def broadcast(obj, w: World):
    """Rank 0's value of a picklable object, on every rank."""
    if not w.active:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def shutdown(w: World) -> None:
    if w.active and dist.is_initialized():
        dist.destroy_process_group()
