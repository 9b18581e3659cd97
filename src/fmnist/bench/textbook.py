"""The textbook PyTorch pipeline (torchvision-style per-sample dataset, DataLoader, default
Adam, a host sync per batch) against this project's, one epoch each over the same images."""

from __future__ import annotations

import math
import time

import numpy as np
import torch
from torch import nn

from fmnist import cpu, measure, models
from fmnist.bench.timing import cpu_mark, other_cpus
from fmnist.config import Config
from fmnist.data import SIDE, FashionMNIST
from fmnist.records import PipelineComparison
from fmnist.training import StepState, build_step_state, train_one_epoch

FULL_EPOCH = 60_000  # images in a Fashion-MNIST training epoch


class TextbookDataset(torch.utils.data.Dataset):
    """The per-sample dataset of the tutorials, as torchvision's FashionMNIST with ToTensor():
    each item is one uint8 image made into a PIL image, then a float [1, 28, 28] tensor / 255."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor):
        self.images, self.labels = images.cpu(), labels.cpu()

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        from PIL import Image

        picture = Image.fromarray(self.images[i].numpy(), mode="L")
        pixels = torch.from_numpy(np.array(picture, np.uint8, copy=True)).view(SIDE, SIDE, 1)
        return pixels.permute(2, 0, 1).contiguous().float().div(255), int(self.labels[i])


def textbook_epoch(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    device: torch.device,
    generator: torch.Generator,
    batch_size: int = 64,
    optimizer: torch.optim.Optimizer | None = None,
) -> float:
    """One epoch the textbook way; returns its seconds. DataLoader(shuffle=True) over the
    per-sample dataset, Adam with default arguments (a new one unless `optimizer` carries a
    run's state over), a host copy and `loss.item()` per batch."""
    loader = torch.utils.data.DataLoader(
        TextbookDataset(images, labels), batch_size=batch_size, shuffle=True, generator=generator
    )
    optimizer = optimizer or torch.optim.Adam(model.parameters())
    criterion = nn.CrossEntropyLoss()
    model.train()
    running_loss = 0.0
    measure.synchronize(device)
    start = time.perf_counter()
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        optimizer.zero_grad()
        loss = criterion(model(x), y)
        loss.backward()
        optimizer.step()
        running_loss += loss.item()
    measure.synchronize(device)
    return time.perf_counter() - start


def fmnist_epoch(state: StepState, cfg: Config, images: torch.Tensor, labels: torch.Tensor) -> float:
    """One epoch of this project's pipeline (train.train_one_epoch, as fit() runs it) over
    `images`, which live on the model's device; returns its seconds."""
    device = images.device
    order = torch.randperm(len(images), generator=state.data_generator).to(device)
    measure.synchronize(device)
    start = time.perf_counter()
    train_one_epoch(state.model, state.optimizer, state.scheduler, images, labels, order, cfg, state.aug_generator)
    measure.synchronize(device)
    return time.perf_counter() - start


def compare_pipelines(
    cfg: Config, data: FashionMNIST, device: torch.device, images_measured: int, batch_size: int = 64
) -> PipelineComparison:
    """The textbook pipeline and this project's over the same `images_measured` images for one
    epoch each at `batch_size`, from the same initial weights, after a short untimed warm-up of both.
    `images_measured` is capped at the training images there are (one fewer under batch norm when the
    textbook's last batch would hold one image)."""
    if images_measured < 1:
        raise ValueError(f"pipeline_images must be >= 1, got {images_measured}")
    n = min(images_measured, len(data.train_images))  # a smaller data set: all of it
    if cfg.batch_norm and n % batch_size == 1 and n > 1:
        n -= 1  # the textbook's DataLoader keeps a 1-image last batch, which batch norm cannot train
    images, labels = data.train_images[:n], data.train_labels[:n]
    device_images, device_labels = images.to(device), labels.to(device)
    ours = cfg.replace(batch_size=batch_size)
    warm = min(n, 20 * batch_size)

    def fresh() -> nn.Module:
        torch.manual_seed(cfg.seed)
        return models.build(cfg).to(device)

    def state(seed: int, images: int) -> StepState:
        return build_step_state(ours.replace(seed=seed), device, math.ceil(images / batch_size), model=fresh())

    on_cpu = device.type == "cpu"
    if on_cpu:
        cpu.flush_denormals(False)  # the textbook runs with PyTorch's defaults
    textbook_epoch(fresh(), images[:warm], labels[:warm], device, torch.Generator().manual_seed(1), batch_size)
    mark = cpu_mark()
    textbook = textbook_epoch(fresh(), images, labels, device, torch.Generator().manual_seed(cfg.seed), batch_size)
    textbook_other = other_cpus(mark)
    if on_cpu:
        cpu.flush_denormals()
    fmnist_epoch(state(1, warm), ours, device_images[:warm], device_labels[:warm])
    mark = cpu_mark()
    ours_seconds = fmnist_epoch(state(cfg.seed, n), ours, device_images, device_labels)
    ours_other = other_cpus(mark)
    scale = FULL_EPOCH / n
    return {
        "textbook_epoch_seconds": textbook * scale,
        "fmnist_epoch_seconds": ours_seconds * scale,
        "speedup": textbook / ours_seconds,
        "textbook_images_per_second": n / textbook,
        "fmnist_images_per_second": n / ours_seconds,
        "batch_size": batch_size,
        "images_measured": n,
        "scaled_to_images": FULL_EPOCH,
        "scaled": n != FULL_EPOCH,
        "other_cpus": {"textbook": textbook_other, "fmnist": ours_other},
    }
