"""The program: the parser of every command, and the error policy (one line and a status for each kind of failure)."""

from __future__ import annotations

import argparse
import errno
import os
import sys

from fmnist import __version__, signals
from fmnist.cli import adapt, bench, card, export, predict, serve, studies, tracking, train
from fmnist.cli import data as data_cmd
from fmnist.cli import eval as evaluation
from fmnist.cli.common import Parser, shared_flags
from fmnist.errors import FmnistError, plain, tolerant_streams

DESCRIPTION = "Command line: parses arguments and calls the library. Every user mistake ends in one line and exit 2."


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="fmnist", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"fmnist {__version__}")
    # A command's `uses_torch(args)` says whether it will import torch; those that may not set their own.
    parser.set_defaults(uses_torch=lambda args: True)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    shared = shared_flags()
    for add in (
        train.add_parsers,
        adapt.add_parsers,
        evaluation.add_parsers,
        predict.add_parsers,
        serve.add_parsers,
        train.add_calibrate_parser,
        export.add_parsers,
        card.add_parsers,
        data_cmd.add_parsers,
        bench.add_parsers,
        studies.add_parsers,
        tracking.add_parsers,
    ):
        add(sub, shared)
    return parser


# What to do about the machine's errors that users meet most; others get the system's words alone.
OS_ERROR_NEXT_STEPS = {
    errno.ENOSPC: "Free some disk space and run the command again (fmnist train --resume DIR continues a run).",
    errno.EDQUOT: "Free some space within your disk quota and run the command again.",
    errno.EACCES: "Check the permissions of the file and its directory, or choose another path.",
    errno.EPERM: "Check the permissions of the file and its directory, or choose another path.",
    errno.EROFS: "Choose a path on a writable file system.",
    errno.ENOENT: "Check the path.",
}


def describe_os_error(e: OSError) -> str:
    """An OSError as whole sentences: the file, the system's reason, and a next step where one is known."""
    where = f"{e.filename}: " if e.filename else ""
    reason = (e.strerror or str(e)).rstrip(".")
    step = OS_ERROR_NEXT_STEPS.get(e.errno) if e.errno is not None else None
    return f"{where}{reason}." + (f" {step}" if step else "")


# The status a shell reports for a tool stopped by SIGPIPE (128 + 13): `yes | head -1` gives it to yes.
CLOSED_PIPE_STATUS = 141


def main(argv: list[str] | None = None) -> int:
    """Run one command; its status. Output to a closed pipe (`fmnist data info | head -1`) ends the
    command quietly with CLOSED_PIPE_STATUS, by the recipe of Python's signal module documentation
    ("Note on SIGPIPE"): standard output is flushed inside the try, then pointed at /dev/null so
    that the interpreter's own flush at exit cannot fail again. Output that the terminal's encoding
    cannot show is replaced ("?"), never an error (errors.tolerant_streams)."""
    tolerant_streams()
    try:
        try:
            return run_command(argv)
        finally:
            sys.stdout.flush()  # also behind argparse's SystemExit (--help, --version)
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        for stream in (sys.stdout, sys.stderr):  # stderr may be the closed pipe too (2>&1 | head)
            try:
                os.dup2(devnull, stream.fileno())
            except (OSError, ValueError):  # not a file descriptor (captured output)
                pass
        return CLOSED_PIPE_STATUS


def run_command(argv: list[str] | None) -> int:
    try:
        args = build_parser().parse_args(argv)
        if args.uses_torch(args):  # torch only once a command that needs it runs: not for --help or `data info`
            from fmnist import cpu

            cpu.within_quota()  # predict, eval, export... in a container with a CPU limit
            cpu.flush_denormals()  # before torch starts its thread pool, which then inherits it
        with signals.handled(hold_hangup=getattr(args, "hangup", "") == "reload"):
            code = args.func(args)
        sys.stdout.flush()  # here, where a reader that went away is caught, rather than at exit
        return code
    except FmnistError as e:
        print(f"fmnist: error: {plain(str(e))}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        raise  # main's quiet exit
    except OSError as e:  # a full disk, a vanished directory: the machine's state, not a bug
        print(f"fmnist: error: {plain(describe_os_error(e))}", file=sys.stderr)
        return 1
    except (KeyboardInterrupt, signals.Stopped) as stop:
        return signals.report(stop)
