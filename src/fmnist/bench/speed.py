"""How fast a model is here: inference latency and throughput, training throughput, peak memory,
the textbook PyTorch pipeline against this project's, and the machine's own matmul rate as the
yardstick: what to measure and in which order. The harness is timing.py, the textbook
pipeline textbook.py, FLOPs and the matmul rate flops.py, the table and plot bench_report.py.

Every figure is timed after warm-up with the device synchronised, and reported as the median
and p95 over many repetitions.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from fmnist import checkpoint, cpu, measure, models
from fmnist.bench.flops import flops_per_image, matmul_gflops
from fmnist.bench.textbook import FULL_EPOCH, compare_pipelines
from fmnist.bench.timing import cpu_mark, load_average, other_cpus, row, time_calls
from fmnist.config import Config
from fmnist.data import FashionMNIST, as_input
from fmnist.device import select_device
from fmnist.records import BenchResult, TimingRow
from fmnist.run_dir import model_path
from fmnist.training import StepState, StepStream, build_step_state, train_one_epoch


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
    # Epochs trained on the real data before the steady-state training rows (unless a run's
    # checkpoint is given): by the second, Adam's state holds the decayed values a real run computes on.
    steady_epochs: int = 2
    # On a CPU, also time the model exported to ONNX, fp32 and int8, through onnxruntime (export.py).
    onnxruntime: bool = True


QUICK = Plan(
    min_repeats=10, min_seconds=0.3, max_seconds=3.0, warmup=3, pipeline_images=10_000, matmul_sizes=(512, 1_024)
)


@dataclass
class Trained:
    """Model and optimizer state of a trained model: where the steady-state training rows start."""

    model: dict
    optimizer: dict
    source: str  # how it was trained, for the report


def train_steady_state(cfg: Config, images: torch.Tensor, labels: torch.Tensor, epochs: int) -> Trained:
    """`epochs` epochs of train_one_epoch over `images` (on the training device) as fit() runs them."""
    st = build_step_state(cfg, images.device, math.ceil(len(images) / cfg.batch_size))
    for epoch in range(1, epochs + 1):
        order = torch.randperm(len(images), generator=st.data_generator).to(images.device)
        train_one_epoch(st.model, st.optimizer, st.scheduler, images, labels, order, cfg, st.aug_generator, epoch)
    return Trained(
        st.model.state_dict(),
        st.optimizer.state_dict(),
        f"{epochs} epochs of {cfg.model} at batch {cfg.batch_size} on {len(images):,} training images",
    )


def from_checkpoint(path: str | Path) -> tuple[Config, Trained]:
    """A run's config and its model and optimizer state, from its directory or a checkpoint file."""
    state = checkpoint.load(model_path(path))
    done = len(state.get("history", []))
    return checkpoint.config_of(state, path), Trained(state["model"], state["optimizer"], f"{path} after {done} epochs")


def denormal_fraction(optimizer_state: dict) -> float:
    """The share of the optimizer's state values that are denormal floats: what flush-to-zero is for."""
    values = [
        v
        for s in optimizer_state["state"].values()
        for v in s.values()
        if isinstance(v, torch.Tensor) and v.is_floating_point() and v.dim()
    ]
    total = sum(v.numel() for v in values)
    tiny = sum(int(((v != 0) & (v.abs() < torch.finfo(v.dtype).tiny)).sum()) for v in values)
    return tiny / max(total, 1)


def run(
    cfg: Config,
    data: FashionMNIST,
    device: str | torch.device = "auto",
    plan: Plan = Plan(),
    threads: int | None = None,
    log: Callable[[str], None] = lambda _: None,
    trained: Trained | None = None,
) -> BenchResult:
    """Measure `cfg`'s model per `plan` and return the results as plain JSON-ready values.

    `threads` sets torch's intra-op threads for the run (None: leave torch's choice). The
    steady-state training rows start from `trained` (e.g. from_checkpoint), else from
    plan.steady_epochs epochs of training here.
    """
    device = device if isinstance(device, torch.device) else select_device(device)
    previous_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        return _run(cfg, data, device, plan, log, trained)
    finally:
        torch.set_num_threads(previous_threads)


