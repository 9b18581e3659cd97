"""Checkpoints: plain dicts of tensors and Python values, written atomically, read with weights_only=True."""

from __future__ import annotations

import pickle
import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fmnist import config as config_lib
from fmnist import models
from fmnist.atomic import atomic_path
from fmnist.config import Config
from fmnist.errors import FmnistError

FORMAT = "fmnist-checkpoint-v1"


def save(path: str | Path, state: dict[str, Any]) -> None:
    """Save `state` (model/optimizer/scheduler state dicts, epoch, RNG states, config, history)."""
    with atomic_path(path) as tmp:
        torch.save({"format": FORMAT, **state}, tmp)


def load(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint without executing any code it may carry; every failure is one FmnistError."""
    path = Path(path)
    if path.is_dir():
        path = resolve_run_checkpoint(path)
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise FmnistError(f"{path}: checkpoint not found") from None
    except pickle.UnpicklingError as e:
        raise FmnistError(f"{path}: refused to load: {unsafe_content(str(e))}") from None
    except Exception as e:  # torch.load fails in many ways on a bad file; each is the file's fault
        raise FmnistError(f"{path}: not a readable checkpoint (truncated or corrupt?): {type(e).__name__}") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise FmnistError(f"{path}: not an fmnist checkpoint")
    return state


def unsafe_content(message: str) -> str:
    """Why torch.load(weights_only=True) refused a file, and what to do instead, from its message:
    whole sentences, without PyTorch's colours or its advice to load untrusted code."""
    found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", message)
    what = f"a pickled Python object ({found.group(1)})" if found else "Python objects other than tensors"
    return (
        f"it holds {what} (torch.save(model) writes one for a whole model), and loading that could run any code "
        "it carries. "
        "fmnist reads only checkpoints of tensors and plain values, such as those fmnist train writes: "
        "train one with fmnist train, or save the weights with torch.save(model.state_dict(), PATH)."
    )


def resolve_run_checkpoint(run_dir: Path) -> Path:
    """A run directory stands for its best checkpoint (chosen on validation), else its last."""
    for name in ("best.pt", "last.pt"):
        if (run_dir / "checkpoints" / name).exists():
            return run_dir / "checkpoints" / name
    raise FmnistError(f"{run_dir}: no checkpoints/best.pt or checkpoints/last.pt in this directory")


def config_of(state: dict[str, Any], path: str | Path) -> Config:
    try:
        return config_lib.from_dict(state["config"])
    except (KeyError, TypeError, FmnistError) as e:
        raise FmnistError(f"{path}: checkpoint holds no valid config ({e})") from None


def load_model(path: str | Path, device: str | torch.device = "cpu") -> tuple[nn.Module, Config, dict[str, Any]]:
    """Rebuild the model a checkpoint was trained with and load its weights, in eval mode."""
    state = load(path, map_location=device)
    cfg = config_of(state, path)
    model = models.build(cfg)
    try:
        model.load_state_dict(state["model"])
    except (KeyError, RuntimeError) as e:
        detail = str(e).strip().splitlines()[0]
        raise FmnistError(f"{path}: weights do not fit the {cfg.model} architecture in its config: {detail}") from None
    return model.to(device).eval(), cfg, state
