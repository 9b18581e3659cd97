"""How fast a model is here: inference latency and throughput, training throughput, peak memory,
the textbook PyTorch pipeline against this project's, and the machine's own matmul rate as the
yardstick. Also the few-step torch.profiler trace behind `fmnist train --profile`.

Every figure is timed after warm-up with the device synchronised, and reported as the median
and p95 over many repetitions.
"""

from __future__ import annotations

import json
import math
import os
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from fmnist import cpu, measure, models, report, train
from fmnist.atomic import atomic_path, atomic_write
from fmnist.config import Config
from fmnist.data import SIDE, FashionMNIST, as_input
from fmnist.errors import FmnistError

FULL_EPOCH = 60_000  # images in a Fashion-MNIST training epoch


@dataclass(frozen=True)
class Plan:
    """What to measure and for how long; Plan() is the full run, QUICK the under-a-minute one."""

    inference_batches: tuple[int, ...] = (1, 64, 256, 1024, 10_000)
    bf16: bool = True  # also time inference and training under bfloat16 autocast (other numerics than fp32)
    training_batches: tuple[int, ...] = (64, 256, 1024)
    warmup: int = 5  # untimed calls before each figure
    min_repeats: int = 20  # timed calls per figure, at least ...
    min_seconds: float = 1.5  # ... and until this much time is spent on it
    max_repeats: int = 2_000
    max_seconds: float = 15.0  # a figure stops here even short of min_repeats (a busy machine), after 3
    training_chunk: int = 2_048  # images per timed training call: whole steps, one host sync per call
    pipeline_images: int = FULL_EPOCH  # images in the timed textbook-vs-fmnist epoch
    pipeline_batch_size: int = 64  # the textbook's DataLoader(batch_size=64)
    matmul_sizes: tuple[int, ...] = (512, 1_024, 2_048)  # square fp32 matmuls; the fastest sets the limits


QUICK = Plan(
    min_repeats=10, min_seconds=0.3, max_seconds=3.0, warmup=3, pipeline_images=10_000, matmul_sizes=(512, 1_024)
)


# ---- the textbook pipeline -------------------------------------------------------------------


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
    model: nn.Module, images: torch.Tensor, labels: torch.Tensor, device: torch.device, generator: torch.Generator,
    batch_size: int = 64,
) -> float:
    """One epoch the textbook way; returns its seconds. DataLoader(shuffle=True) over the
    per-sample dataset, Adam with default arguments, a host copy and `loss.item()` per batch."""
    loader = torch.utils.data.DataLoader(
        TextbookDataset(images, labels), batch_size=batch_size, shuffle=True, generator=generator
    )
    optimizer = torch.optim.Adam(model.parameters())
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


def fmnist_epoch(
    model: nn.Module, cfg: Config, images: torch.Tensor, labels: torch.Tensor, generator: torch.Generator
) -> float:
    """One epoch of this project's pipeline (train.train_one_epoch, as fit() runs it) over
    `images`, which live on the model's device; returns its seconds."""
    device = images.device
    optimizer = train.build_optimizer(model, cfg)
    scheduler = train.build_scheduler(optimizer, cfg, math.ceil(len(images) / cfg.batch_size))
    order = torch.randperm(len(images), generator=generator).to(device)
    aug_generator = torch.Generator(device).manual_seed(cfg.seed)
    measure.synchronize(device)
    start = time.perf_counter()
    train.train_one_epoch(model, optimizer, scheduler, images, labels, order, cfg, aug_generator)
    measure.synchronize(device)
    return time.perf_counter() - start


# ---- FLOPs and timing helpers ----------------------------------------------------------------


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
        else:  # Conv2d: one multiply-add per output element per input element of its window
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


