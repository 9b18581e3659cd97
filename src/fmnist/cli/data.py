"""fmnist data: dataset info, verification and a sample grid."""

from __future__ import annotations

import argparse

from fmnist import data
from fmnist.cli.common import Parser, Subcommands, load_arrays, load_data


def add_parsers(sub: Subcommands, shared: dict[str, Parser]) -> None:
    """data."""
    data_dir = shared["data_dir"]
    p = sub.add_parser("data", help="dataset info, verification and a sample grid", parents=[data_dir])
    p.add_argument("action", choices=("info", "verify", "show"))
    p.add_argument("--out", default="samples.png", help="show: PNG file to write (default: samples.png)")
    p.add_argument(
        "--count", type=int, default=40, help="show: number of images, spread over the classes (default: 40)"
    )
    p.set_defaults(func=cmd_data, uses_torch=lambda args: args.action == "show")


def cmd_data(args: argparse.Namespace) -> int:
    if args.action == "verify":
        results = data.verify(args.data_dir or None)
        for path, ok, message in results:
            print(f"{'ok ' if ok else 'BAD'} {path}: {message}")
        return 0 if all(ok for _, ok, _ in results) else 1
    if args.action == "info":
        arrays = load_arrays(args.data_dir)
        print(f"directory  {arrays.directory} (found via {arrays.origin})")
        print(f"train      {len(arrays.train_labels):,} images {tuple(arrays.train_images.shape[1:])} uint8")
        print(f"test       {len(arrays.test_labels):,} images")
        train_counts, test_counts = data.class_counts(arrays.train_labels), data.class_counts(arrays.test_labels)
        print(f"{'class':<3} {'name':<12} {'train':>6} {'test':>6}")
        for i, name in enumerate(data.CLASSES):
            print(f"{i:<3} {name:<12} {train_counts[i]:>6} {test_counts[i]:>6}")
        return 0
    import torch

    from fmnist import plots

    dataset = load_data(args.data_dir)
    per_class = max(1, args.count // len(data.CLASSES))
    picks = torch.cat(
        [torch.nonzero(dataset.train_labels == c).flatten()[:per_class] for c in range(len(data.CLASSES))]
    )
    titles = [data.CLASSES[i] for i in dataset.train_labels[picks].tolist()]
    plots.plot_image_grid(
        dataset.train_images[picks], titles, args.out, ncols=per_class, title="Fashion-MNIST training images"
    )
    print(f"wrote {args.out}")
    return 0
