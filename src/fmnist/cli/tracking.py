"""fmnist log: a finished (or interrupted) run, compare experiment or tune study logged to MLflow after the fact."""

from __future__ import annotations

import argparse

from fmnist.cli.common import Parser, Subcommands, tracker


def add_parsers(sub: Subcommands, shared: dict[str, Parser]) -> None:
    """log."""
    p = sub.add_parser(
        "log",
        help="log a run, a compare experiment or a tune study to MLflow (again: nothing is logged twice)",
        parents=[shared["mlflow"]],
    )
    p.add_argument("directory", help="a run directory, a compare --out directory or a tune study directory")
    p.set_defaults(func=cmd_log)


def cmd_log(args: argparse.Namespace) -> int:
    from fmnist.errors import FmnistError
    from fmnist.tracking import directory_kind, log_directory

    if not args.mlflow:
        raise FmnistError("log needs --mlflow URI: the MLflow tracking store to log to")
    directory_kind(args.directory)  # a wrong path fails before MLflow is imported or a store created
    found = tracker(args)
    assert found is not None
    log_directory(found, args.directory)
    return 0
