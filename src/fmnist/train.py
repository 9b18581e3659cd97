"""fit(): epochs of training with per-epoch evaluation, checkpoints every epoch, exact resume."""

from __future__ import annotations

import json
import math
import statistics
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from fmnist import checkpoint, cpu, distributed, measure, models, trust
from fmnist import config as config_lib
from fmnist.atomic import atomic_write
from fmnist.augment import augment
from fmnist.config import Config
from fmnist.data import FashionMNIST, as_input, stratified_split
from fmnist.device import resolve_amp, select_device
from fmnist.errors import FmnistError
from fmnist.evaluate import evaluate
from fmnist.records import EpochRow, Summary

# Steps between host checks of the on-device "first non-finite loss" marker; cheap, and
# bounds how far a diverged run goes on before it is stopped.
NAN_CHECK_EVERY = 50


class NonFiniteLoss(FmnistError):
    pass


def build_optimizer(model: nn.Module, cfg: Config) -> torch.optim.Optimizer:
    params = list(model.parameters())
    # fused: one vectorised kernel per parameter tensor that reads and writes each element
    # once, where foreach on CPU is a loop of per-tensor ops, one memory pass each. For the
    # reference MLP's whole training step the two measured within noise of each other on the
    # AVX2 EPYC (benchmarks/step_ab.py, docs/PERFORMANCE.md).
    kernel = {"fused": True} if all(p.device.type in ("cpu", "cuda") for p in params) else {"foreach": True}
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(
            params, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov, weight_decay=cfg.weight_decay, **kernel
        )
    opt = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[cfg.optimizer]
    return opt(params, lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay, **kernel)


def lr_factor(cfg: Config, step: int, steps_per_epoch: int) -> float:
    """Multiplier of cfg.lr for optimizer step `step` (0-based): warmup, then the schedule's decay."""
    total = cfg.epochs * steps_per_epoch
    warmup = cfg.warmup_epochs * steps_per_epoch
    if cfg.schedule == "onecycle" and not warmup:
        warmup = 0.3 * total  # the one-cycle policy's usual rise over 30% of training
    if step < warmup:
        start = 1 / 25 if cfg.schedule == "onecycle" else 0.0
        return start + (1 - start) * (step + 1) / warmup
    # Clamped: steps past the planned total (a resume with a larger batch count) stay at the floor.
    progress = min(1.0, (step - warmup) / max(total - warmup, 1))
    if cfg.schedule in ("cosine", "onecycle"):
        return 0.5 * (1 + math.cos(math.pi * progress))
    if cfg.schedule == "step":
        return cfg.gamma ** (step // (cfg.step_epochs * steps_per_epoch))
    return 1.0


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: Config, steps_per_epoch: int):
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(cfg, step, steps_per_epoch))


