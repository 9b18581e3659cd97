"""Reading the text files people write with other tools: the one reader behind every text file fmnist
reads (TOML configs, presets and experiment files, API key files, JSON sidecars and settings, a run's
records).

What editors save and people mean is read as meant: UTF-8 with or without a byte-order mark (Notepad's
"UTF-8 with BOM"), UTF-16 and UTF-32 with a byte-order mark (Notepad's and PowerShell's "Unicode"), and
Windows (CRLF) or old Mac (CR) line ends, which become "\\n". Anything else is refused in one line that
names the file and what is wrong with it: bytes that are not UTF-8 (a Latin-1 or Windows-1252 file), UTF-16
without a byte-order mark (NUL bytes between the letters), a binary file. The encoding is never taken from
the locale, so a file reads the same under any LANG.
"""

from __future__ import annotations

import codecs
from pathlib import Path

from fmnist.errors import FmnistError

# Longest first: the UTF-32 LE mark begins with the UTF-16 LE one.
BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32-le", "UTF-32"),
    (codecs.BOM_UTF32_BE, "utf-32-be", "UTF-32"),
    (codecs.BOM_UTF8, "utf-8", "UTF-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le", "UTF-16"),
    (codecs.BOM_UTF16_BE, "utf-16-be", "UTF-16"),
)
SAVE_AS = "save it as UTF-8 text"


def decode(raw: bytes, name: str) -> str:
    """The text of a file's bytes `raw` (see the module's docstring); `name` names it in FmnistError."""
    encoding, label = "utf-8", "UTF-8"
    for bom, codec, what in BOMS:
        if raw.startswith(bom):
            raw, encoding, label = raw[len(bom) :], codec, what
            break
    if encoding == "utf-8" and b"\x00" in raw:
        looks = "UTF-16 without a byte-order mark" if raw[1::2].count(0) > len(raw) // 4 else "a binary file"
        raise FmnistError(f"{name}: NUL bytes in it (it looks like {looks}); {SAVE_AS}")
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError as e:
        bad = raw[e.start : e.start + 1].hex()
        raise FmnistError(
            f"{name}: not {label} text (byte 0x{bad} at offset {e.start}); {SAVE_AS}"
            + (" (it may be Latin-1 or Windows-1252)" if label == "UTF-8" else "")
        ) from None
    if "\x00" in text:
        raise FmnistError(f"{name}: NUL characters in it (it looks like a binary file); {SAVE_AS}")
    return text.replace("\r\n", "\n").replace("\r", "\n")


def read(path: str | Path, what: str = "file") -> str:
    """The text of the file at `path`, read as `decode` says. FmnistError (naming the file and `what` it
    is) for a missing or unreadable file and for text that cannot be read as meant."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise FmnistError(f"{path}: {what} not found") from None
    except IsADirectoryError:
        raise FmnistError(f"{path}: is a directory; expected the {what}") from None
    except OSError as e:
        raise FmnistError(f"{path}: cannot read the {what}: {e.strerror or e}") from None
    return decode(raw, f"{path} ({what})")


def lines(path: str | Path, what: str = "file") -> list[str]:
    """The meaningful lines of a line-per-entry file: each stripped of surrounding spaces and tabs, without
    blank lines and comment lines (starting with #)."""
    stripped = (line.strip() for line in read(path, what).split("\n"))
    return [line for line in stripped if line and not line.startswith("#")]