def _run(
    cfg: Config,
    data: FashionMNIST,
    device: torch.device,
    plan: Plan,
    log: Callable[[str], None],
    trained: Trained | None,
) -> BenchResult:
    measure.reset_peak_memory(device)
    load_before, run_mark = load_average(), cpu_mark()
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
    onnx = {}
    if on_cpu and plan.onnxruntime:  # right after PyTorch's rows, so that all three see the same machine
        onnx = _time_onnxruntime(model, data, plan, hardware["inference_limit_images_per_second"], log)
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
    amps = ("none", "bf16") if bf16 else ("none",)
    batches = sorted({*plan.training_batches, cfg.batch_size})  # always the batch size a run of cfg trains at
    fresh = {
        amp: [_training_row(cfg, b, train_x, train_y, device, plan, limit, amp, None, log) for b in batches]
        for amp in amps
    }
    if trained is None:
        log(f"steady state: training {plan.steady_epochs} epochs")
        trained = train_steady_state(cfg, train_x, train_y, plan.steady_epochs)
    steady = {
        amp: [_training_row(cfg, b, train_x, train_y, device, plan, limit, amp, trained, log) for b in batches]
        for amp in amps
    }

    log(f"pipelines: one epoch of up to {plan.pipeline_images:,} images, textbook then fmnist")
    pipeline = compare_pipelines(cfg, data, device, plan.pipeline_images, plan.pipeline_batch_size)
    # Measured again at the end: on a virtual machine the host can change what the same
    # threads get (another guest, or both vCPUs on one core's SMT pair) in mid-run.
    best = max(by_size, key=lambda n: by_size[n])
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
        "inference_onnxruntime": onnx.get("fp32", []),
        "inference_onnxruntime_int8": onnx.get("int8", []),
        "inference_bf16_autocast": bf16_inference,
        "training": fresh["none"],
        "training_bf16_autocast": fresh.get("bf16", []),
        "training_steady": steady["none"],
        "training_bf16_autocast_steady": steady.get("bf16", []),
        "steady_state": {"source": trained.source, "optimizer_denormal_fraction": denormal_fraction(trained.optimizer)},
        "pipeline": pipeline,
        "peak_memory_bytes": measure.peak_memory_bytes(device),
        "peak_memory_kind": "torch.cuda.max_memory_allocated" if device.type == "cuda" else "process peak RSS",
        "load_average": {"before": load_before, "after": load_average()},
        "other_cpus": other_cpus(run_mark),
        "seconds": time.perf_counter() - started,
        "plan": asdict(plan),
        "notes": (
            "inference: uint8 test images already on the device -> logits, eval mode, inference_mode; "
            "*_bf16_autocast: the same with the model's forward under torch.autocast(bfloat16), 'of limit' "
            "against the fp32 matmul rate; "
            "inference_onnxruntime(_int8): the same images through onnxruntime's CPU provider with as many threads "
            "as torch, the model exported by fmnist export (uint8 in, scaling in the graph), fp32 and int8 "
            "(calibrated on training images), 'of limit' also against the fp32 matmul rate; "
            "training: whole steps of train_one_epoch (batch gather, forward, backward, optimizer, "
            f"schedule), timed {plan.training_chunk} images per call with one host sync each, latency per step, "
            "from a fresh model and optimizer; *_steady: the same from the trained state of steady_state, "
            "the state a real run spends its later epochs in"
        ),
    }


def _time_inference(
    model: nn.Module, images: torch.Tensor, device: torch.device, plan: Plan, limit: float, log: Callable[[str], None]
) -> list[TimingRow]:
    rows = []
    for b in plan.inference_batches:
        log(f"inference: batch {b}" + (" (bf16 autocast)" if torch.is_autocast_enabled(device.type) else ""))
        x, mark = _batch_of(images, b), cpu_mark()

        def forward(_: int, x: torch.Tensor = x) -> torch.Tensor:
            return model(as_input(x))

        with torch.inference_mode():
            seconds = time_calls(forward, device, plan)
        rows.append(row(b, seconds, limit, mark))
    return rows