def time_calls(fn: Callable[[int], object], device: torch.device, plan: Plan) -> list[float]:
    """Seconds of each timed call fn(repetition), after plan.warmup untimed ones; the device is
    synchronised around every call. Calls go on to plan.min_repeats and plan.min_seconds, unless
    plan.max_seconds runs out first (never fewer than 3 calls)."""
    for i in range(plan.warmup):
        fn(i)
    measure.synchronize(device)
    times: list[float] = []
    begin = time.perf_counter()

    def more() -> bool:
        spent = time.perf_counter() - begin
        if len(times) < 3 or (len(times) < plan.min_repeats and spent < plan.max_seconds):
            return True
        return spent < plan.min_seconds and len(times) < plan.max_repeats

    while more():
        start = time.perf_counter()
        fn(len(times))
        measure.synchronize(device)
        times.append(time.perf_counter() - start)
    return times


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]  # nearest rank


def _row(batch_size: int, seconds: list[float], limit: float, mark) -> dict:
    median = statistics.median(seconds)
    rate = batch_size / median
    return {
        "batch_size": batch_size,
        "latency_ms_median": 1000 * median,
        "latency_ms_p95": 1000 * _percentile(seconds, 0.95),
        "images_per_second": rate,
        "fraction_of_limit": rate / limit,
        "repeats": len(seconds),
        "other_cpus": _other_cpus(mark),
    }


def matmul_gflops(device: torch.device, n: int, plan: Plan) -> float:
    """The median fp32 rate of a square matmul of side n through PyTorch here."""
    generator = torch.Generator(device).manual_seed(0)
    a, b = (torch.rand(n, n, device=device, generator=generator) for _ in range(2))
    out = torch.empty(n, n, device=device)
    times = time_calls(lambda _: torch.mm(a, b, out=out), device, plan)
    return 2 * n**3 / statistics.median(times) / 1e9


# ---- the benchmark ---------------------------------------------------------------------------


def run(
    cfg: Config,
    data: FashionMNIST,
    device: str | torch.device = "auto",
    plan: Plan = Plan(),
    threads: int | None = None,
    log: Callable[[str], None] = lambda _: None,
) -> dict:
    """Measure `cfg`'s model per `plan` and return the results as plain JSON-ready values.

    `threads` sets torch's intra-op threads for the run (None: leave torch's choice).
    """
    device = device if isinstance(device, torch.device) else measure.select_device(device)
    previous_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        return _run(cfg, data, device, plan, log)
    finally:
        torch.set_num_threads(previous_threads)


def _run(cfg: Config, data: FashionMNIST, device: torch.device, plan: Plan, log: Callable[[str], None]) -> dict:
    measure.reset_peak_memory(device)
    load_before, run_mark = _load_average(), _cpu_mark()
    started = time.perf_counter()
    torch.manual_seed(cfg.seed)
    model = models.build(cfg).to(device)
    forward_flops, training_flops = flops_per_image(model)
    on_cpu = device.type == "cpu"

    log(f"matmul: fp32, sides {plan.matmul_sizes}")
    by_size = {n: matmul_gflops(device, n, plan) for n in plan.matmul_sizes}
    gflops = max(by_size.values())
    hardware = {
        **measure.hardware(device),
        "matmul_gflops": gflops,
        "matmul_gflops_by_size": {str(n): rate for n, rate in by_size.items()},
        "inference_limit_images_per_second": gflops * 1e9 / forward_flops,
        "training_limit_images_per_second": gflops * 1e9 / training_flops,
    }

    test_x = data.test_images.to(device)
    model.eval()
    inference = _time_inference(model, test_x, device, plan, hardware["inference_limit_images_per_second"], log)
    bf16 = plan.bf16 and device.type in ("cpu", "cuda")
    bf16_inference = []
    if bf16:
        with torch.autocast(device.type, dtype=torch.bfloat16):
            bf16_inference = _time_inference(
                model, test_x, device, plan, hardware["inference_limit_images_per_second"], log
            )

    if on_cpu:
        cpu.flush_denormals()  # as fit() does
    train_x, train_y = data.train_images.to(device), data.train_labels.to(device)
    limit = hardware["training_limit_images_per_second"]
    training = [_training_row(cfg, b, train_x, train_y, device, plan, limit, False, log) for b in plan.training_batches]
    bf16_training = [
        _training_row(cfg, b, train_x, train_y, device, plan, limit, True, log) for b in plan.training_batches if bf16
    ]

    log(f"pipelines: one epoch of {plan.pipeline_images:,} images, textbook then fmnist")
    pipeline = compare_pipelines(cfg, data, device, plan)
    # Measured again at the end: on a virtual machine the host can change what the same
    # threads get (another guest, or both vCPUs on one core's SMT pair) in mid-run.
    best = max(by_size, key=by_size.get)
    hardware["matmul_gflops_at_end"] = {str(best): matmul_gflops(device, best, plan)}

    return {
        "device": str(device),
        "hardware": hardware,
        "model": {
            "name": cfg.model,
            "hidden": list(cfg.hidden),
            "parameters": models.parameter_count(model),
            "forward_flops_per_image": forward_flops,
            "training_flops_per_image": training_flops,
        },
        "inference": inference,
        "inference_bf16_autocast": bf16_inference,
        "training": training,
        "training_bf16_autocast": bf16_training,
        "pipeline": pipeline,
        "peak_memory_bytes": measure.peak_memory_bytes(device),
        "peak_memory_kind": "torch.cuda.max_memory_allocated" if device.type == "cuda" else "process peak RSS",
        "load_average": {"before": load_before, "after": _load_average()},
        "other_cpus": _other_cpus(run_mark),
        "seconds": time.perf_counter() - started,
        "plan": asdict(plan),
        "notes": (
            "inference: uint8 test images already on the device -> logits, eval mode, inference_mode; "
            "*_bf16_autocast: the same with the model's forward under torch.autocast(bfloat16), 'of limit' "
            "against the fp32 matmul rate; "
            "training: whole steps of train.train_one_epoch (batch gather, forward, backward, optimizer, "
            f"schedule), timed {plan.training_chunk} images per call with one host sync each, latency per step"
        ),
    }


