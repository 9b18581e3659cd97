"""Shares of a py-spy profile (collapsed stacks, `py-spy record --format raw`) spent under named frames.

    python benchmarks/collapsed_shares.py serve.collapsed load_picture read_uploads build_answer

A sample counts for a name when any frame of its stack contains it (a frame with everything it calls);
shares are of all samples in the file (with `--gil`: the samples in which a thread held the GIL).
"""

from __future__ import annotations

import sys
from pathlib import Path


def shares(path: str, names: list[str]) -> dict[str, float]:
    total = 0
    counts = dict.fromkeys(names, 0)
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        stack, _, count = line.rpartition(" ")
        n = int(count)
        total += n
        for name in names:
            if name in stack:
                counts[name] += n
    return {name: counts[name] / max(total, 1) for name in names} | {"samples": total}


if __name__ == "__main__":
    for name, share in shares(sys.argv[1], sys.argv[2:]).items():
        print(f"{name}: {share:.1%}" if name != "samples" else f"samples: {share:,.0f}")