@dataclass
class StepState:
    """Everything a training step reads and updates besides the data."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    data_generator: torch.Generator  # each epoch's permutation, drawn on the host
    aug_generator: torch.Generator  # augmentation, on the training device


def build_step_state(
    cfg: Config, device: torch.device, steps_per_epoch: int, *, rank: int = 0, model: nn.Module | None = None
) -> StepState:
    """The model (built from cfg.seed, or `model` as given), its optimizer and schedule, and the
    seeded generators: the one setup behind fit(), the bench, the profiler and benchmarks/."""
    if model is None:
        torch.manual_seed(cfg.seed)
        model = models.build(cfg)
    model = model.to(device)
    optimizer = build_optimizer(model, cfg)
    return StepState(
        model=model,
        optimizer=optimizer,
        scheduler=build_scheduler(optimizer, cfg, steps_per_epoch),
        data_generator=torch.Generator().manual_seed(cfg.seed),
        aug_generator=torch.Generator(device).manual_seed(cfg.seed + rank),
    )


def train_one_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler,
    images: torch.Tensor,
    labels: torch.Tensor,
    order: torch.Tensor,
    cfg: Config,
    aug_generator: torch.Generator,
    epoch: int = 1,
    progress: bool = False,
) -> tuple[float, float, int]:
    """One pass over `images[order]` in batches; returns (mean loss, accuracy, skipped batches).

    With cfg.on_nan == "skip" a batch whose loss is not finite takes no optimizer step and
    counts in neither loss nor accuracy; that check reads the loss on the host every step.

    Each step's loss and predictions are written into preallocated device buffers (one
    small op each, no host synchronisation); totals and the non-finite check read them
    every NAN_CHECK_EVERY steps and at the end.
    """
    model.train()
    device = images.device
    bf16 = resolve_amp(cfg.amp, device)[0] == "bf16"
    n, batch = len(order), cfg.batch_size
    losses = torch.empty(math.ceil(n / batch), device=device)
    predictions = torch.empty(n, dtype=torch.long, device=device)
    checked = 0  # steps already known to have finite losses
    skipped: list[int] = []
    starts = range(0, n, batch)
    bar = tqdm(starts, desc=f"epoch {epoch}/{cfg.epochs}", unit="batch", leave=False, disable=not progress or None)
    for step, start in enumerate(bar):
        idx = order[start : start + batch]
        # index_select: a plain gather, 3-4x cheaper per batch on CPU than tensor[idx].
        x, y = as_input(images.index_select(0, idx)), labels.index_select(0, idx)
        if cfg.augment:
            x = augment(x, cfg.augment, aug_generator, strength=cfg.augment_strength)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            logits = model(x)
        loss = F.cross_entropy(logits.float(), y, label_smoothing=cfg.label_smoothing)
        if cfg.on_nan == "skip" and not torch.isfinite(loss):
            skipped.append(step)
            losses[step] = 0.0
            predictions[start : start + batch] = -1
            with warnings.catch_warnings():  # "scheduler before optimizer": deliberate here
                warnings.simplefilter("ignore", UserWarning)
                scheduler.step()  # the schedule stays on time
            continue
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        losses[step] = loss.detach()
        torch.argmax(logits.detach(), 1, out=predictions[start : start + batch])
        if step % NAN_CHECK_EVERY == NAN_CHECK_EVERY - 1 or start + batch >= n:
            bad = torch.nonzero(~torch.isfinite(losses[checked : step + 1])).flatten().tolist()
            if bad:
                raise NonFiniteLoss(
                    f"non-finite loss at epoch {epoch}, step {checked + bad[0] + 1} (lr {cfg.lr:g}); "
                    "lower --lr; the last good checkpoint is kept"
                )
            checked = step + 1
    # Every batch holds `batch` images except possibly the last.
    sizes = torch.full_like(losses, batch)
    sizes[-1] = n - batch * (len(losses) - 1)
    sizes[skipped] = 0
    counted = max(int(sizes.sum().item()), 1)
    correct = (predictions == labels.index_select(0, order)).sum()
    return (losses @ sizes).item() / counted, correct.item() / counted, len(skipped)


@dataclass
class FitResult:
    model: nn.Module  # the model the summary reports on: best on validation when a split exists, else last
    summary: Summary | None  # None on the ranks other than 0 of a torchrun
    history: list[EpochRow]


@dataclass
class Split:
    """The tensors of one run, on its device: training (after any subset), validation, test."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor


def split_data(cfg: Config, data: FashionMNIST, device: torch.device) -> Split:
    train_idx, val_idx = stratified_split(data.train_labels, cfg.val_size, cfg.seed)
    if cfg.train_subset:
        if cfg.train_subset >= len(train_idx):
            raise FmnistError(f"train_subset {cfg.train_subset} must be below the {len(train_idx)} training images")
        _, keep = stratified_split(data.train_labels[train_idx], cfg.train_subset, cfg.seed + 1)
        train_idx = train_idx[keep]
    return Split(
        data.train_images[train_idx].to(device),
        data.train_labels[train_idx].to(device),
        data.train_images[val_idx].to(device),
        data.train_labels[val_idx].to(device),
        data.test_images.to(device),
        data.test_labels.to(device),
    )