def _time_inference(model: nn.Module, images: torch.Tensor, device: torch.device, plan: Plan, limit: float,
                    log: Callable[[str], None]) -> list[dict]:
    rows = []
    for b in plan.inference_batches:
        log(f"inference: batch {b}" + (" (bf16 autocast)" if torch.is_autocast_enabled(device.type) else ""))
        x, mark = _batch_of(images, b), _cpu_mark()
        with torch.inference_mode():
            seconds = time_calls(lambda _: model(as_input(x)), device, plan)
        rows.append(_row(b, seconds, limit, mark))
    return rows


def _batch_of(images: torch.Tensor, size: int) -> torch.Tensor:
    """The first `size` images, cycling through `images` when there are fewer."""
    reps = math.ceil(size / len(images))
    return (images.repeat(reps, 1, 1) if reps > 1 else images)[:size].contiguous()


def _training_row(cfg: Config, batch_size: int, images: torch.Tensor, labels: torch.Tensor, device: torch.device,
                  plan: Plan, limit: float, bf16: bool, log: Callable[[str], None]) -> dict:
    log(f"training: batch {batch_size}" + (" (bf16 autocast)" if bf16 else ""))
    mark = _cpu_mark()
    seconds = _time_training(cfg.replace(batch_size=batch_size, amp="bf16" if bf16 else "none"), images, labels, device, plan)
    return _row(batch_size, seconds, limit, mark)


