"""What a model costs and what the machine allows: multiply-add FLOPs per image, and the
machine's own fp32 matmul rate through PyTorch, which turns FLOPs into an images/s limit."""

from __future__ import annotations

import statistics

import torch
from torch import nn

from fmnist.bench.timing import Repeats, time_calls
from fmnist.data import SIDE


def flops_per_image(model: nn.Module) -> tuple[int, int]:
    """(forward, training step) multiply-add FLOPs per image of the model's Linear and Conv2d layers.

    A training step is the forward pass, the weight gradients (as many FLOPs again) and the
    input gradients of every layer but the first (its input needs none). Bias, activation and
    loss FLOPs are left out: they are a fraction of a percent here.
    """
    counts: list[int] = []

    def hook(module: nn.Module, inputs, output) -> None:
        if isinstance(module, nn.Linear):
            counts.append(2 * module.in_features * module.out_features)
        elif isinstance(module, nn.Conv2d):  # one multiply-add per output element per input element of its window
            kh, kw = module.kernel_size
            counts.append(2 * output[0].numel() * module.in_channels // module.groups * kh * kw)

    layers = [m for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    handles = [m.register_forward_hook(hook) for m in layers]
    was_training = model.training
    try:
        model.eval()
        with torch.inference_mode():
            model(torch.zeros(1, 1, SIDE, SIDE, device=next(model.parameters()).device))
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    forward = sum(counts)
    return forward, 2 * forward + sum(counts[1:])


def matmul_gflops(device: torch.device, n: int, plan: Repeats) -> float:
    """The median fp32 rate of a square matmul of side n through PyTorch here."""
    generator = torch.Generator(device).manual_seed(0)
    a, b = (torch.rand(n, n, device=device, generator=generator) for _ in range(2))
    out = torch.empty(n, n, device=device)
    times = time_calls(lambda _: torch.mm(a, b, out=out), device, plan)
    return 2 * n**3 / statistics.median(times) / 1e9
