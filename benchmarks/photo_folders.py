"""Product-style photos rendered from Fashion-MNIST images (fmnist.testing.photos), written as one folder per
class: a labelled photo collection for `fmnist eval MODEL --images DIR`, as a user would sort their own.

    python benchmarks/photo_folders.py DIR [--n 200] [--seed 0] [--split test]

Folder names vary in case and punctuation on purpose (t-shirt_top, Trousers, ankle-boot, ...), as people
name them. `--split test` renders test images, unseen by any model fmnist trains; `--split train` renders
training images (use it when changing anything that the photos' accuracy could steer).
"""

import argparse
from pathlib import Path

from fmnist import data
from fmnist.atomic import atomic_write
from fmnist.testing import photos

FOLDERS = ("t-shirt_top", "Trousers", "pullover", "Dress", "COAT", "sandals", "shirt", "Sneaker", "bags", "ankle-boot")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", help="directory to write the class folders into")
    parser.add_argument("--n", type=int, default=200, help="photos in all (default: 200, about 20 per class)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the image choice and the rendering (default: 0)")
    parser.add_argument("--split", choices=("test", "train"), default="test", help="source images (default: test)")
    args = parser.parse_args()
    dataset = data.load()
    images = dataset.test_images if args.split == "test" else dataset.train_images
    labels = dataset.test_labels if args.split == "test" else dataset.train_labels
    for photo in photos.render_set(images, args.n, args.seed):
        folder = Path(args.out) / FOLDERS[int(labels[photo.index])]
        atomic_write(folder / f"{args.split}-{photo.index:05d}-{photo.kind}{photo.suffix}", photo.data)
    per_class = [len(list((Path(args.out) / name).glob("*"))) for name in FOLDERS]
    print(
        f"wrote {args.n} photos into {len(FOLDERS)} class folders under {args.out} "
        f"({min(per_class)}-{max(per_class)} per class)"
    )


if __name__ == "__main__":
    main()
