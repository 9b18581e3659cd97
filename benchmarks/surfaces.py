"""Garments on textured surfaces, turned: per kind, accuracy, share kept as garments and ECE (after the run's
temperature, 15 bins), with the photo framing of this checkout beside that of a git revision (the baseline),
and predict's time per photo for both.

    python benchmarks/surfaces.py RUN_DIR [--per-kind 40] [--baseline main] [--seed 0] [--json FILE] [--outliers N]

Material, all rendered from the run's validation images (never the test set): fmnist.testing.surfaces on each
surface kind turned by up to 30 degrees, its flat surface turned and upright, fmnist.testing.domains' wood and cloth
(another renderer, turned by up to 12 degrees), and the product photos of fmnist.trust.references; then (drawn last,
so that the others are the pictures drawn before them) the surfaces.LATE kinds and EDGE_PHOTOS x --per-kind product
photos of a garment cut by the picture's edge. The framing's parameters were chosen on the kinds marked "tuned"; the
others were only looked at for this report. Timing: decode + frame + model + detector for 64 product photos and for
64 on wood and 64 on the `shade` table (an edge of light), the two framings alternating, median of --repeats, on one
thread. `--outliers N` also frames N non-garments of each kind and part of fmnist.testing.outliers both ways: the
share the detector rejects, and the share that took the segmentation path, so that a found "object" cannot pass for
a garment. Last, for each set, the pieces its pictures' border falls into off the background surface where the noise
alone does not decide (less than images.SURFACE_FIT of the border on the surface, noise under
images.SURFACE_MIN_NOISE): the figures behind images.SURFACE_PIECES; and, of those with fewer pieces and noise from
images.SHADED_NOISE, how far the border off the surface lies from it (levels, the median): the figures behind
images.SHADING.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch

from fmnist import data, trust
from fmnist import images as current
from fmnist.data import validation_split
from fmnist.inference import TorchPredictor
from fmnist.testing import domains, outliers, photos, surfaces
from fmnist.trust.calibration import measure

TUNED = ("wood", "cloth", "paper", "tile")  # the kinds the framing's parameters were chosen on
BATCH = 64


def baseline_framing(revision: str) -> ModuleType:
    """fmnist.images as it is at git `revision`, with fmnist.segmentation as it is there, imported under other names."""
    framing = _module_at(revision, "images")
    if hasattr(framing, "segmentation"):  # older framings had none
        framing.segmentation = _module_at(revision, "segmentation")
    return framing


def _module_at(revision: str, name: str) -> ModuleType:
    """src/fmnist/`name`.py as it is at git `revision`, imported as fmnist_`name`_baseline."""
    root = Path(__file__).resolve().parents[1]
    source = subprocess.run(
        ["git", "-C", str(root), "show", f"{revision}:src/fmnist/{name}.py"], capture_output=True, text=True, check=True
    ).stdout
    spec = importlib.util.spec_from_loader(f"fmnist_{name}_baseline", loader=None)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    exec(compile(source, f"{revision}:{name}.py", "exec"), module.__dict__)
    return module


def cues_of(framing: ModuleType, framed: list) -> list[current.Cues | None]:
    """The framed pictures' cues as this checkout's Cues: an older framing's have no `textured`, which its own
    on_texture then gives, so that the baseline is judged as it framed."""
    names = current.Cues.NAMES
    return [
        f.cues and current.Cues(**dict(zip(names, f.cues.values(), strict=True)), textured=_textured(framing, f.cues))
        for f in framed
    ]


def _textured(framing: ModuleType, cues: Any) -> bool:
    """Whether `framing` took the picture's surface as textured: its own flag, or, from a framing before the flag,
    its on_texture, or the noise rule it had before that."""
    textured = getattr(cues, "textured", None)
    if textured is not None:
        return textured
    if hasattr(framing, "on_texture"):
        return framing.on_texture(cues.border_fit, cues.noise)
    return cues.noise > current.SURFACE_NOISE or (
        cues.border_fit < current.SURFACE_FIT and cues.noise >= current.SURFACE_MIN_NOISE
    )


def scored(
    predictor: TorchPredictor, framing: ModuleType, files: list[bytes], labels: np.ndarray
) -> tuple[float, float, float]:
    """(accuracy, share kept as garments, ECE of the probabilities after the run's temperature) of the photos
    `files` framed by `framing`."""
    framed = [framing.load_picture(f, "photo") for f in files]
    views = torch.stack([f.image for f in framed])
    verdict = trust.judge(predictor.trust, predictor.logits(views), views, cues_of(framing, framed))
    probabilities = torch.as_tensor(verdict.probabilities)
    calibration = measure(probabilities, torch.as_tensor(labels))
    return calibration.accuracy, float(verdict.garment.mean()), calibration.ece


EDGE_PHOTOS = 4  # photos of a garment cut by the picture's edge, per --per-kind


def material(
    images: torch.Tensor, labels: torch.Tensor, per_kind: int, seed: int
) -> dict[str, tuple[list, np.ndarray]]:
    """{set name: (photo files, labels)}: each from its own random draw of `images`."""
    rng = np.random.default_rng(seed)
    sets: dict[str, tuple[list, np.ndarray]] = {}

    def pick() -> tuple[np.ndarray, np.ndarray]:
        index = rng.choice(len(images), per_kind, replace=False)
        return images[index].numpy(), labels[index].numpy()

    for kind in (k for k in surfaces.KINDS if k not in surfaces.LATE):
        chosen, truth = pick()
        sets[f"{kind} turned"] = (surfaces.render_many(chosen, kind, seed), truth)
    chosen, truth = pick()
    sets["flat upright"] = (surfaces.render_many(chosen, "flat", seed + 1, max_angle=0.0), truth)
    for domain in ("wood", "cloth"):
        chosen, truth = pick()
        sets[f"domains {domain}"] = (domains.render_many(chosen, domain, seed), truth)
    product = photos.render_set(images, per_kind * 2, seed)
    sets["product photos"] = ([p.data for p in product], labels[[p.index for p in product]].numpy())
    for kind in surfaces.LATE:
        chosen, truth = pick()
        sets[f"{kind} turned"] = (surfaces.render_many(chosen, kind, seed), truth)
    # A garment cut by the picture's edge on a plain backdrop covers part of the border, as a surface's shading does.
    index = rng.choice(len(images), EDGE_PHOTOS * per_kind, replace=False)
    edge = [photos.render(images[i].numpy(), "edge", rng)[0] for i in index]
    sets["product photos at the edge"] = (edge, labels[index].numpy())
    return sets


def per_photo_ms(
    predictor: TorchPredictor, framings: list[ModuleType], files: list[bytes], repeats: int
) -> list[float]:
    """Median milliseconds per photo of predict's work on a batch of `files`, for each framing, alternating."""
    times: list[list[float]] = [[] for _ in framings]
    for _ in range(repeats):
        for i, framing in enumerate(framings):
            start = time.perf_counter()
            framed = [framing.load_picture(f, "photo") for f in files]
            views = torch.stack([f.image for f in framed])
            trust.judge(predictor.trust, predictor.logits(views), views, cues_of(framing, framed))
            times[i].append(time.perf_counter() - start)
    return [1000 * float(np.median(t)) / len(files) for t in times]


def rejected(predictor: TorchPredictor, framing: ModuleType, files: list[bytes]) -> np.ndarray:
    """bool [N]: the detector calls the picture not a garment, as `framing` frames it."""
    framed = [framing.load_picture(f, "picture") for f in files]
    views = torch.stack([torch.as_tensor(np.asarray(f.pixels)) for f in framed])
    return ~trust.judge(predictor.trust, predictor.logits(views), views, cues_of(framing, framed)).garment


Weighed = tuple[float, float, int, float]  # the arguments of an images.on_texture call


def weighed(files: list[bytes]) -> list[list[Weighed]]:
    """For each picture, the (border fit, noise, pieces, distance off the surface) of every images.on_texture call
    while the current framing framed it: the path it took (segmented when one said textured) and the figures behind
    it."""
    seen: list[Weighed] = []
    original = current.on_texture

    def recorded(border_fit: float, noise: float, pieces: int, off_surface: float) -> bool:
        seen.append((border_fit, noise, pieces, off_surface))
        return original(border_fit, noise, pieces, off_surface)

    found = []
    current.on_texture = recorded
    try:
        for f in files:
            before = len(seen)
            current.load_picture(f, "picture")
            found.append(seen[before:])
    finally:
        current.on_texture = original
    return found


def pieces_row(calls: list[list[Weighed]]) -> dict[str, Any]:
    """Where the pieces and the shading decide (`weighed` calls of some pictures): how many pictures, the pieces of
    those whose noise alone does not decide (the last call of each), how many of them the pieces take as textured;
    then, of those with fewer pieces and noise from SHADED_NOISE, the distance of their border off the surface, and
    how many of them that takes as shaded."""
    undecided = [
        (pieces, noise, off)
        for fit, noise, pieces, off in (c[-1] for c in calls if c)
        if fit < current.SURFACE_FIT and noise < current.SURFACE_MIN_NOISE
    ]
    counted = sorted(pieces for pieces, _, _ in undecided)
    shaded = sorted(
        round(off, 1)
        for pieces, noise, off in undecided
        if pieces < current.SURFACE_PIECES and noise >= current.SHADED_NOISE
    )
    return {
        "pictures": len(calls),
        "undecided": len(undecided),
        "pieces": counted,
        "textured": sum(p >= current.SURFACE_PIECES for p in counted),
        "off_surface": shaded,
        "shaded": sum(off < current.SHADING for off in shaded),
    }


def outlier_rows(predictor: TorchPredictor, baseline: ModuleType, count: int, seed: int) -> dict[str, dict]:
    print("\n| non-garments | rejected now | rejected baseline | segmented now |\n|---|---|---|---|")
    rows = {}
    for part in outliers.PARTS:
        pictures = outliers.build(count, part, seed)
        files, kinds = [p.data for p in pictures], np.array([p.kind for p in pictures])
        now, before, calls = rejected(predictor, current, files), rejected(predictor, baseline, files), weighed(files)
        split = np.array([any(current.on_texture(*args) for args in c) for c in calls])
        for kind in outliers.KINDS:
            sel = kinds == kind
            row = {"rejected": float(now[sel].mean()), "baseline_rejected": float(before[sel].mean())}
            row["segmented"] = float(split[sel].mean())
            row["pieces"] = pieces_row([c for c, chosen in zip(calls, sel, strict=True) if chosen])
            rows[f"{kind} ({part})"] = row
            print(
                f"| {kind} ({part}) | {row['rejected']:.0%} | {row['baseline_rejected']:.0%} | {row['segmented']:.0%} |"
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run", help="a run directory or its best.pt")
    parser.add_argument("--per-kind", type=int, default=40, help="photos per kind (default: 40)")
    parser.add_argument("--baseline", default="main", help="git revision of the framing to compare with")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=5, help="timing repeats (default: 5)")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--outliers", type=int, default=0, help="non-garments per kind and part (default: none)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    predictor = TorchPredictor(args.run)
    dataset = data.load()
    _, val = validation_split(dataset.train_labels, predictor.config)
    images, labels = dataset.train_images[val], dataset.train_labels[val]
    baseline = baseline_framing(args.baseline)
    sets = material(images, labels, args.per_kind, args.seed)
    print(f"{args.per_kind} validation images per kind (product photos: {2 * args.per_kind}), seed {args.seed}")
    print(f"baseline: the framing at {args.baseline}; now: this checkout\n")
    print(
        "| photos | tuned on | accuracy now | kept now | ECE now | accuracy baseline | kept baseline |\n"
        "|---|---|---|---|---|---|---|"
    )
    rows = {}
    for name, (files, truth) in sets.items():
        now, before = scored(predictor, current, files, truth), scored(predictor, baseline, files, truth)
        tuned = "yes" if name.split()[0] in TUNED and not name.startswith("domains") else "no"
        rows[name] = {
            "accuracy": now[0],
            "kept": now[1],
            "ece": now[2],
            "baseline_accuracy": before[0],
            "baseline_kept": before[1],
        }
        print(f"| {name} | {tuned} | {now[0]:.1%} | {now[1]:.1%} | {now[2]:.1%} | {before[0]:.1%} | {before[1]:.1%} |")
    groups = {
        "textured turned": [f"{k} turned" for k in surfaces.TEXTURED],
        "held-out textured": [f"{k} turned" for k in surfaces.SHIPPED],
    }
    for group, names in groups.items():
        for key in ("accuracy", "kept", "ece", "baseline_accuracy", "baseline_kept"):
            rows.setdefault(group, {})[key] = float(np.mean([rows[n][key] for n in names]))
        r = rows[group]
        print(
            f"| **{group}** | | {r['accuracy']:.1%} | {r['kept']:.1%} | {r['ece']:.1%} | {r['baseline_accuracy']:.1%} "
            f"| {r['baseline_kept']:.1%} |"
        )
    timing = {}
    for name in ("product photos", "wood turned", "shade turned"):
        files = (sets[name][0] * 2)[:BATCH]
        now_ms, before_ms = per_photo_ms(predictor, [current, baseline], files, args.repeats)
        timing[name] = {"now_ms": now_ms, "baseline_ms": before_ms, "ratio": now_ms / before_ms}
        print(
            f"\npredict per photo, batch of {BATCH} {name}: {now_ms:.2f} ms now, {before_ms:.2f} ms baseline "
            f"({now_ms / before_ms:.2f}x; median of {args.repeats}, 1 thread)",
            end="",
        )
    print()
    found = outlier_rows(predictor, baseline, args.outliers, args.seed + 100) if args.outliers else {}
    print(
        "\n| pictures | count | border off the surface, noise alone undecided | pieces there | textured by them "
        "| fewer pieces, noise from SHADED_NOISE | off the surface there (levels) | shaded by it |\n"
        "|---|---|---|---|---|---|---|---|"
    )
    pieces = {name: pieces_row(weighed(files)) for name, (files, _) in sets.items()}
    pieces |= {name: row.pop("pieces") for name, row in found.items()}
    for name, row in pieces.items():
        span = f"{row['pieces'][0]}-{row['pieces'][-1]}" if row["pieces"] else "-"
        off = row["off_surface"]
        spread = f"{off[0]}-{off[-1]} (median {np.median(off):.1f})" if off else "-"
        print(
            f"| {name} | {row['pictures']} | {row['undecided']} | {span} | {row['textured']} "
            f"| {len(off)} | {spread} | {row['shaded']} |"
        )
    if args.json:
        results = {"rows": rows, "timing": timing, "outliers": found, "pieces": pieces}
        args.json.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
