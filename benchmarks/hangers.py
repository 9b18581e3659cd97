"""Garments on a wire hanger against the same photos without it.

    python benchmarks/hangers.py RUN_DIR [--per-class 40] [--seed 0] [--json FILE]

--per-class validation images of each top, dress and coat class of the run, each rendered as a product photo
(fmnist.trust.references' kinds in turn but "edge", which leaves no room above the garment) and on a wire hanger
(fmnist.testing.photos.on_hanger: the same photo but for the hanger). Per class, accuracy and the share the run's
detector keeps, alone and on the hanger.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from fmnist import data
from fmnist.data import CLASSES
from fmnist.inference import TorchPredictor
from fmnist.testing import photos

sys.path.insert(0, str(Path(__file__).parent))
from facing import arguments, judged, validation_images  # noqa: E402  (the same options and measure as benchmarks/facing.py)

HUNG = (0, 2, 3, 4, 6)  # T-shirt/top, pullover, dress, coat, shirt
KINDS = tuple(kind for kind in photos.KINDS if kind != "edge")


def main() -> None:
    args = arguments(__doc__)
    predictor = TorchPredictor(args.run)
    dataset = data.load()
    val_x, val_y = validation_images(predictor, dataset)
    rng = np.random.default_rng(args.seed)
    print(f"{args.per_class} validation images a class as product photos; right / kept:\n")
    print("| class | alone | on a hanger |\n|---|---|---|")
    results: dict[str, dict] = {}
    for c in HUNG:
        picks = rng.choice(np.flatnonzero(val_y == c), args.per_class, replace=False)
        files: dict[str, list[bytes]] = {"alone": [], "on a hanger": []}
        for n, i in enumerate(picks):
            kind, seed = KINDS[n % len(KINDS)], int(rng.integers(2**32))
            files["alone"].append(photos.render(val_x[i], kind, np.random.default_rng(seed))[0])
            wire = np.random.default_rng(seed + 1)
            files["on a hanger"].append(photos.on_hanger(val_x[i], kind, np.random.default_rng(seed), wire)[0])
        labels = np.full(args.per_class, c)
        row = {}
        for photo, chosen in files.items():
            right, kept, _ = judged(predictor, chosen, labels)
            row[photo] = {"right": right, "kept": kept}
        results[CLASSES[c]] = row
        print(f"| {CLASSES[c]} | " + " | ".join(f"{r['right']:.1%} / {r['kept']:.1%}" for r in row.values()) + " |")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
