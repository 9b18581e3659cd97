"""The host CPU's floating-point mode on every thread that computes for torch."""

from __future__ import annotations

import ctypes
import math
import os
import re
import time
from functools import cache
from pathlib import Path

import torch

# The OpenMP runtime's entry point for `#pragma omp parallel`: fn(data) on every thread of the team.
_TEAM_FN = ctypes.CFUNCTYPE(None, ctypes.c_void_p)


def flush_denormals(enabled: bool = True) -> None:
    """Flush denormal floats to zero (or stop) on this thread and on every thread of torch's
    intra-op OpenMP pool.

    Denormals are many times slower on x86 (Adam's second moments decay into them within a few
    epochs), and flushing them costs no accuracy here. torch.set_flush_denormal sets only the
    calling thread's MXCSR; pool threads started before it keep theirs, and those started after
    copy the thread that starts them. So the setter also runs once on each pool thread, through
    an OpenMP parallel region of torch.get_num_threads() threads: the team torch's own parallel
    ops use.
    """
    torch.set_flush_denormal(enabled)
    parallel = _openmp_parallel()
    if parallel is None or torch.get_num_threads() < 2:
        return
    setter = _TEAM_FN(lambda _: torch.set_flush_denormal(enabled))
    parallel(setter, None, torch.get_num_threads(), 0)  # ctypes releases the GIL: the callbacks take it in turn


@cache
def _openmp_parallel():
    """GOMP_parallel of the OpenMP runtime already loaded with torch (libgomp, or the GNU-compatible
    entry of libiomp5 / libomp); None off Linux or when torch is not built with OpenMP."""
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return None
    found = re.search(r"/\S*lib(?:gomp|iomp5|omp)[^\s/]*\.so[^\s/]*", maps)
    if found is None:
        return None
    try:
        parallel = ctypes.CDLL(found.group(0)).GOMP_parallel  # the loaded copy: dlopen returns its handle
    except (OSError, AttributeError):
        return None
    parallel.argtypes = [_TEAM_FN, ctypes.c_void_p, ctypes.c_uint, ctypes.c_uint]
    parallel.restype = None
    return parallel


def apply_threads(setting: str, processes: int = 1) -> str:
    """Set torch's intra-op thread count from `setting` (Config.threads) and say what was chosen.

    A number is taken as it is. "auto" takes the cores of this process's affinity that other
    processes leave free (`busy_cores`), rounded, divided among `processes` local processes,
    at least 1: torch's OpenMP threads wait for each other at the end of every parallel op, so
    one thread that shares a core with another program stalls them all (PERFORMANCE.md,
    "A shared machine", measured with benchmarks/shared_machine.py). An OMP_NUM_THREADS in the
    environment (torchrun sets one) is left as it is under "auto".
    """
    if setting != "auto":
        torch.set_num_threads(int(setting))
        return f"threads: {setting} (--threads)"
    if "OMP_NUM_THREADS" in os.environ:
        return f"threads: {torch.get_num_threads()} (auto: OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']})"
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))
    busy = busy_cores(cores)
    if busy is None:
        return f"threads: {torch.get_num_threads()} (auto: no /proc/stat here; torch's default)"
    threads = max(1, math.floor(len(cores) - busy + 0.5) // max(processes, 1))
    torch.set_num_threads(threads)
    return f"threads: {threads} (auto: other processes kept {busy:.1f} of {len(cores)} cores busy)"


def busy_cores(cores: list[int], window: float = 0.1) -> float | None:
    """CPUs that processes other than this one kept busy over `window` seconds, among `cores`.

    From the per-CPU lines of /proc/stat (proc(5): busy = all time but idle and iowait), less this
    process's own CPU time over the same window (time.process_time); None where there is no /proc/stat.
    """
    def busy_and_total() -> tuple[float, float]:
        busy = total = 0.0
        for line in Path("/proc/stat").read_text().splitlines():
            name, *fields = line.split()
            if not (name.startswith("cpu") and name[3:].isdigit() and int(name[3:]) in cores):
                continue
            ticks = [float(f) for f in fields[:8]]  # user nice system idle iowait irq softirq steal
            total += sum(ticks)
            busy += sum(ticks) - ticks[3] - ticks[4]
        return busy, total

    try:
        busy0, total0 = busy_and_total()
        own0 = time.process_time()
        time.sleep(window)
        busy1, total1 = busy_and_total()
        own1 = time.process_time()
    except (OSError, ValueError, IndexError):
        return None
    if total1 <= total0:
        return None
    cpus = len(cores) * (busy1 - busy0) / (total1 - total0)  # busy share of the window, in CPUs
    own = (own1 - own0) / window
    return max(0.0, min(float(len(cores)), cpus - own))


# /proc/cpuinfo flags that change which numerics are fast here.
FEATURES = {
    "amx_bf16": "AMX-BF16",  # bf16 matrix tiles (Sapphire Rapids and later)
    "avx512_bf16": "AVX512-BF16",  # bf16 dot products in AVX-512
    "avx512_vnni": "AVX512-VNNI",  # int8 dot products (quantized inference)
    "avx512f": "AVX-512",
    "avx2": "AVX2",
}


@cache
def features() -> tuple[str, ...]:
    """The FEATURES this CPU has, by their usual names; from /proc/cpuinfo, else torch's own checks."""
    try:
        line = re.search(r"^flags\s*:(.*)$", Path("/proc/cpuinfo").read_text(), re.M)
    except OSError:
        line = None
    if line:
        flags = set(line.group(1).split())
    else:
        checks = {"amx_bf16": "_is_amx_tile_supported", "avx512_bf16": "_is_avx512_bf16_supported",
                  "avx512_vnni": "_is_vnni_supported", "avx512f": "_is_avx512_supported", "avx2": "_is_avx2_supported"}
        flags = {flag for flag, check in checks.items() if getattr(torch.cpu, check, lambda: False)()}
    return tuple(name for flag, name in FEATURES.items() if flag in flags)
