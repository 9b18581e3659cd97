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
        maps = Path("/proc/self/maps").read_text(encoding="utf-8")
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
    """Set torch's intra-op thread count from `setting` (Config.threads) once; say what was chosen.
    See AutoThreads, which also follows the load during a run."""
    return AutoThreads(setting, processes).start()


Snapshot = tuple[float, float, float, float]  # busy ticks, all ticks, own CPU seconds, monotonic seconds


class AutoThreads:
    """torch's intra-op thread count for Config.threads, over a run.

    A number is taken as it is. "auto" takes the cores of this process's affinity that other
    processes leave free, rounded, divided among `processes` local processes, at least 1: torch's
    OpenMP threads spin and wait for each other at the end of every parallel op, so a thread that
    shares its core with another busy program stalls the whole team (PERFORMANCE.md, "A shared
    machine": benchmarks/shared_machine.py). `start` measures the others' load over 0.1 s;
    `retune`, called between epochs, measures it over the time since the last call and changes
    the count when the free cores changed. An OMP_NUM_THREADS in the environment (torchrun sets
    one; compare and tune workers set their share) is left as it is under "auto".
    """

    def __init__(self, setting: str, processes: int = 1):
        self.setting, self.processes = setting, max(processes, 1)
        self.auto = setting == "auto" and "OMP_NUM_THREADS" not in os.environ
        self.cores = _affinity()
        self.quota = cpu_quota()
        self.last: Snapshot | None = None

    def start(self) -> str:
        if self.setting != "auto":
            torch.set_num_threads(int(self.setting))
            return f"threads: {self.setting} (--threads)"
        if not self.auto:
            return f"threads: {torch.get_num_threads()} (auto: OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']})"
        first = self._snapshot()
        time.sleep(0.1)
        message = self._choose(first)
        share = None if self.quota is None else max(1, self.quota // self.processes)
        if message is None and share is not None and torch.get_num_threads() > share:
            torch.set_num_threads(share)
            return f"threads: {share} (auto: the control group's CPU quota of {self.quota}; no load figures here)"
        return message or f"threads: {torch.get_num_threads()} (auto: no load figures here; torch's default)"

    def retune(self) -> str | None:
        """Between epochs: a line to log when the thread count changed, else None."""
        if not self.auto or self.last is None:
            return None
        before = torch.get_num_threads()
        message = self._choose(self.last)
        return message if torch.get_num_threads() != before else None

    def _choose(self, since: Snapshot | None) -> str | None:
        now = self._snapshot()
        if since is None or now is None or now[1] <= since[1]:
            return None
        self.last = now
        # Busy share of all ticks, in CPUs, less this process's own CPU time over the same wall time.
        cpus = len(self.cores) * (now[0] - since[0]) / (now[1] - since[1])
        busy = max(0.0, min(float(len(self.cores)), cpus - (now[2] - since[2]) / max(now[3] - since[3], 1e-9)))
        free = math.floor(len(self.cores) - busy + 0.5)
        quota = "" if self.quota is None else f", a CPU quota of {self.quota}"
        threads = max(1, min(free, self.quota or free) // self.processes)
        if threads != torch.get_num_threads():
            torch.set_num_threads(threads)
            flush_denormals()  # on the new team too
        return f"threads: {threads} (auto: other processes kept {busy:.1f} of {len(self.cores)} cores busy{quota})"

    def _snapshot(self) -> Snapshot | None:
        """(busy ticks, all ticks) of our cores from /proc/stat's per-CPU lines (proc(5): busy is all but
        idle and iowait), this process's CPU seconds, and the monotonic clock; None without /proc/stat."""
        busy = total = 0.0
        try:
            lines = Path("/proc/stat").read_text(encoding="utf-8").splitlines()
            for line in lines:
                name, *fields = line.split()
                if name.startswith("cpu") and name[3:].isdigit() and int(name[3:]) in self.cores:
                    ticks = [float(f) for f in fields[:8]]  # user nice system idle iowait irq softirq steal
                    total += sum(ticks)
                    busy += sum(ticks) - ticks[3] - ticks[4]
        except (OSError, ValueError, IndexError):
            return None
        return busy, total, time.process_time(), time.monotonic()


CGROUP = Path("/sys/fs/cgroup")


def within_quota() -> None:
    """No more torch intra-op threads than the control group's CPU quota (`cpu_quota`), unless OMP_NUM_THREADS
    sets them: for every command, before its torch work (a training run then chooses its own, AutoThreads)."""
    quota = cpu_quota()
    if quota is not None and "OMP_NUM_THREADS" not in os.environ and torch.get_num_threads() > quota:
        torch.set_num_threads(quota)


def usable_cpus() -> int:
    """The CPUs this process may compute on: those of its affinity (all of them off Linux), no more than its
    control group's CPU quota (`cpu_quota`)."""
    cores, quota = len(_affinity()), cpu_quota()
    return min(cores, quota) if quota is not None else cores


def _affinity() -> list[int]:
    """The cores this process may run on, sorted (all of them off Linux)."""
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return list(range(os.cpu_count() or 1))


def cpu_quota(root: Path = CGROUP, membership: Path = Path("/proc/self/cgroup")) -> int | None:
    """The whole CPUs this process's control group may keep busy, its CPU bandwidth quota over its period rounded
    down (at least 1), the smallest along its path from the root of the hierarchy; None when no quota is set or
    none can be read (off Linux, say). A container run with `docker run --cpus 2` or a Kubernetes CPU limit sees
    every core of its host in its affinity but gets only this share of their time (Linux CFS bandwidth control):
    torch's threads beyond it wait for the next period, every op. Reads cgroup v2's `cpu.max` ("200000 100000":
    2) and v1's `cpu.cfs_quota_us` / `cpu.cfs_period_us` (-1: none) under `root`, at the paths `membership`
    (proc(5)'s /proc/PID/cgroup) names; in a container whose own group is mounted at the root, the root's."""
    try:
        lines = membership.read_text(encoding="utf-8", errors="surrogateescape").splitlines()
    except OSError:
        return None
    limits = []
    for line in lines:
        fields = line.split(":", 2)
        if len(fields) != 3 or not fields[2].startswith("/") or ".." in fields[2].split("/"):
            continue  # not a group's path under the mount (a process outside its cgroup namespace shows "/..")
        _, controllers, path = fields
        if controllers == "":  # v2: one unified hierarchy
            mount, read = root, _quota_v2
        elif "cpu" in controllers.split(","):
            mounts = [root / name for name in (controllers, "cpu", "cpu,cpuacct") if _is_dir(root / name)]
            if not mounts:
                continue
            mount, read = mounts[0], _quota_v1
        else:
            continue
        parts = Path(path.strip()).relative_to("/").parts
        limits += [q for depth in range(len(parts) + 1) if (q := read(mount.joinpath(*parts[:depth]))) is not None]
    return max(1, math.floor(min(limits))) if limits else None


def _is_dir(path: Path) -> bool:
    try:
        return path.is_dir()
    except OSError:  # a directory we may not look into (Python 3.11 raises EACCES here)
        return False


def _ratio(quota: str, period: str) -> float | None:
    """quota / period of two integers as a control group file writes them; None for "max", -1, 0 or garbage."""
    try:
        shares = int(quota), int(period)
    except ValueError:
        return None
    return shares[0] / shares[1] if min(shares) > 0 else None


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8", errors="surrogateescape")
    except OSError:
        return None


def _quota_v2(group: Path) -> float | None:
    text = _read(group / "cpu.max")
    fields = text.split() if text else []
    return _ratio(fields[0], fields[1]) if len(fields) >= 2 else None


def _quota_v1(group: Path) -> float | None:
    quota, period = _read(group / "cpu.cfs_quota_us"), _read(group / "cpu.cfs_period_us")
    return _ratio(quota.strip(), period.strip()) if quota and period else None


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
        line = re.search(r"^flags\s*:(.*)$", Path("/proc/cpuinfo").read_text(encoding="utf-8"), re.M)
    except OSError:
        line = None
    if line:
        flags = set(line.group(1).split())
    else:
        checks = {
            "amx_bf16": "_is_amx_tile_supported",
            "avx512_bf16": "_is_avx512_bf16_supported",
            "avx512_vnni": "_is_vnni_supported",
            "avx512f": "_is_avx512_supported",
            "avx2": "_is_avx2_supported",
        }
        flags = {flag for flag, check in checks.items() if getattr(torch.cpu, check, lambda: False)()}
    return tuple(name for flag, name in FEATURES.items() if flag in flags)
