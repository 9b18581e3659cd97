"""Which device a run uses and which autocast it means there: the choices a config's `device` and
`amp` make, resolved in one place for training, evaluation, the bench and serving."""

from __future__ import annotations

import torch

from fmnist import cpu
from fmnist.errors import FmnistError


def select_device(name: str = "auto") -> torch.device:
    """`auto` picks cuda, then mps, then cpu; an explicit device that is missing is an error."""
    available = {
        "cuda": torch.cuda.is_available(),
        "mps": getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available(),
        "cpu": True,
    }
    if name == "auto":
        name = next(d for d in ("cuda", "mps", "cpu") if available[d])
    if name not in available:
        raise FmnistError(f"unknown device {name!r}; choose auto, cuda, mps or cpu")
    if not available[name]:
        raise FmnistError(f"device {name!r} is not available here (torch {torch.__version__}); use --device cpu")
    return torch.device(name)


def resolve_amp(amp: str, device: torch.device) -> tuple[str, str]:
    """The autocast a config's `amp` means on `device`, and why. "auto" is bf16 only where bf16
    runs natively: a CPU with AMX-BF16 or AVX512-BF16 (elsewhere it is emulated and slower than
    fp32), or a CUDA GPU that supports it."""
    if amp != "auto":
        return amp, "asked for"
    if device.type == "cuda":
        native = torch.cuda.is_bf16_supported()
        return ("bf16", "auto: the GPU has bf16") if native else ("none", "auto: the GPU lacks bf16")
    if device.type == "cpu":
        native_bf16 = [f for f in cpu.features() if f in ("AMX-BF16", "AVX512-BF16")]
        if native_bf16:
            return "bf16", f"auto: the CPU has {' and '.join(native_bf16)}"
        return "none", "auto: no AMX-BF16 or AVX512-BF16 on this CPU"
    return "none", f"auto: fp32 on {device.type}"