def fit(
    cfg: Config,
    run_dir: str | Path,
    data: FashionMNIST,
    *,
    resume: bool = False,
    log: Callable[[str], None] = print,
    progress: bool = True,
    on_epoch: Callable[[EpochRow], None] | None = None,
    fit_trust: bool = False,
) -> FitResult:
    """Train `cfg` on `data`, writing config, metrics, checkpoints and TensorBoard events to `run_dir`.

    `on_epoch` sees each epoch's metrics row after its checkpoint is written; an exception it
    raises (e.g. optuna.TrialPruned) stops training with the run resumable.
    `fit_trust`: when training ends, fit the temperature and the non-garment detector on the validation
    split into best.pt (trust.py; `fmnist train` asks for it, studies do not).

    Under torchrun each process trains on its shard of every epoch's permutation with
    batch_size / world_size images per step, so the effective batch stays cfg.batch_size;
    only rank 0 evaluates, logs and writes.
    """
    t_start = time.perf_counter()
    run_dir = Path(run_dir)
    device = select_device(cfg.device)
    w = distributed.init(device)
    device = distributed.device_for(device, w)
    if cfg.batch_size % w.size:
        raise FmnistError(f"batch_size {cfg.batch_size} must be divisible by the {w.size} processes")
    if w.active and cfg.on_nan == "skip":
        raise FmnistError("on_nan = skip needs a single process: ranks would disagree on which steps to take")
    if not w.is_main:
        log, progress, on_epoch = (lambda _msg: None), False, None
    measure.reset_peak_memory(device)
    if device.type == "cpu":
        cpu.flush_denormals()  # on every intra-op thread: Adam's state decays into slow denormals
    elif device.type == "cuda":  # set either way: a process may run several fits
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = cfg.tf32

    d = split_data(cfg, data, device)
    shard = len(d.train_x) // w.size
    local_cfg = cfg.replace(batch_size=cfg.batch_size // w.size)
    steps_per_epoch = math.ceil(shard / local_cfg.batch_size)
    st = build_step_state(cfg, device, steps_per_epoch, rank=w.rank)
    net, optimizer, scheduler = st.model, st.optimizer, st.scheduler
    data_generator, aug_generator = st.data_generator, st.aug_generator
    model: nn.Module = net
    if w.launched:
        net = distributed.sync_batch_norm(net, device)
        model = DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None)
    if w.active:
        torch.manual_seed(cfg.seed + w.rank)  # dropout masks differ per rank, as augmentation does
    if cfg.compile != "none":
        model = cast(nn.Module, torch.compile(model, mode=cfg.compile))

    history: list[EpochRow] = []
    best_val = -1.0
    earlier_seconds = 0.0  # wall time of the processes before a resume
    last_path, best_path = run_dir / "checkpoints" / "last.pt", run_dir / "checkpoints" / "best.pt"
    if resume and last_path.exists():
        # Loaded to the CPU, where RNG states must be, whatever device saved the run;
        # load_state_dict copies weights and optimizer state to this run's device.
        state = checkpoint.load(last_path)
        net.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        restore_rng(state["rng"], w, data_generator, aug_generator, device, log)
        history, best_val = state["history"], state["best_val_acc"]
        earlier_seconds = state.get("wall_seconds", 0.0)
        log(f"resuming {run_dir} after epoch {state['epoch']}")
    elif not resume:
        problem = distributed.broadcast(prepare_run_dir(run_dir, cfg) if w.is_main else None, w)
        if problem:
            raise FmnistError(problem)

    trained_now = len(history) < cfg.epochs
    writer = tensorboard_writer(run_dir, len(history) + 1) if w.is_main else None
    try:
        for epoch in range(len(history) + 1, cfg.epochs + 1):
            order = torch.randperm(len(d.train_x), generator=data_generator)
            order = to_device(order[w.rank : shard * w.size : w.size], device)
            lr = optimizer.param_groups[0]["lr"]
            measure.synchronize(device)
            t0 = time.perf_counter()
            train_loss, train_acc, skipped = train_one_epoch(
                model, optimizer, scheduler, d.train_x, d.train_y, order, local_cfg, aug_generator, epoch, progress
            )
            if skipped:
                log(f"epoch {epoch}: skipped {skipped} batches with a non-finite loss (--on-nan skip)")
            totals = distributed.all_reduce_sum(torch.tensor([train_loss, train_acc]), w)
            train_loss, train_acc = (totals / w.size).tolist()
            measure.synchronize(device)
            seconds = time.perf_counter() - t0
            rng = distributed.gather(rng_states(data_generator, aug_generator, device), w)
            if writer is None:  # only the main process records the epoch
                continue
            test = evaluate(net, d.test_x, d.test_y, cfg.eval_batch_size)
            row: EpochRow = {
                "epoch": epoch,
                "train_loss": train_loss,
                "train_acc": train_acc,
                "test_loss": test.loss,
                "test_acc": test.accuracy,
                "lr": lr,
                "epoch_seconds": seconds,
                "ms_per_batch": 1000 * seconds / steps_per_epoch,
                "images_per_second": shard * w.size / seconds,
            }
            improved = False
            if len(d.val_x):
                val = evaluate(net, d.val_x, d.val_y, cfg.eval_batch_size)
                row["val_loss"], row["val_acc"] = val.loss, val.accuracy
                improved, best_val = val.accuracy > best_val, max(best_val, val.accuracy)
            history.append(row)
            state = {
                "model": net.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "epoch": epoch,
                "config": config_lib.to_dict(cfg),
                "history": history,
                "best_val_acc": best_val,
                "wall_seconds": earlier_seconds + time.perf_counter() - t_start,
                "rng": rng,  # one dict per rank, in rank order
            }
            checkpoint.save(last_path, state)
            if improved:
                checkpoint.save(best_path, state)
            atomic_write(run_dir / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in history))
            for key, value in row.items():
                if key != "epoch":
                    writer.add_scalar(key, value, epoch)
            writer.flush()
            log(format_epoch(row, cfg.epochs))
            if on_epoch:
                on_epoch(row)
    finally:
        if writer:
            writer.close()

    if not w.is_main:
        return FitResult(model=net, summary=None, history=[])
    if best_path.exists():
        net.load_state_dict(checkpoint.load(best_path, map_location=device)["model"])
    if not trained_now and (run_dir / "summary.json").exists():
        # A finished run resumed: its summary, wall time included, stays as its own processes wrote it.
        finished = cast(Summary, json.loads((run_dir / "summary.json").read_text()))
        return FitResult(model=net, summary=finished, history=history)
    summary = summarize(cfg, net, history, device, earlier_seconds + time.perf_counter() - t_start, run_dir)
    summary["processes"], summary["process_group"] = w.size, distributed.backend()
    atomic_write(run_dir / "summary.json", json.dumps(summary, indent=2) + "\n")
    if fit_trust:  # the temperature and the non-garment detector, fitted on validation, join best.pt
        trust.fit_and_store(net, d.val_x, d.val_y, best_path, cfg.seed, log)
    return FitResult(model=net, summary=summary, history=history)


