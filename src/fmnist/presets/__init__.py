"""Named training configs shipped with the package: `fmnist train --preset NAME`.

A preset is a TOML file of config values in this directory; a --config file and flags
override it. `extends = "NAME"` starts a preset from another one's values, so a variant
states only what it changes. What each preset measured, and the command that measures it, is in the doc
each file names (docs/RESULTS.md, docs/STUDIES.md, docs/PERFORMANCE.md), not in the
files: numbers in comments would go stale.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

from fmnist import config as config_lib
from fmnist.errors import FmnistError


def names() -> list[str]:
    return sorted(p.name.removesuffix(".toml") for p in resources.files(__name__).iterdir() if p.name.endswith(".toml"))


def requested(preset: str | None, config_file: str | Path | None, values: dict[str, Any]) -> dict[str, Any]:
    """The config values asked for, later ones winning: the preset's, the TOML file's, then `values` (flags, or
    the Python API's keywords)."""
    return {**(load(preset) if preset else {}), **(config_lib.read_toml(config_file) if config_file else {}), **values}


def load(name: str) -> dict[str, Any]:
    """The preset's config values, checked against Config's fields and types."""
    if name not in names():
        raise FmnistError(f"unknown preset {name!r}; known: {', '.join(names())}")
    with resources.as_file(resources.files(__name__) / f"{name}.toml") as path:
        values = config_lib.load_toml_file(path)
        base = values.pop("extends", None)
        values = config_lib.checked(values, path)
    return {**load(base), **values} if base else values