def _time_training(
    cfg: Config, images: torch.Tensor, labels: torch.Tensor, device: torch.device, plan: Plan
) -> list[float]:
    """Per-step seconds of train_one_epoch at cfg.batch_size: each timed call runs a chunk of
    whole steps from one running permutation, and its time is divided by its steps."""
    torch.manual_seed(cfg.seed)
    model = models.build(cfg).to(device)
    optimizer = train.build_optimizer(model, cfg)
    scheduler = train.build_scheduler(optimizer, cfg, math.ceil(len(images) / cfg.batch_size))
    generator = torch.Generator().manual_seed(cfg.seed)
    aug_generator = torch.Generator(device).manual_seed(cfg.seed)
    steps = max(1, min(plan.training_chunk, len(images)) // cfg.batch_size)
    per_call = steps * cfg.batch_size
    if per_call > len(images):
        raise ValueError(f"training batch {cfg.batch_size} needs {per_call} images, the data has {len(images)}")
    calls_per_pass = len(images) // per_call
    order = torch.empty(0, dtype=torch.long)

    def call(i: int) -> None:
        nonlocal order
        if i % calls_per_pass == 0:  # a fresh permutation per pass, as every epoch draws one
            order = torch.randperm(len(images), generator=generator).to(device)
        chunk = order[(i % calls_per_pass) * per_call : (i % calls_per_pass + 1) * per_call]
        train.train_one_epoch(model, optimizer, scheduler, images, labels, chunk, cfg, aug_generator)

    return [t / steps for t in time_calls(call, device, plan)]


def compare_pipelines(cfg: Config, data: FashionMNIST, device: torch.device, plan: Plan) -> dict:
    """The textbook pipeline and this project's over the same images for one epoch each, from
    the same initial weights, after a short untimed warm-up of both."""
    n = plan.pipeline_images
    if not 0 < n <= len(data.train_images):
        raise ValueError(f"pipeline_images {n} must be between 1 and {len(data.train_images)}")
    images, labels = data.train_images[:n], data.train_labels[:n]
    device_images, device_labels = images.to(device), labels.to(device)
    ours = cfg.replace(batch_size=plan.pipeline_batch_size)
    warm = min(n, 20 * plan.pipeline_batch_size)

    def fresh() -> nn.Module:
        torch.manual_seed(cfg.seed)
        return models.build(cfg).to(device)

    on_cpu = device.type == "cpu"
    if on_cpu:
        cpu.flush_denormals(False)  # the textbook runs with PyTorch's defaults
    textbook_epoch(fresh(), images[:warm], labels[:warm], device, torch.Generator().manual_seed(1))
    mark = _cpu_mark()
    textbook = textbook_epoch(fresh(), images, labels, device, torch.Generator().manual_seed(cfg.seed))
    textbook_other = _other_cpus(mark)
    if on_cpu:
        cpu.flush_denormals()
    fmnist_epoch(fresh(), ours, device_images[:warm], device_labels[:warm], torch.Generator().manual_seed(1))
    mark = _cpu_mark()
    ours_seconds = fmnist_epoch(fresh(), ours, device_images, device_labels, torch.Generator().manual_seed(cfg.seed))
    ours_other = _other_cpus(mark)
    scale = FULL_EPOCH / n
    return {
        "textbook_epoch_seconds": textbook * scale,
        "fmnist_epoch_seconds": ours_seconds * scale,
        "speedup": textbook / ours_seconds,
        "textbook_images_per_second": n / textbook,
        "fmnist_images_per_second": n / ours_seconds,
        "batch_size": plan.pipeline_batch_size,
        "images_measured": n,
        "scaled_to_images": FULL_EPOCH,
        "scaled": n != FULL_EPOCH,
        "other_cpus": {"textbook": textbook_other, "fmnist": ours_other},
    }


def _load_average() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def _cpu_mark() -> tuple[float, float, float] | None:
    """(machine busy CPU-seconds, this process's CPU-seconds, wall clock); None off Linux."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    except (OSError, ValueError):
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    busy = (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")
    return busy, time.process_time(), time.perf_counter()


def _other_cpus(mark: tuple[float, float, float] | None) -> float | None:
    """CPUs that other processes (and the hypervisor, as steal) kept busy, on average, since
    `mark`: the honest footnote to a figure taken on a shared machine."""
    now = _cpu_mark()
    if mark is None or now is None or now[2] - mark[2] < 0.5:  # /proc/stat ticks are 10 ms
        return None
    busy, own, wall = (b - a for a, b in zip(mark, now))
    return round(max(0.0, busy - own) / wall, 2)


# ---- output ----------------------------------------------------------------------------------


def format_table(result: dict) -> str:
    """The results as a plain-text table, hardware first."""
    hw, model, pipe = result["hardware"], result["model"], result["pipeline"]
    lines = [
        f"device {result['device']} | {hw['cpu']} | {hw['torch_threads']} threads | torch {hw['torch_version']}"
        + (f" | {hw['gpu']}" if "gpu" in hw else ""),
        f"model {model['name']} hidden={','.join(map(str, model['hidden']))} | {model['parameters']:,} parameters | "
        f"{model['forward_flops_per_image'] / 1e6:.2f} MFLOP forward, {model['training_flops_per_image'] / 1e6:.2f} "
        "MFLOP training step per image",
        f"matmul fp32 {_rates(hw['matmul_gflops_by_size'])} GFLOP/s (at the end {_rates(hw['matmul_gflops_at_end'])}); "
        f"the best ({hw['matmul_gflops']:.0f}) sets the limits: "
        f"{hw['inference_limit_images_per_second']:,.0f} img/s inference, "
        f"{hw['training_limit_images_per_second']:,.0f} img/s training",
        "",
        f"{'':<10} {'batch':>6} {'median ms':>10} {'p95 ms':>9} {'images/s':>11} {'of limit':>9} {'other CPUs':>10}",
    ]
    kinds = (("inference", "inference"), ("inference_bf16_autocast", "bf16 infer"), ("training", "training"),
             ("training_bf16_autocast", "bf16 train"))
    for kind, name in kinds:
        for row in result[kind]:
            lines.append(
                f"{name:<10} {row['batch_size']:>6} {row['latency_ms_median']:>10.3f} {row['latency_ms_p95']:>9.3f} "
                f"{row['images_per_second']:>11,.0f} {row['fraction_of_limit']:>9.1%} {_cpus(row['other_cpus']):>10}"
            )
    scaled = f" (measured on {pipe['images_measured']:,} images, scaled)" if pipe["scaled"] else ""
    lines += [
        "",
        f"epoch of {pipe['scaled_to_images']:,} images at batch {pipe['batch_size']}{scaled}: "
        f"textbook {pipe['textbook_epoch_seconds']:.2f}s ({pipe['textbook_images_per_second']:,.0f} img/s), "
        f"fmnist {pipe['fmnist_epoch_seconds']:.2f}s ({pipe['fmnist_images_per_second']:,.0f} img/s): "
        f"{pipe['speedup']:.2f}x (other CPUs {_cpus(pipe['other_cpus']['textbook'])}, "
        f"{_cpus(pipe['other_cpus']['fmnist'])})",
        f"peak memory {result['peak_memory_bytes'] / 2**20:,.0f} MiB ({result['peak_memory_kind']})",
        f"other processes kept {_cpus(result['other_cpus'])} CPUs busy on average during the run "
        f"(of {result['hardware']['cpu_count']}; load average {result['load_average']['before']} -> "
        f"{result['load_average']['after']})",
    ]
    return "\n".join(lines)


def _rates(by_size: dict[str, float]) -> str:
    return ", ".join(f"{n}: {r:.0f}" for n, r in by_size.items())


def _cpus(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def write_json(result: dict, path: str | os.PathLike) -> None:
    atomic_write(path, json.dumps(result, indent=2) + "\n")


def plot(result: dict, path: str | os.PathLike) -> None:
    """Throughput and latency against batch size, inference and training, as a PNG."""
    fig = report.new_figure((10, 4))
    rate_ax, latency_ax = fig.subplots(1, 2)
    series = (("inference", "inference fp32", "o"), ("inference_bf16_autocast", "inference bf16", "^"),
              ("training", "training fp32", "s"), ("training_bf16_autocast", "training bf16", "v"))
    for kind, name, marker in series:
        rows = result[kind]
        if not rows:
            continue
        batches = [r["batch_size"] for r in rows]
        (line,) = rate_ax.plot(batches, [r["images_per_second"] for r in rows], marker=marker, label=name)
        colour = line.get_color()
        latency_ax.plot(batches, [r["latency_ms_median"] for r in rows], marker=marker, color=colour,
                        label=f"{name} median")
        latency_ax.plot(batches, [r["latency_ms_p95"] for r in rows], marker=marker, color=colour, linestyle=":",
                        alpha=0.6, label=f"{name} p95")
    hw = result["hardware"]
    for key, label in (("inference_limit_images_per_second", "fp32 inference limit"),
                       ("training_limit_images_per_second", "fp32 training limit")):
        rate_ax.axhline(hw[key], color="gray", linestyle="--" if "inference" in key else ":", linewidth=1)
        rate_ax.annotate(label, (0.02, hw[key]), xycoords=("axes fraction", "data"), fontsize=7, va="bottom")
    rate_ax.set(title="Throughput", xlabel="batch size", ylabel="images/s", xscale="log", yscale="log")
    latency_ax.set(title="Latency per batch", xlabel="batch size", ylabel="ms", xscale="log", yscale="log")
    for ax in (rate_ax, latency_ax):
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    fig.suptitle(f"{result['model']['name']} on {result['device']} ({hw['cpu']}, {hw['torch_threads']} threads, "
                 f"torch {hw['torch_version']})", fontsize=9)
    report.save_png(fig, path)


# ---- profiling -------------------------------------------------------------------------------


def profile_training(
    cfg: Config,
    data: FashionMNIST,
    out_dir: str | os.PathLike,
    *,
    warmup_steps: int = 5,
    steps: int = 10,
    log: Callable[[str], None] = print,
) -> Path:
    """Profile `steps` training steps of `cfg` (after `warmup_steps` untimed ones) on a throwaway
    model, log the 10 most expensive operators and write a Chrome trace into `out_dir`, which
    Perfetto (ui.perfetto.dev) opens; it is named as torch.profiler.tensorboard_trace_handler
    names its files, for TensorBoard's profiler plugin. Returns the trace's path.

    The global RNG state is saved and restored, so a run that follows is unchanged.
    """
    from torch.profiler import ProfilerActivity, profile

    device = measure.select_device(cfg.device)
    rng = torch.get_rng_state()
    cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    try:
        if device.type == "cpu":
            cpu.flush_denormals()  # as fit() trains
        n = min((warmup_steps + steps) * cfg.batch_size, len(data.train_images))
        warmup_steps = min(warmup_steps, n // cfg.batch_size - 1)  # a small dataset: keep a step to profile
        if warmup_steps < 0:
            raise FmnistError(f"--profile needs at least one batch of {cfg.batch_size} training images")
        images, labels = data.train_images[:n].to(device), data.train_labels[:n].to(device)
        model = models.build(cfg).to(device)
        optimizer = train.build_optimizer(model, cfg)
        scheduler = train.build_scheduler(optimizer, cfg, math.ceil(len(data.train_images) / cfg.batch_size))
        order = torch.randperm(n, generator=torch.Generator().manual_seed(cfg.seed)).to(device)
        aug_generator = torch.Generator(device).manual_seed(cfg.seed)
        split = warmup_steps * cfg.batch_size
        if split:
            train.train_one_epoch(model, optimizer, scheduler, images, labels, order[:split], cfg, aug_generator)
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
        measure.synchronize(device)
        with profile(activities=activities, record_shapes=True) as prof:
            train.train_one_epoch(model, optimizer, scheduler, images, labels, order[split:], cfg, aug_generator)
            measure.synchronize(device)
    finally:
        torch.set_rng_state(rng)
        if cuda_rng is not None:
            torch.cuda.set_rng_state_all(cuda_rng)
    # TensorBoard's profiler plugin looks for *.pt.trace.json files.
    path = Path(out_dir) / f"fmnist-train-{cfg.model}.pt.trace.json"
    with atomic_path(path) as tmp:
        prof.export_chrome_trace(str(tmp))
    sort = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    profiled = math.ceil((n - split) / cfg.batch_size)
    log(f"profile of {profiled} training steps at batch {cfg.batch_size} on {device} "
        f"(after {warmup_steps} warm-up steps), top 10 by self time:")
    log(prof.key_averages().table(sort_by=sort, row_limit=10))
    log(f"trace written to {path} (open it in https://ui.perfetto.dev)")
    return path
