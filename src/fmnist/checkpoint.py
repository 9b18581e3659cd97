"""Checkpoints: plain dicts of tensors and Python values, written atomically, read with weights_only=True."""

from __future__ import annotations

import hashlib
import pickle
import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fmnist import config as config_lib
from fmnist import models, state_dicts
from fmnist.atomic import atomic_path
from fmnist.config import Config
from fmnist.errors import FmnistError

FORMAT = "fmnist-checkpoint-v1"
# A model card's config.json (card.py) keeps under this key what a checkpoint holds beside the weights.
CARD_KEY = "fmnist"
# How a torch.save file begins: a zip archive (PyTorch >= 1.6), or a pickle (protocol 2+) in the legacy format.
TORCH_FILE_STARTS = (b"PK\x03\x04", b"\x80")


def save(path: str | Path, state: dict[str, Any]) -> None:
    """Save `state` (model/optimizer/scheduler state dicts, epoch, RNG states, config, history)."""
    with atomic_path(path) as tmp:
        torch.save({"format": FORMAT, **state}, tmp)


def load(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint onto the CPU without executing any code it may carry; every failure is one FmnistError."""
    path = Path(path)
    state = _read(path)
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise FmnistError(f"{path}: not an fmnist checkpoint")
    return state


def read_card(path: Path) -> dict[str, Any]:
    """A model card's model.safetensors (card.py) as a checkpoint's state: the weights, and the config, epoch
    and trust kept in the config.json beside it. Raises FmnistError for a missing or unreadable file."""
    import json

    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from fmnist import textfile

    card = path.with_name("config.json")
    try:
        facts = json.loads(textfile.read(card, "model card config"))[CARD_KEY]
        weights = load_file(str(path))
    except (json.JSONDecodeError, KeyError, TypeError):
        raise FmnistError(f"{card}: not an fmnist model card's config.json (no {CARD_KEY!r} entry)") from None
    except (OSError, SafetensorError) as e:
        raise FmnistError(f"{path}: not a readable safetensors file: {e}") from None
    return {"format": FORMAT, "model": weights, **facts}


def _read(path: Path) -> Any:
    """What torch.load finds in `path`, tensors (on the CPU: a model is moved to its device after, and the
    detector's float64 tensors have no place on Apple's MPS device) and plain Python values only; a model card's
    weights (model.safetensors) with the facts of its config.json."""
    if path.suffix == ".safetensors":
        return read_card(path)
    try:
        with open(path, "rb") as file:
            start = file.read(4)
        if not start.startswith(TORCH_FILE_STARTS):
            # A text file, an image, an ONNX model: torch.load would blame "weights only" loading and suggest
            # weights_only=False, or name a KeyError; say what the file is not, and what fmnist loads.
            raise FmnistError(
                f"{path}: not a readable checkpoint: not a file torch.save writes (neither a zip "
                f"archive nor a pickle); {state_dicts.LOADABLE}"
            )
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise FmnistError(f"{path}: checkpoint not found") from None
    except FmnistError:
        raise
    except pickle.UnpicklingError as e:
        raise FmnistError(f"{path}: refused to load: {unsafe_content(str(e))}") from None
    except Exception as e:  # torch.load fails in many ways on a bad file; each is the file's fault
        raise FmnistError(f"{path}: not a readable checkpoint (truncated or corrupt?): {type(e).__name__}") from None


def unsafe_content(message: str) -> str:
    """Why torch.load(weights_only=True) refused a file, and what to do instead, from its message:
    whole sentences, without PyTorch's colours or its advice to load untrusted code."""
    found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", message)
    what = f"a pickled Python object ({found.group(1)})" if found else "Python objects other than tensors"
    return (
        f"it holds {what} (torch.save(model) writes one for a whole model), and loading that could run any code "
        "it carries. "
        "fmnist reads checkpoints of tensors and plain values, such as those fmnist train writes, and state dicts "
        "of the networks it knows: save the weights with torch.save(model.state_dict(), PATH)."
    )


def sha256(path: str | Path) -> str:
    """The SHA-256 of a file's bytes, hex: what names a checkpoint exactly (a parent of a fine-tuned run)."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as file:
            while chunk := file.read(1 << 20):
                digest.update(chunk)
    except OSError as e:
        raise FmnistError(f"{path}: cannot read it: {e.strerror or e}") from None
    return digest.hexdigest()


def config_of(state: dict[str, Any], path: str | Path) -> Config:
    try:
        return config_lib.from_dict(state["config"])
    except (KeyError, TypeError, FmnistError) as e:
        raise FmnistError(f"{path}: checkpoint holds no valid config ({e})") from None


def load_model(path: str | Path, device: str | torch.device = "cpu") -> tuple[nn.Module, Config, dict[str, Any]]:
    """Rebuild the model a checkpoint was trained with and load its weights, in eval mode.

    Also takes a state dict of a network fmnist knows (`state_dicts.recognise`), bare or in a training
    checkpoint of PyTorch's general-checkpoint recipe (`state_dicts.find_state_dict`); its "state" is then
    {"model": the weights, "config": the network's, "layout": what was recognised, in words, for the user}.
    Raises FmnistError, saying what fmnist can load, for anything else.
    """
    path = Path(path)
    state = _read(path)
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        bare = state_dicts.find_state_dict(state)
        if bare is None:
            raise FmnistError(f"{path}: not an fmnist checkpoint nor a model's state dict; {state_dicts.LOADABLE}")
        found = state_dicts.recognise(bare[0], path)
        layout = found.description + (f" (the file's {bare[1]!r} entry)" if bare[1] else "")
        state = {"model": found.weights, "config": config_lib.to_dict(found.config), "layout": layout}
    cfg = config_of(state, path)
    model = models.build(cfg)
    try:
        model.load_state_dict(state["model"])
    except (KeyError, RuntimeError) as e:
        detail = str(e).strip().splitlines()[0]
        raise FmnistError(f"{path}: weights do not fit the {cfg.model} architecture in its config: {detail}") from None
    return model.to(device).eval(), cfg, state
