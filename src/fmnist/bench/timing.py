"""The timing harness of `fmnist bench`: repeated synchronised calls after warm-up, median and
p95, and how busy the rest of the machine was meanwhile."""

from __future__ import annotations

import math
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import torch

from fmnist import measure
from fmnist.records import TimingRow

CpuMark = tuple[float, float, float] | None  # see cpu_mark


class Repeats(Protocol):
    """How long a figure is timed for (speed.Plan is one): plan.warmup untimed calls, then timed
    ones to min_repeats and min_seconds, stopping at max_seconds (a busy machine) or max_repeats."""

    @property
    def warmup(self) -> int: ...
    @property
    def min_repeats(self) -> int: ...
    @property
    def min_seconds(self) -> float: ...
    @property
    def max_repeats(self) -> int: ...
    @property
    def max_seconds(self) -> float: ...


def time_calls(fn: Callable[[int], object], device: torch.device, plan: Repeats) -> list[float]:
    """Seconds of each timed call fn(repetition), after plan.warmup untimed ones; the device is
    synchronised around every call. Calls go on to plan.min_repeats and plan.min_seconds, unless
    plan.max_seconds runs out first (never fewer than 3 calls)."""
    for i in range(plan.warmup):
        fn(i)
    measure.synchronize(device)
    times: list[float] = []
    begin = time.perf_counter()

    def more() -> bool:
        spent = time.perf_counter() - begin
        if len(times) < 3 or (len(times) < plan.min_repeats and spent < plan.max_seconds):
            return True
        return spent < plan.min_seconds and len(times) < plan.max_repeats

    while more():
        start = time.perf_counter()
        fn(len(times))
        measure.synchronize(device)
        times.append(time.perf_counter() - start)
    return times


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]  # nearest rank


def row(batch_size: int, seconds: list[float], limit: float, mark: CpuMark) -> TimingRow:
    """One table row: per-call seconds of `batch_size` images as latency and rate, against `limit` img/s."""
    median = statistics.median(seconds)
    rate = batch_size / median
    return {
        "batch_size": batch_size,
        "latency_ms_median": 1000 * median,
        "latency_ms_p95": 1000 * percentile(seconds, 0.95),
        "images_per_second": rate,
        "fraction_of_limit": rate / limit,
        "repeats": len(seconds),
        "other_cpus": other_cpus(mark),
    }


def load_average() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def cpu_mark() -> CpuMark:
    """(machine busy CPU-seconds, this process's CPU-seconds, wall clock); None off Linux."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text(encoding="utf-8").split("\n", 1)[0].split()[1:9]]
    except (OSError, ValueError):
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    busy = (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")
    return busy, time.process_time(), time.perf_counter()


def other_cpus(mark: CpuMark) -> float | None:
    """CPUs that other processes (and the hypervisor, as steal) kept busy, on average, since
    `mark`: the honest footnote to a figure taken on a shared machine."""
    now = cpu_mark()
    if mark is None or now is None or now[2] - mark[2] < 0.5:  # /proc/stat ticks are 10 ms
        return None
    busy, own, wall = (b - a for a, b in zip(mark, now, strict=True))
    return round(max(0.0, busy - own) / wall, 2)
