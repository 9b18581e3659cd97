"""The PyTorch tutorial pipeline, whole: the reference MLP trained the textbook way
(fmnist.bench.textbook: per-sample Dataset with PIL + ToTensor, DataLoader(batch_size=64,
shuffle=True), default Adam, loss.item() per batch) for 15 epochs, with the tutorial's test pass
after every epoch; prints the last epoch's test accuracy. README's presets table times it as a
process, next to `fmnist train`.

    python benchmarks/tutorial.py [--epochs 15] [--seed 0]
"""

import argparse
import time

import torch

from fmnist import data, models
from fmnist.bench.textbook import TextbookDataset, textbook_epoch
from fmnist.config import Config


def test_accuracy(model: torch.nn.Module, dataset: data.FashionMNIST) -> float:
    loader = torch.utils.data.DataLoader(TextbookDataset(dataset.test_images, dataset.test_labels), batch_size=64)
    model.eval()
    correct = 0
    with torch.no_grad():
        for x, y in loader:
            correct += (model(x).argmax(1) == y).sum().item()
    return correct / len(dataset.test_labels)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    dataset = data.load()
    torch.manual_seed(args.seed)
    model = models.build(Config())
    cpu = torch.device("cpu")
    # One DataLoader generator for the run, as a tutorial's DataLoader(shuffle=True) draws each epoch from one.
    generator = torch.Generator().manual_seed(args.seed)
    optimizer = torch.optim.Adam(model.parameters())  # one for the run: its state carries over epochs
    accuracy = 0.0
    for epoch in range(1, args.epochs + 1):
        start = time.perf_counter()
        seconds = textbook_epoch(model, dataset.train_images, dataset.train_labels, cpu, generator, optimizer=optimizer)
        accuracy = test_accuracy(model, dataset)
        print(
            f"epoch {epoch}/{args.epochs}: train {seconds:.1f} s, with test {time.perf_counter() - start:.1f} s, "
            f"test accuracy {accuracy:.2%}",
            flush=True,
        )
    print(f"test accuracy {accuracy:.4f}")


if __name__ == "__main__":
    main()
