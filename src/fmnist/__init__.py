"""fmnist: fast, reproducible Fashion-MNIST training, evaluation and profiling on PyTorch.

The Python API (docs/PYTHON.md) is reached through this package's attributes, imported on first use so
that `import fmnist` stays cheap (no torch):

    run = fmnist.train(epochs=5, out="runs/a")
    model = fmnist.load("runs/a")
    model.predict(["photo.jpg"])
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from fmnist.version import __version__

# Attribute -> the module that defines it.
_API = {
    "train": "fmnist.api",
    "load": "fmnist.api",
    "Run": "fmnist.api",
    "Model": "fmnist.api",
    "Evaluated": "fmnist.api",
    "Heatmap": "fmnist.api",
    "Table": "fmnist.api",
    "compare": "fmnist.api",
    "tune": "fmnist.api",
    "Answer": "fmnist.answer",
    "Config": "fmnist.config",
    "FmnistError": "fmnist.errors",
    "NonFiniteLoss": "fmnist.training",
    "TrainingFailed": "fmnist.training",
    "CLASSES": "fmnist.data",
}
__all__ = ["__version__", *_API]

if TYPE_CHECKING:
    from fmnist.answer import Answer as Answer
    from fmnist.api import Evaluated as Evaluated
    from fmnist.api import Heatmap as Heatmap
    from fmnist.api import Model as Model
    from fmnist.api import Run as Run
    from fmnist.api import Table as Table
    from fmnist.api import compare as compare
    from fmnist.api import load as load
    from fmnist.api import train as train
    from fmnist.api import tune as tune
    from fmnist.config import Config as Config
    from fmnist.data import CLASSES as CLASSES
    from fmnist.errors import FmnistError as FmnistError
    from fmnist.training import NonFiniteLoss as NonFiniteLoss
    from fmnist.training import TrainingFailed as TrainingFailed


def __getattr__(name: str) -> Any:
    if name not in _API:
        raise AttributeError(f"module 'fmnist' has no attribute {name!r}")
    value = getattr(importlib.import_module(_API[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_API})