def _time_onnxruntime(
    model: nn.Module, data: FashionMNIST, plan: Plan, limit: float, log: Callable[[str], None]
) -> dict[str, list[TimingRow]]:
    """Inference rows as _time_inference's for `model` exported to ONNX, fp32 and int8, run by onnxruntime."""
    from fmnist import export
    from fmnist.inference import OnnxPredictor

    count = min(export.CALIBRATION_IMAGES, len(data.train_labels) // 2)
    calibration = data.train_images[export.calibration_indices(data.train_labels, count)].numpy()
    rows: dict[str, list[TimingRow]] = {}
    for precision, images in (("fp32", None), ("int8", calibration)):
        log(f"onnxruntime: exporting {precision}")
        model_bytes, _ = export.onnx_bytes(model, images)
        predictor = OnnxPredictor(model_bytes, f"bench-{precision}.onnx", {}, threads=torch.get_num_threads())
        rows[precision] = []
        for b in plan.inference_batches:
            log(f"inference: batch {b} (onnxruntime {precision})")
            x, mark = _batch_of(data.test_images, b), cpu_mark()

            def forward(_: int, x: torch.Tensor = x, predictor: OnnxPredictor = predictor) -> torch.Tensor:
                return predictor.logits(x)

            rows[precision].append(row(b, time_calls(forward, torch.device("cpu"), plan), limit, mark))
    return rows


def _batch_of(images: torch.Tensor, size: int) -> torch.Tensor:
    """The first `size` images, cycling through `images` when there are fewer."""
    reps = math.ceil(size / len(images))
    return (images.repeat(reps, 1, 1) if reps > 1 else images)[:size].contiguous()


def _training_row(
    cfg: Config,
    batch_size: int,
    images: torch.Tensor,
    labels: torch.Tensor,
    device: torch.device,
    plan: Plan,
    limit: float,
    amp: str,
    start: Trained | None,
    log: Callable[[str], None],
) -> TimingRow:
    log(
        f"training: batch {batch_size}"
        + (" (bf16 autocast)" if amp == "bf16" else "")
        + (", steady state" if start else "")
    )
    mark = cpu_mark()
    cfg = cfg.replace(batch_size=batch_size, amp=amp)
    seconds = _time_training(step_state(cfg, images, start), images, labels, cfg, plan)
    return row(batch_size, seconds, limit, mark)


def step_state(cfg: Config, images: torch.Tensor, start: Trained | None) -> StepState:
    """A training step's state for cfg on the device of `images`: fresh, or loaded from `start`."""
    st = build_step_state(cfg, images.device, math.ceil(len(images) / cfg.batch_size))
    if start is not None:
        st.model.load_state_dict(start.model)
        st.optimizer.load_state_dict(start.optimizer)
    return st


def _time_training(st: StepState, images: torch.Tensor, labels: torch.Tensor, cfg: Config, plan: Plan) -> list[float]:
    """Per-step seconds of train_one_epoch at cfg.batch_size: each timed call runs a chunk of
    whole steps, cut from running epochs as fit() cuts them (StepStream), and its time is
    divided by its steps."""
    steps = max(1, min(plan.training_chunk, len(images)) // (cfg.batch_size * cfg.accumulate))
    stream = StepStream(len(images), cfg, st.data_generator, images.device)
    taken: list[int] = []

    def call(_: int) -> None:
        chunk, count = stream.take(steps)
        taken.append(count)
        train_one_epoch(st.model, st.optimizer, st.scheduler, images, labels, chunk, cfg, st.aug_generator)

    times = time_calls(call, images.device, plan)
    return [t / count for t, count in zip(times, taken[len(taken) - len(times) :], strict=True)]
