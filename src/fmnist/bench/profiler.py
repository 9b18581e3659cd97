"""The few-step torch.profiler trace behind `fmnist train --profile`."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import torch

from fmnist import cpu, measure
from fmnist.atomic import atomic_path
from fmnist.config import Config
from fmnist.data import FashionMNIST
from fmnist.device import select_device
from fmnist.training import StepStream, build_step_state, split_data, step_plan, train_one_epoch


def profile_training(
    cfg: Config,
    data: FashionMNIST,
    out_dir: str | os.PathLike,
    *,
    warmup_steps: int = 5,
    steps: int = 10,
    log: Callable[[str], None] = print,
) -> Path:
    """Profile `steps` training steps of `cfg` (after `warmup_steps` untimed ones) on a throwaway
    model, log the 10 most expensive operators and write a Chrome trace into `out_dir`, which
    Perfetto (ui.perfetto.dev) opens; it is named as torch.profiler.tensorboard_trace_handler
    names its files, for TensorBoard's profiler plugin. Returns the trace's path.

    The global RNG state is saved and restored, so a run that follows is unchanged.
    """
    from torch.profiler import ProfilerActivity, profile

    device = select_device(cfg.device)
    rng = torch.get_rng_state()
    cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    try:
        if device.type == "cpu":
            cpu.flush_denormals()  # as fit() trains
        # The run's training split (subset and validation held out), cut into steps as fit() cuts an epoch.
        split = split_data(cfg, data, device)
        st = build_step_state(cfg, device, len(step_plan(len(split.train_x), cfg.batch_size, cfg.accumulate)))
        stream = StepStream(len(split.train_x), cfg, st.data_generator, device)

        def steps_of(count: int) -> int:
            idx, taken = stream.take(count)
            train_one_epoch(
                st.model, st.optimizer, st.scheduler, split.train_x, split.train_y, idx, cfg, st.aug_generator
            )
            return taken

        warmed = steps_of(warmup_steps) if warmup_steps else 0
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
        measure.synchronize(device)
        with profile(activities=activities, record_shapes=True) as prof:
            profiled = steps_of(steps)
            measure.synchronize(device)
    finally:
        torch.set_rng_state(rng)
        if cuda_rng is not None:
            torch.cuda.set_rng_state_all(cuda_rng)
    # TensorBoard's profiler plugin looks for *.pt.trace.json files.
    path = Path(out_dir) / f"fmnist-train-{cfg.model}.pt.trace.json"
    with atomic_path(path) as tmp:
        prof.export_chrome_trace(str(tmp))
    sort = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    log(
        f"profile of {profiled} training steps at batch {cfg.batch_size * cfg.accumulate} on {device} "
        f"(after {warmed} warm-up steps), top 10 by self time:"
    )
    log(prof.key_averages().table(sort_by=sort, row_limit=10))
    log(f"trace written to {path} (open it in https://ui.perfetto.dev)")
    return path
