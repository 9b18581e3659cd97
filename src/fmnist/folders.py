"""A user's labelled pictures: one sub-folder per class, each picture framed as `predict` frames it.

    photos/
      trouser/      IMG_0412.jpg ...
      T-shirt_top/  ...
      9/            (class index: Ankle boot)

A folder is named by its class index 0-9 or by the class name, with case, spaces and punctuation
ignored and plurals accepted ("t-shirt", "T-shirt_top", "tshirts", "ankle boots"). Pictures inside
are found by images.collect_images and framed by images.load_image, so the model sees exactly what
`fmnist predict` would show it.
"""

from __future__ import annotations

import hashlib
import re
from collections import defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from fmnist.data import CLASSES, SIDE
from fmnist.errors import FmnistError
from fmnist.images import SKIP_HIDDEN, SYSTEM_FILES, Cues, collect_images, load_picture


def _key(name: str) -> str:
    return re.sub(r"[^0-9a-z]", "", name.lower())


def _aliases() -> dict[str, int]:
    """Normalised folder name -> class index: the index, the name, each "/"-part, and their plurals."""
    aliases: dict[str, int] = {}
    for index, name in enumerate(CLASSES):
        words = {_key(name), *(_key(part) for part in name.split("/"))}
        aliases[str(index)] = index
        for word in words:
            aliases[word] = index
            aliases[word + ("es" if word.endswith("s") else "s")] = index
    return aliases


ALIASES = _aliases()
# Folders that archive tools, notebooks and file systems leave beside the class folders: skipped and
# counted, as any dot-folder is (a .git, a .ipynb_checkpoints).
SYSTEM_FOLDERS = frozenset({"__macosx", "__pycache__", "$recycle.bin", "system volume information"})
SKIP_SYSTEM_FOLDER = (
    "folder left by an archive tool, a notebook or the system (__MACOSX, .ipynb_checkpoints, dot-folders)"
)
ACCEPTED = (
    "a class index 0-9 or a class name ("
    + ", ".join(CLASSES)
    + "; case, spaces and punctuation ignored, plurals accepted)"
)


def class_of_folder(name: str) -> int | None:
    """The class index a folder name stands for, or None."""
    return ALIASES.get(_key(name))


@dataclass
class LabelledImages:
    images: torch.Tensor  # uint8 [N, 28, 28], as the model sees them
    labels: torch.Tensor  # int64 [N]
    paths: list[Path]  # the file of each image
    problems: list[str] = field(default_factory=list)  # one line per file or folder left out, and why
    skipped: dict[str, int] = field(default_factory=dict)  # reason -> files left out of the folders
    cues: list[Cues | None] = field(default_factory=list)  # framing's cues per image (trust.ood)


def load_folders(root: str | Path, *, skip_unknown: bool = False) -> LabelledImages:
    """Every picture under `root`'s class folders with its label, in class order, then file name order.

    Unreadable pictures are left out, each named in `problems`; hidden, system and non-image files,
    and the folders archive tools and notebooks leave (SYSTEM_FOLDERS, dot-folders), are counted in
    `skipped`. Raises FmnistError (one line) when `root` is no directory, a folder name is no class
    (naming the accepted names; with `skip_unknown` that folder is left out and named in `problems`
    instead), or no picture can be read.
    """
    root = Path(root)
    if not root.is_dir():
        problem = "not a directory" if root.exists() else "no such directory"
        raise FmnistError(f"{root}: {problem} (expected one sub-folder of pictures per class)")
    folders, problems, skipped = _class_folders(root, skip_unknown)
    images, labels, paths, cues = [], [], [], []
    for label, folder in sorted(folders):
        found = collect_images([str(folder)])
        # Each file left out of a class folder is named (it may be a photo the user meant); hidden ones are counted.
        problems += [f"{path}: {reason}, left out" for path, reason in found.left_out]
        if hidden := found.skipped.get(SKIP_HIDDEN, 0):
            skipped[SKIP_HIDDEN] = skipped.get(SKIP_HIDDEN, 0) + hidden
        for path in found.paths:
            try:
                picture = load_picture(path)
            except FmnistError as e:
                problems.append(f"{e}, left out")
                continue
            images.append(picture.image)
            cues.append(picture.cues)
            labels.append(label)
            paths.append(path)
    if not images:
        raise FmnistError(
            f"{root}: no readable pictures in its class folders" + (f" ({len(problems)} left out)" if problems else "")
        )
    stacked = torch.stack(images).reshape(-1, SIDE, SIDE)
    return LabelledImages(stacked, torch.tensor(labels), paths, problems, skipped, cues)


def _class_folders(root: Path, skip_unknown: bool) -> tuple[list[tuple[int, Path]], list[str], dict[str, int]]:
    """(label, folder) of each class folder under `root`, the folders left out (`skip_unknown`), and the
    counts of the other entries skipped; raises FmnistError as load_folders says."""
    folders: list[tuple[int, Path]] = []
    problems: list[str] = []
    stray = hidden = junk_folders = 0
    for entry in sorted(root.iterdir()):
        if entry.is_dir() and (entry.name.startswith(".") or entry.name.lower() in SYSTEM_FOLDERS):
            junk_folders += 1
            continue
        if entry.name.startswith(".") or entry.name.lower() in SYSTEM_FILES:
            hidden += 1  # counted like those inside the class folders (a .DS_Store, a .git)
            continue
        if not entry.is_dir():
            stray += 1
            continue
        label = class_of_folder(entry.name)
        if label is None and skip_unknown:
            problems.append(f"{entry}: folder name is not a class, so its pictures are left out; name it by {ACCEPTED}")
        elif label is None:
            raise FmnistError(f"{entry}: folder name is not a class; name each folder by {ACCEPTED}")
        else:
            folders.append((label, entry))
    if not folders:
        raise FmnistError(f"{root}: no class folders inside; make one per class, named by {ACCEPTED}")
    skipped = {"files outside class folders": stray} if stray else {}
    if hidden:
        skipped[SKIP_HIDDEN] = hidden
    if junk_folders:
        skipped[SKIP_SYSTEM_FOLDER] = junk_folders
    return folders, problems, skipped


def digest(path: Path) -> str:
    """SHA-256 of a file's bytes, hex."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def without_duplicates(found: LabelledImages) -> LabelledImages:
    """`found` with each file's bytes counted once: a picture found twice in one class keeps its first copy,
    and one found in two classes is left out everywhere (its label is unknown); each is named in `problems`.
    Fine-tuning needs it: a copy would be trained on and also held out to judge the result."""
    copies: dict[str, list[int]] = defaultdict(list)
    for i, path in enumerate(found.paths):
        copies[digest(path)].append(i)
    keep, problems = [], list(found.problems)
    for group in copies.values():
        classes = sorted({int(found.labels[i]) for i in group})
        if len(classes) > 1:
            where = ", ".join(f"{found.paths[i]} ({CLASSES[int(found.labels[i])]})" for i in group)
            problems.append(f"the same picture is in {len(classes)} classes, so it is left out: {where}")
            continue
        keep.append(group[0])
        problems += [f"{found.paths[i]}: the same picture as {found.paths[group[0]]}, counted once" for i in group[1:]]
    keep.sort()
    index = torch.tensor(keep, dtype=torch.long)
    return replace(
        found,
        images=found.images[index],
        labels=found.labels[index],
        paths=[found.paths[i] for i in keep],
        cues=[found.cues[i] for i in keep],
        problems=problems,
    )