def tensorboard_writer(run_dir: Path, first_epoch: int):
    from torch.utils.tensorboard import SummaryWriter  # slow import, only when training

    # purge_step drops events a killed run logged after its last checkpoint.
    return SummaryWriter(run_dir / "tensorboard", purge_step=first_epoch)


def prepare_run_dir(run_dir: Path, cfg: Config) -> str | None:
    """Refuse to overwrite an earlier run; write the resolved config first, which also proves the
    directory is writable before any training time is spent. Returns the problem, if any."""
    if (run_dir / "config.toml").exists():
        return f"{run_dir} already holds a run; continue it with --resume {run_dir} or choose another --out"
    try:
        atomic_write(run_dir / "config.toml", config_lib.dumps(cfg))
    except OSError as e:
        return f"cannot write the run directory {run_dir}: {e.strerror or e}"
    return None


def to_device(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A host tensor on `device`; to a GPU through pinned memory, so the copy does not stall the host."""
    if device.type == "cuda":
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor.to(device)


def rng_states(data_generator: torch.Generator, aug_generator: torch.Generator, device: torch.device) -> dict:
    """This process's random states, all CPU tensors: the global CPU RNG, the data order, the
    augmentation generator and the device's global RNG (dropout on a GPU draws from it)."""
    states = {
        "device": device.type,
        "torch": torch.get_rng_state(),
        "data": data_generator.get_state(),
        "augment": aug_generator.get_state(),
    }
    if device.type == "cuda":
        states["cuda"] = torch.cuda.get_rng_state(device)
    elif device.type == "mps":
        states["mps"] = torch.mps.get_rng_state()
    return states


def restore_rng(
    saved: dict | list[dict],
    w: distributed.World,
    data_generator: torch.Generator,
    aug_generator: torch.Generator,
    device: torch.device,
    log: Callable[[str], None] = print,
) -> None:
    """Restore this rank's states from a checkpoint's `rng` (a list by rank; one dict before that).

    The data order is the same on every rank and always continues. The other streams continue
    only on the device type and process count that saved them: a CUDA generator's state means
    nothing to a CPU one. Otherwise they keep their fresh per-rank seeds, and the run goes on
    with other augmentations and dropout masks than an uninterrupted one would have drawn.
    """
    per_rank = saved if isinstance(saved, list) else [saved]
    cpu = [{k: v.cpu() if isinstance(v, torch.Tensor) else v for k, v in s.items()} for s in per_rank]
    data_generator.set_state(cpu[0]["data"])
    states = cpu[w.rank] if len(cpu) == w.size else {}
    saved_on = states.get("device", "cuda" if "cuda" in states else "cpu")
    if not states or saved_on != device.type:
        log(f"saved by {len(cpu)} process(es) on {cpu[0].get('device', saved_on)}, resumed by {w.size} on "
            f"{device.type}: augmentation and dropout draw fresh random numbers from here on")
        return
    torch.set_rng_state(states["torch"])
    aug_generator.set_state(states["augment"])
    if device.type == "cuda":
        torch.cuda.set_rng_state(states["cuda"], device)
    elif device.type == "mps":
        torch.mps.set_rng_state(states["mps"])


def format_epoch(row: EpochRow, epochs: int) -> str:
    text = (
        f"epoch {row['epoch']:>3}/{epochs}  train loss {row['train_loss']:.4f} acc {row['train_acc']:.2%}  "
        f"test loss {row['test_loss']:.4f} acc {row['test_acc']:.2%}  "
    )
    if "val_acc" in row:
        text += f"val loss {row['val_loss']:.4f} acc {row['val_acc']:.2%}  "
    return text + f"lr {row['lr']:.2e}  {row['epoch_seconds']:.2f}s  {row['images_per_second']:,.0f} img/s"


def summarize(cfg: Config, model: nn.Module, history: list[EpochRow], device, wall: float, run_dir: Path) -> Summary:
    if not history:
        raise FmnistError(f"{run_dir}: no completed epoch to summarise")
    chosen = max(history, key=lambda r: r.get("val_acc", 0.0)) if "val_acc" in history[0] else history[-1]
    summary: Summary = {
        "test_accuracy": chosen["test_acc"],
        "test_loss": chosen["test_loss"],
        "chosen_epoch": chosen["epoch"],
        "chosen_by": "best validation accuracy" if "val_acc" in chosen else "last epoch",
        "epochs": len(history),
        "parameters": models.parameter_count(model),
        "wall_seconds": wall,
        "train_images_per_second": statistics.median(r["images_per_second"] for r in history),
        "train_ms_per_batch": statistics.median(r["ms_per_batch"] for r in history),
        "peak_memory_bytes": measure.peak_memory_bytes(device),
        "device": str(device),
        "torch_version": torch.__version__,
        "seed": cfg.seed,
        "code_version": measure.code_version(),
        "hardware": measure.hardware(device),
        "amp": resolve_amp(cfg.amp, device)[0],
        "config": config_lib.to_dict(cfg),
    }
    if "val_acc" in chosen:
        summary["val_accuracy"], summary["val_loss"] = chosen["val_acc"], chosen["val_loss"]
    return summary
