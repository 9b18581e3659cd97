"""Honest measuring helpers shared by training summaries and `fmnist bench`: clocks, memory, hardware."""

from __future__ import annotations

import contextlib
import os
import platform
import resource
import subprocess
import sys
from pathlib import Path

import torch

from fmnist import cpu


def synchronize(device: torch.device) -> None:
    """Wait for queued device work so that a host clock reading covers it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def reset_peak_memory(device: torch.device) -> None:
    """Start a new peak: on CUDA the allocator's; elsewhere, on Linux, this process's resident set
    high-water mark (so that runs after one another in one process, as in compare and tune, each
    report their own peak rather than the largest so far)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    else:
        with contextlib.suppress(OSError):
            Path("/proc/self/clear_refs").write_text("5", encoding="utf-8")  # Linux >= 4.0: VmHWM := current RSS


def peak_memory_bytes(device: torch.device) -> int:
    """Peak allocated device memory on CUDA; elsewhere the peak resident set size of this process
    since reset_peak_memory (Linux), or over its lifetime where /proc is missing (macOS)."""
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    try:
        for line in Path("/proc/self/status").read_text(encoding="utf-8").splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024  # kB
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)  # Linux reports KiB, macOS bytes


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def hardware(device: torch.device) -> dict:
    """What a figure was measured on: enough to tell two machines apart."""
    info = {
        "device": str(device),
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "cpu_features": list(cpu.features()),
        "torch_threads": torch.get_num_threads(),
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        info["cuda_version"] = torch.version.cuda
    return info


def code_version() -> str | None:
    """The git commit of the fmnist source tree when it is a checkout, "-dirty" appended when tracked files
    differ from it (as `git describe --dirty` marks it); None outside a checkout."""
    commit = _git("rev-parse", "--short", "HEAD")
    if not commit:
        return None
    return f"{commit}-dirty" if _git("status", "--porcelain", "--untracked-files=no") else commit


def _git(*arguments: str) -> str | None:
    """Stripped output of a git command run in the source tree; None when git fails or is missing."""
    try:
        out = subprocess.run(["git", *arguments], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None
