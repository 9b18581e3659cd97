"""What several commands share: the parser class, the parent flags, the config flags, finding the data."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import NoReturn

from fmnist import config as config_lib
from fmnist import data, presets

Subcommands = argparse._SubParsersAction


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line instead of argparse's usage block
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def add_config_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("training options (override --config; defaults shown)")
    for name in config_lib.field_names():
        help, choices, default = config_lib.describe(name)
        shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
        text = help if "(default:" in help else f"{help} (default: {shown if shown != '' else 'none'})"
        if choices:
            text += f"; one of: {', '.join(choices)}"
        flag = "--" + name.replace("_", "-")
        if isinstance(default, bool):
            group.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=text)
        else:
            group.add_argument(flag, default=None, metavar=name.upper(), help=text)


def config_overrides(args: argparse.Namespace) -> dict:
    return {k: v for k, v in vars(args).items() if k in config_lib.field_names() and v is not None}


def load_data(data_dir: str | None) -> data.FashionMNIST:
    """The dataset as tensors, downloaded (saying so on stderr) when it is nowhere on the machine."""
    return data.load(data_dir or None, progress=_download_progress(data_dir))


def load_arrays(data_dir: str | None) -> data.Arrays:
    """`load_data` as numpy arrays, for a command that needs no torch."""
    return data.load_arrays(data_dir or None, progress=_download_progress(data_dir))


def _download_progress(data_dir: str | None) -> Callable[[str], None]:
    if data.locate(data_dir or None) is None:
        print(f"Fashion-MNIST not found locally; downloading to {data.cache_dir()}", file=sys.stderr)
    return lambda message: print(message, file=sys.stderr)


def requested_values(args: argparse.Namespace, overrides: dict) -> dict:
    """Config values asked for on the command line: the preset, then the --config file, then flags."""
    return presets.requested(args.preset, args.config, overrides)


def say_layout(source: str, layout: str | None) -> None:
    """For a bare state dict, what fmnist recognised in it (network, input scaling), on stderr."""
    if layout:
        print(f"fmnist: {source}: {layout}", file=sys.stderr)


BARE_STATE_DICT = (
    "a torch.save(model.state_dict()) file of the PyTorch Quickstart network or of an fmnist model "
    "(recognised by its keys and shapes; its input pixels are in [0, 1], as ToTensor() gives)"
)

# The --ood-threshold default, as predict and serve describe it (ood.KEEP, written out: this module imports no
# numpy; tests/test_cli.py holds them equal).
OOD_THRESHOLD_DEFAULT = (
    "the model's, which keeps 98.5%% of each kind of its held-out garment pictures; 0 accepts everything"
)


def shared_flags() -> dict[str, Parser]:
    """The flags several commands share, each written once (argparse parent parsers): --device,
    --data-dir, --preset, --config, --tta and --mlflow."""
    flags = {name: Parser(add_help=False) for name in ("device", "data_dir", "preset", "config", "tta", "mlflow")}
    flags["device"].add_argument(
        "--device",
        default="auto",
        choices=config_lib.DEVICES,
        help="where to run (default: auto: cuda, then mps, then cpu)",
    )
    flags["data_dir"].add_argument(
        "--data-dir",
        default="",
        help="directory of the IDX files, never the one a training run saved (default: search, then download)",
    )
    flags["preset"].add_argument(
        "--preset",
        metavar="NAME",
        help=f"a named config shipped with fmnist ({', '.join(presets.names())}); --config and flags override it",
    )
    flags["config"].add_argument("--config", help="TOML file of training options (flags override it)")
    flags["tta"].add_argument(
        "--tta",
        default="none",
        choices=("none", "flip"),
        help="test-time augmentation: "
        "flip averages the logits of each image and its mirror (2 model inputs "
        "per image) (default: none)",
    )
    flags["mlflow"].add_argument(
        "--mlflow",
        metavar="URI",
        help="also log to this MLflow tracking store: a server (http://host:5000), sqlite:///mlflow.db, a directory; "
        'needs pip install "fmnist[mlflow]"',
    )
    flags["mlflow"].add_argument(
        "--mlflow-experiment", metavar="NAME", default="fmnist", help="MLflow experiment (default: fmnist)"
    )
    return flags


def tracker(args: argparse.Namespace):
    """The MLflow Tracker that --mlflow asks for, or None; made before any work, so a bad URI fails first."""
    if not getattr(args, "mlflow", None):
        return None
    from fmnist.tracking import Tracker

    return Tracker(args.mlflow, args.mlflow_experiment)
