"""Command line: parses arguments and calls the library, one module per command family. Every user
mistake ends in one line and exit 2."""

from fmnist.cli.entry import CLOSED_PIPE_STATUS, build_parser, main

__all__ = ["CLOSED_PIPE_STATUS", "build_parser", "main"]
