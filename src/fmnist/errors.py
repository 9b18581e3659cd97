"""The one exception type that means "the user asked for something we cannot do", and how its
messages reach a terminal."""

import io
import os
import re
import sys

# ECMA-48 control sequences (CSI such as colours "ESC [ 1 m", and two-character escapes), and the
# C0 control characters other than tab and newline (which plain() turns into spaces).
_ESCAPES = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b[@-_]|[\x00-\x08\x0b-\x1f\x7f]")


class FmnistError(Exception):
    """A user-facing error. The CLI prints its message as one line and exits with status 2.

    Raise it for bad input (files, flags, configs, checkpoints); let genuine bugs raise
    anything else so that they keep their traceback.
    """


def plain(message: str) -> str:
    """`message` as one line of plain text: terminal escape sequences and control characters
    removed (libraries such as PyTorch colour parts of their messages), runs of whitespace,
    line breaks included, made one space."""
    return " ".join(_ESCAPES.sub("", message).split())


# What splits or recolours a line of text: the C0 and C1 control characters (newline and tab included), DEL, and
# Unicode's line and paragraph separators (str.splitlines breaks at each); and the backslash, so that a name with a
# backslash and an "n" in it is not read as one with a newline.
_UNPRINTABLE = re.compile(r"[\\\x00-\x1f\x7f-\x9f\u2028\u2029]")


def printable(text: str) -> str:
    """`text` (a file name, say) with each character that would split or recolour its line, and the backslash, written
    as Python writes it in a string literal ("\\n", "\\t", "\\x1b", "\\u2028", "\\\\"); everything else, accents
    included, as it is. For plain-text output with one line per item, where the name must stay whole and
    recognisable."""
    return _UNPRINTABLE.sub(lambda found: repr(found.group())[1:-1], text)


def tolerant_streams() -> None:
    """Make standard output and error print what their encoding can show: under a Latin-1 or ASCII
    locale (or PYTHONIOENCODING) a character it lacks, such as the "—" of `compare`'s table or an accented
    file name, becomes "?" instead of a UnicodeEncodeError after the work is done. Processes started from
    this one (tune's and compare's workers, serve's) inherit the same through PYTHONIOENCODING. Files are
    not affected: fmnist writes them as UTF-8 whatever the locale."""
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper) and stream.errors == "strict":
            stream.reconfigure(errors="replace")
    encoding = os.environ.get("PYTHONIOENCODING", "")
    if ":" not in encoding:  # keep the encoding asked for, if any; add the error handler
        os.environ["PYTHONIOENCODING"] = f"{encoding}:replace"
