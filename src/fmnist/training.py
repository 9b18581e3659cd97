"""fit(): epochs of training with per-epoch evaluation, checkpoints every epoch, exact resume."""

from __future__ import annotations

import dataclasses
import itertools
import math
import statistics
import time
import traceback
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from fmnist import checkpoint, cpu, distributed, measure, models, monitor, signals, trust
from fmnist import config as config_lib
from fmnist.augment import augment, mix
from fmnist.config import Config
from fmnist.data import (
    CLASSES,
    FashionMNIST,
    as_input,
    split_seed,
    trained_on,
    training_indices,
    validation_split,
)
from fmnist.device import resolve_amp, select_device
from fmnist.ema import ModelEma
from fmnist.errors import FmnistError
from fmnist.evaluate import evaluate
from fmnist.records import EpochRow, Summary
from fmnist.run_dir import RunDir, model_path, trainable_path

# Steps between host checks of the on-device "first non-finite loss" marker; cheap, and
# bounds how far a diverged run goes on before it is stopped.
NAN_CHECK_EVERY = 50


class NonFiniteLoss(FmnistError):
    pass


class UntrainableConfig(FmnistError):
    """A config that the run's data cannot train (see check_batches), refused before any work."""


def build_optimizer(model: nn.Module, cfg: Config) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]  # not the layers cfg.freeze keeps
    # fused: one vectorised kernel per parameter tensor that reads and writes each element
    # once, where foreach on CPU is a loop of per-tensor ops, one memory pass each (the two
    # compared on a whole training step: benchmarks/step_ab.py, docs/PERFORMANCE.md).
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
    # Whole steps, at least one when asked for: a fraction of a step would put the first step's
    # factor above 1 (a warmup of 0.01 epochs at 50 steps per epoch: twice the peak lr).
    warmup = math.ceil(cfg.warmup_epochs * steps_per_epoch)
    if cfg.schedule == "onecycle" and not warmup:
        warmup = math.ceil(0.3 * total)  # the one-cycle policy's usual rise over 30% of training
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


# Batch norm in training mode normalises each channel over the batch: it needs two values.
MIN_BATCH_NORM_IMAGES = 2


def batch_plan(n: int, batch: int) -> list[tuple[int, int]]:
    """(start, stop) of each batch of one epoch over `n` images in batches of `batch`.

    The last incomplete batch is merged into the one before it (every image is trained on every
    epoch, and no step sees a batch smaller than `batch`, which a 1-image remainder would make
    fail under batch norm); when n < batch the whole epoch is one batch of n images.
    """
    steps = max(1, n // batch)
    bounds = [i * batch for i in range(steps)] + [n]
    return list(itertools.pairwise(bounds))


def step_plan(n: int, batch: int, accumulate: int) -> list[tuple[int, int]]:
    """(start, stop) of the images of each optimizer step of one epoch over `n` images: `accumulate`
    consecutive batches of batch_plan (the epoch's last group may hold fewer)."""
    plan = batch_plan(n, batch)
    return [(plan[i][0], plan[min(i + accumulate, len(plan)) - 1][1]) for i in range(0, len(plan), accumulate)]


class StepStream:
    """Optimizer steps cut from epoch after epoch of `n` training images exactly as fit() cuts an epoch
    (step_plan: the last incomplete batch merged, cfg.accumulate batches a step), each epoch a fresh
    permutation drawn from `generator`. For the callers that run a number of steps rather than whole
    epochs (lr-find, the profiler, the bench's training rows): none of them can cut a step that fit()
    would not, such as a 1-image batch under batch norm. Raises UntrainableConfig where check_batches does.
    """

    def __init__(self, n: int, cfg: Config, generator: torch.Generator, device: torch.device):
        check_batches(cfg, n)
        self.n, self.generator, self.device = n, generator, device
        self.plan = step_plan(n, cfg.batch_size, cfg.accumulate)
        self.order = torch.empty(0, dtype=torch.long)
        self.next_step = len(self.plan)

    def take(self, steps: int) -> tuple[torch.Tensor, int]:
        """Indices (on the device) of the images of the next `steps` steps, at most to the end of the
        current epoch, and how many steps they are; train_one_epoch cuts them into the same batches."""
        if self.next_step == len(self.plan):
            self.order = torch.randperm(self.n, generator=self.generator).to(self.device)
            self.next_step = 0
        first, last = self.next_step, min(self.next_step + max(steps, 1), len(self.plan))
        self.next_step = last
        return self.order[self.plan[first][0] : self.plan[last - 1][1]], last - first


def check_batches(cfg: Config, images: int, processes: int = 1) -> None:
    """Refuse, before any training, a run whose batches cannot train: no image for a process, or a
    1-image batch under batch norm (raises UntrainableConfig). `images`: training images after the
    validation split and any subset, shared by `processes` processes."""
    shard, local = images // processes, cfg.batch_size // processes
    where = f"{images} training image(s)" + (f" over {processes} processes" if processes > 1 else "")
    if shard < 1:
        raise UntrainableConfig(f"{where} leave no image for a process; raise --train-subset or lower --val-size")
    smallest = min(shard, local)
    if cfg.batch_norm and smallest < MIN_BATCH_NORM_IMAGES:
        raise UntrainableConfig(
            f"batch norm needs at least {MIN_BATCH_NORM_IMAGES} images per batch and process, and {where} with "
            f"--batch-size {cfg.batch_size} give {smallest}; raise --batch-size or --train-subset, or drop --batch-norm"
        )


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
        models.freeze(model, cfg.freeze)
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
    ema: ModelEma | None = None,
) -> tuple[float, float, int]:
    """One pass over `images[order]` in batches; returns (mean loss, accuracy, skipped batches).

    `labels`: class indices [N], or target distributions [N, C] (soft targets: an adaptation's replay
    memory distilled from its parent), the loss then against them and the accuracy against their argmax.

    With cfg.accumulate = k the gradients of k batches add up to one optimizer (and schedule, and
    `ema`) step, each batch's loss weighted by its share of the group's images: the step is that of
    one batch of k * batch_size images. With mixup or CutMix (cfg.mixup_alpha, cfg.cutmix_alpha) the
    loss is against the mixed targets and the accuracy against each image's own label.

    With cfg.on_nan == "skip" a batch whose loss is not finite takes no optimizer step and
    counts in neither loss nor accuracy; that check reads the loss on the host every step.

    Each step's loss and predictions are written into preallocated device buffers (one
    small op each, no host synchronisation); totals and the non-finite check read them
    every NAN_CHECK_EVERY steps and at the end.
    """
    model.train()
    device = images.device
    bf16 = resolve_amp(cfg.amp, device)[0] == "bf16"
    n = len(order)
    plan = batch_plan(n, cfg.batch_size)
    losses = torch.empty(len(plan), device=device)
    predictions = torch.empty(n, dtype=torch.long, device=device)
    checked = 0  # steps already known to have finite losses
    skipped: list[int] = []
    bar = tqdm(plan, desc=f"epoch {epoch}/{cfg.epochs}", unit="batch", leave=False, disable=not progress or None)
    for step, (start, stop) in enumerate(bar):
        idx = order[start:stop]
        # index_select: a plain gather, cheaper per batch on CPU than tensor[idx]'s advanced indexing.
        x, y = as_input(images.index_select(0, idx)), labels.index_select(0, idx)
        if cfg.augment:
            x = augment(x, cfg.augment, aug_generator, strength=cfg.augment_strength)
        target = y
        if cfg.mixup_alpha or cfg.cutmix_alpha:  # mixup / CutMix: soft targets [B, classes]
            x, target = mix(
                x, y, models.NUM_CLASSES, aug_generator, mixup_alpha=cfg.mixup_alpha, cutmix_alpha=cfg.cutmix_alpha
            )
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            logits = model(x)
        loss = F.cross_entropy(logits.float(), target, label_smoothing=cfg.label_smoothing)
        if cfg.on_nan == "skip" and not torch.isfinite(loss):
            skipped.append(step)
            losses[step] = 0.0
            predictions[start:stop] = -1
            with warnings.catch_warnings():  # "scheduler before optimizer": deliberate here
                warnings.simplefilter("ignore", UserWarning)
                scheduler.step()  # the schedule stays on time
            continue
        first = step - step % cfg.accumulate  # the batches of this step's accumulation group
        last = min(first + cfg.accumulate, len(plan)) - 1
        if step == first:
            optimizer.zero_grad(set_to_none=True)
        if cfg.accumulate > 1:  # gradient accumulation: the mean over the group's images
            (loss * (len(idx) / (plan[last][1] - plan[first][0]))).backward()
        else:
            loss.backward()
        if step == last:
            optimizer.step()
            scheduler.step()
            if ema is not None:
                ema.update(model)
        losses[step] = loss.detach()
        torch.argmax(logits.detach(), 1, out=predictions[start:stop])
        if step % NAN_CHECK_EVERY == NAN_CHECK_EVERY - 1 or stop == n:
            bad = torch.nonzero(~torch.isfinite(losses[checked : step + 1])).flatten().tolist()
            if bad:
                raise NonFiniteLoss(
                    f"non-finite loss at epoch {epoch}, step {checked + bad[0] + 1} (lr {cfg.lr:g}); "
                    "lower --lr; the last good checkpoint is kept"
                )
            checked = step + 1
    sizes = torch.tensor([stop - start for start, stop in plan], dtype=losses.dtype, device=device)
    sizes[skipped] = 0
    counted = max(int(sizes.sum().item()), 1)
    truth = labels if labels.ndim == 1 else labels.argmax(1)
    correct = (predictions == truth.index_select(0, order)).sum()
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
    train_y: torch.Tensor  # class indices [N], or target distributions [N, C] (train_one_epoch)
    val_x: torch.Tensor
    val_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor

    def to(self, device: torch.device) -> Split:
        return Split(*(getattr(self, f.name).to(device) for f in dataclasses.fields(self)))


def _parent(cfg: Config) -> tuple[nn.Module, Config, dict]:
    """checkpoint.load_model of cfg.init_from (a checkpoint, a run directory or a state dict fmnist recognises)."""
    refusal = f"init_from {cfg.init_from}: an export cannot be trained on; start from its checkpoint"
    return checkpoint.load_model(trainable_path(cfg.init_from, refusal))


def inherit_split(cfg: Config, saved: Config | None = None) -> Config:
    """`cfg` holding out its parent's validation split when it fine-tunes an fmnist checkpoint (cfg.init_from) and
    names no split seed of its own (config.Config.split_seed -1): the parent's split seed, or the one `saved` holds
    (the config of the run it continues: resolved when that run began, so a restart needs no parent file). Every
    command resolves it when it builds a run's config, so that the run's config.toml holds it and a restart asks for
    the same. A bare state dict's training images are unknown: `cfg` as it is. Raises FmnistError for a parent that
    cannot be trained from (an export, a file fmnist does not read)."""
    if not cfg.init_from or cfg.split_seed >= 0:
        return cfg
    if saved is not None:
        return cfg.replace(split_seed=saved.split_seed)
    return _split_of(cfg, _fmnist_parent(cfg))


def parent_split(cfg: Config, data: FashionMNIST | Split, log: Callable[[str], None]) -> tuple[Config, int]:
    """inherit_split(cfg) for a new fine-tune, and how many of its validation images (of `data`) the parent trained on
    (a larger --val-size, another --split-seed), with a line to `log` when any: the best epoch, the temperature and
    the detector are then chosen on images the parent already knows. 0 when that cannot be so or is unknown: no
    --init-from, no validation split, a bare state dict (its training images unknown), or a Split rather than the
    dataset (adapt's photos). Raises FmnistError as inherit_split does."""
    if not cfg.init_from or not isinstance(data, FashionMNIST):
        return inherit_split(cfg), 0
    parent = _fmnist_parent(cfg)
    cfg = _split_of(cfg, parent)
    if parent is None or not cfg.val_size:
        return cfg, 0
    _, val_idx = validation_split(data.train_labels, cfg)
    seen = int(torch.isin(val_idx, training_indices(data.train_labels, parent)).sum())
    if seen:
        log(
            f"note: {seen} of the {len(val_idx)} validation images are images {cfg.init_from} trained on "
            f"(it held out {parent.val_size or 'none'} with split seed {split_seed(parent)}): the best "
            "epoch, the temperature and the detector are chosen on them"
        )
    return cfg, seen


def _split_of(cfg: Config, parent: Config | None) -> Config:
    """`cfg` with the split seed of its `parent` (an fmnist checkpoint's config) where it names none of its own."""
    return cfg if parent is None or cfg.split_seed >= 0 else cfg.replace(split_seed=split_seed(parent))


def _fmnist_parent(cfg: Config) -> Config | None:
    """The config of cfg.init_from, an fmnist checkpoint; None for a bare state dict (its training images unknown)."""
    _, parent_cfg, state = _parent(cfg)
    return None if "layout" in state else parent_cfg


def init_weights(model: nn.Module, cfg: Config) -> None:
    """Copy the weights of cfg.init_from (a checkpoint, a run directory or a state dict fmnist recognises)
    into `model`, built from `cfg`. Raises FmnistError when they are not of the same architecture."""
    parent, parent_cfg, _ = _parent(cfg)
    try:
        model.load_state_dict(parent.state_dict())
    except RuntimeError:
        raise FmnistError(
            f"init_from {cfg.init_from}: its {describe_architecture(parent_cfg)} does not fit this run's "
            f"{describe_architecture(cfg)}; give the run the parent's architecture"
        ) from None


def describe_architecture(cfg: Config) -> str:
    text = f"{cfg.model} hidden={','.join(map(str, cfg.hidden))}"
    return text + (" with batch norm" if cfg.batch_norm else "") + (f" head={cfg.head}" if cfg.head else "")


def split_data(cfg: Config, data: FashionMNIST, device: torch.device) -> Split:
    _, val_idx = validation_split(data.train_labels, cfg)
    train_x, train_y = trained_on(data, cfg)
    return Split(
        train_x.to(device),
        train_y.to(device),
        data.train_images[val_idx].to(device),
        data.train_labels[val_idx].to(device),
        data.test_images.to(device),
        data.test_labels.to(device),
    )


@dataclass
class Trainer:
    """What fit() sets up once and its loop reads: this process's place, the data on the device,
    the model to step (`model`: wrapped by DDP and/or torch.compile) beside the plain module that
    is evaluated and saved (`raw_model`), and the step state."""

    world: distributed.World
    device: torch.device
    tensors: Split
    raw_model: nn.Module
    model: nn.Module
    state: StepState
    local_cfg: Config  # cfg with this process's share of each batch
    shard: int  # training images per process per epoch
    steps_per_epoch: int  # optimizer steps (cfg.accumulate batches each)
    ema: ModelEma | None  # the EMA of the weights (cfg.ema_decay), evaluated beside the raw ones
    threads: cpu.AutoThreads  # torch's intra-op threads on a CPU (cfg.threads), retuned each epoch


def setup(cfg: Config, data: FashionMNIST | Split, log: Callable[[str], None], *, fresh: bool = True) -> Trainer:
    """Join the process group (under torchrun), choose the CPU threads, put the data on the device (`data`
    split by cfg, or a Split as given) and build the model, optimizer, schedule, EMA and generators; a
    `fresh` run (not one resumed from a checkpoint) starts from cfg.init_from's weights when it names
    one. Raises FmnistError for a config this world cannot run."""
    device = select_device(cfg.device)
    world = distributed.init(device)
    device = distributed.device_for(device, world)
    if cfg.batch_size % world.size:
        raise FmnistError(f"batch_size {cfg.batch_size} must be divisible by the {world.size} processes")
    if world.active and cfg.on_nan == "skip":
        raise FmnistError("on_nan = skip needs a single process: ranks would disagree on which steps to take")
    measure.reset_peak_memory(device)
    threads = cpu.AutoThreads(cfg.threads, world.size)
    if device.type == "cpu":
        log(threads.start())  # --threads: auto takes the cores other processes leave free
        cpu.flush_denormals()  # on every intra-op thread: Adam's state decays into slow denormals
    elif device.type == "cuda":  # set either way: a process may run several fits
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = cfg.tf32

    tensors = data.to(device) if isinstance(data, Split) else split_data(cfg, data, device)
    shard = len(tensors.train_x) // world.size
    local_cfg = cfg.replace(batch_size=cfg.batch_size // world.size)
    check_batches(cfg, len(tensors.train_x), world.size)
    steps_per_epoch = len(step_plan(shard, local_cfg.batch_size, cfg.accumulate))  # optimizer steps
    state = build_step_state(cfg, device, steps_per_epoch, rank=world.rank)
    raw_model = model = state.model
    if cfg.init_from and fresh:  # before the EMA copies the weights
        init_weights(raw_model, cfg)
    if world.launched:
        raw_model = distributed.sync_batch_norm(raw_model, device)
        model = DistributedDataParallel(raw_model, device_ids=[device.index] if device.type == "cuda" else None)
    ema = ModelEma(raw_model, cfg.ema_decay) if cfg.ema_decay else None
    if world.active:
        torch.manual_seed(cfg.seed + world.rank)  # dropout masks differ per rank, as augmentation does
    if cfg.compile != "none":
        model = cast(nn.Module, torch.compile(model, mode=cfg.compile))
    return Trainer(world, device, tensors, raw_model, model, state, local_cfg, shard, steps_per_epoch, ema, threads)


@dataclass
class Progress:
    """What a run has done so far: restored on resume, saved in every checkpoint."""

    history: list[EpochRow]
    best_val: float = -1.0
    earlier_seconds: float = 0.0  # training wall time of the processes before a resume
    earlier_total: float = 0.0  # their whole wall time, up to their last checkpoint


def start_or_resume(
    t: Trainer, cfg: Config, run: RunDir, resume: bool, log: Callable[[str], None], parent_seen: int = 0
) -> Progress:
    """A new run writes its config (and refuses a directory that holds one), and a fine-tune its parent.json, with
    `parent_seen` validation images its parent trained on; `resume` continues from last.pt when it exists. Raises
    FmnistError on every rank when the directory cannot be used."""
    if resume and run.last.exists():
        # Loaded to the CPU, where RNG states must be, whatever device saved the run;
        # load_state_dict copies weights and optimizer state to this run's device.
        saved = checkpoint.load(run.last)
        t.raw_model.load_state_dict(saved["model"])
        t.state.optimizer.load_state_dict(saved["optimizer"])
        t.state.scheduler.load_state_dict(saved["scheduler"])
        restore_rng(saved["rng"], t.world, t.state.data_generator, t.state.aug_generator, t.device, log)
        if t.ema is not None:
            t.ema.load_state_dict(saved["ema"])
        log(f"resuming {run} after epoch {saved['epoch']}")
        wall = saved.get("wall_seconds", 0.0)
        return Progress(saved["history"], saved["best_val_acc"], wall, saved.get("total_seconds", wall))
    if not resume:
        problem = distributed.broadcast(run.create(cfg) if t.world.is_main else None, t.world)
        if problem:
            raise FmnistError(problem)
        if cfg.init_from and t.world.is_main:
            run.write_parent(model_path(cfg.init_from), parent_seen)
    return Progress([])


def fit(
    cfg: Config,
    run_dir: str | Path,
    data: FashionMNIST | Split,
    *,
    resume: bool = False,
    log: Callable[[str], None] = print,
    progress: bool = True,
    on_epoch: Callable[[EpochRow], None] | None = None,
    fit_trust: bool = False,
    started: float | None = None,
) -> FitResult:
    """Train `cfg` on `data`, writing config, metrics, checkpoints, TensorBoard events, summary and
    plots to `run_dir` (run_dir.RunDir names the files).

    `on_epoch` sees each epoch's metrics row after its checkpoint is written; an exception it
    raises (e.g. optuna.TrialPruned) stops training with the run resumable.
    `fit_trust`: when training ends, fit the temperature and the non-garment detector on the validation
    split into best.pt (fmnist.trust; `fmnist train` asks for it, studies do not).
    `started`: time.perf_counter() at the command's start, from which the summary's total_seconds counts
    (default: the call of fit); wall_seconds, what cfg.max_time budgets, counts from the call.

    Under torchrun each process trains on its shard of every epoch's permutation with
    batch_size / world_size images per step, so the effective batch stays cfg.batch_size;
    only rank 0 evaluates, logs and writes.

    Raises FmnistError for a config or run directory that cannot be used (before any training),
    NonFiniteLoss when the loss diverges (the last good checkpoint is kept).
    """
    t_start = time.perf_counter()
    started = t_start if started is None else started
    run = RunDir(run_dir)
    if not distributed.world().is_main:
        log, progress, on_epoch = (lambda _msg: None), False, None
    cfg, parent_seen = (cfg, 0) if resume else parent_split(cfg, data, log)
    t = setup(cfg, data, log, fresh=not (resume and run.last.exists()))
    world, state, tensors = t.world, t.state, t.tensors
    done = start_or_resume(t, cfg, run, resume, log, parent_seen)
    trained_now = len(done.history) < cfg.epochs
    stopped = None  # why fewer than cfg.epochs were trained (monitor.stop_reason)
    writer = run.tensorboard_writer(len(done.history) + 1) if world.is_main else None
    try:
        for epoch in range(len(done.history) + 1, cfg.epochs + 1):
            # stop: early stopping and the time budget, decided by rank 0 from the history (also on a resume)
            elapsed = done.earlier_seconds + time.perf_counter() - t_start
            stopped = distributed.broadcast(
                monitor.stop_reason(cfg, done.history, elapsed) if world.is_main else None, world
            )
            if stopped:
                log(stopped)
                break
            if retuned := t.threads.retune():  # auto threads: the load of other processes changed
                log(retuned)

            # schedule: this epoch's permutation (the same on every rank), this rank's shard of it
            order = torch.randperm(len(tensors.train_x), generator=state.data_generator)
            order = to_device(order[world.rank : t.shard * world.size : world.size], t.device)
            lr = state.optimizer.param_groups[0]["lr"]

            # step: one pass over the shard, timed
            measure.synchronize(t.device)
            t0 = time.perf_counter()
            with failure_as_error(run, epoch, world.is_main):
                train_loss, train_acc, skipped = train_one_epoch(
                    t.model,
                    state.optimizer,
                    state.scheduler,
                    tensors.train_x,
                    tensors.train_y,
                    order,
                    t.local_cfg,
                    state.aug_generator,
                    epoch,
                    progress,
                    t.ema,
                )
            if skipped:
                log(f"epoch {epoch}: skipped {skipped} batches with a non-finite loss (--on-nan skip)")
            totals = distributed.all_reduce_sum(torch.tensor([train_loss, train_acc]), world)
            train_loss, train_acc = (totals / world.size).tolist()
            measure.synchronize(t.device)
            seconds = time.perf_counter() - t0
            rng = distributed.gather(rng_states(state.data_generator, state.aug_generator, t.device), world)
            if not world.is_main:  # rank 0 alone evaluates and records
                continue

            # evaluate: validation when split off (it chooses), test only for a curve (--test-curve)
            row = epoch_row(t, epoch, train_loss, train_acc, lr, seconds, cfg)
            score = monitor.validation_score(row) if "val_acc" in row else None  # raw or EMA, the better
            improved = score is not None and score > done.best_val
            done.best_val = max(done.best_val, score if score is not None else -1.0)
            done.history.append(row)

            # record: checkpoint (best.pt holds the chosen weights, raw or EMA), metrics, TensorBoard, console
            saved = {
                "model": t.raw_model.state_dict(),
                "optimizer": state.optimizer.state_dict(),
                "scheduler": state.scheduler.state_dict(),
                "epoch": epoch,
                "config": config_lib.to_dict(cfg),
                "history": done.history,
                "best_val_acc": done.best_val,
                "wall_seconds": done.earlier_seconds + time.perf_counter() - t_start,
                "total_seconds": done.earlier_total + time.perf_counter() - started,
                "rng": rng,  # one dict per rank, in rank order
            }
            if t.ema is not None:
                saved["ema"] = t.ema.state_dict()
            run.record_epoch(saved, done.history, best=best_state(saved, row, t.ema) if improved else None)
            assert writer is not None  # the main process has one
            with signals.deferred():  # a stop raised inside the writer's queue would leave its lock taken
                for key, value in row.items():
                    if key != "epoch":
                        writer.add_scalar(key, value, epoch)
                writer.flush()
            log(format_epoch(row, cfg.epochs))

            # stop: a caller's on_epoch may raise (optuna.TrialPruned) and leave the run resumable
            if on_epoch:
                on_epoch(row)
    finally:
        if writer:
            writer.close()

    if not world.is_main:
        return FitResult(model=t.raw_model, summary=None, history=[])
    seconds = time.perf_counter() - t_start
    return finish(t, cfg, run, done, trained_now, stopped, seconds, fit_trust, log, started)


def epoch_row(
    t: Trainer, epoch: int, train_loss: float, train_acc: float, lr: float, seconds: float, cfg: Config
) -> EpochRow:
    row: EpochRow = {
        "epoch": epoch,
        "train_loss": train_loss,
        "train_acc": train_acc,
        "lr": lr,
        "epoch_seconds": seconds,
        "ms_per_batch": 1000 * seconds / t.steps_per_epoch,
        "images_per_second": t.shard * t.world.size / seconds,
    }
    add_metrics(row, "", t.raw_model, t.tensors, cfg)
    if t.ema is not None:  # the EMA weights, measured like the raw ones
        add_metrics(row, "ema_", t.ema.module, t.tensors, cfg)
    return row


def add_metrics(row: EpochRow, prefix: str, model: nn.Module, tensors: Split, cfg: Config) -> None:
    """Set `prefix`val_* (when there is a split) and `prefix`test_* (with cfg.test_curve) of an epoch row."""
    splits = [("val", tensors.val_x, tensors.val_y)] if len(tensors.val_x) else []
    if cfg.test_curve:
        splits.append(("test", tensors.test_x, tensors.test_y))
    for split, images, labels in splits:
        measured = evaluate(model, images, labels, cfg.eval_batch_size)
        row[f"{prefix}{split}_loss"], row[f"{prefix}{split}_acc"] = measured.loss, measured.accuracy  # type: ignore[literal-required]


def best_state(state: dict, row: EpochRow, ema: ModelEma | None) -> dict:
    """best.pt: `state` with "model" set to the epoch's better weights on validation (monitor.choose), and
    "weights" saying which; "model" stays what every reader of a checkpoint loads."""
    weights = monitor.choose([row])[1]
    if weights == monitor.EMA and ema is not None:
        return {**state, "model": ema.weights(), "weights": weights}
    return {**state, "weights": weights}


def finish(
    t: Trainer,
    cfg: Config,
    run: RunDir,
    done: Progress,
    trained_now: bool,
    stopped: str | None,
    seconds: float,
    fit_trust: bool,
    log: Callable[[str], None],
    started: float,
) -> FitResult:
    """Load the chosen weights (best on validation, else last), write the plots, fit the temperature and
    detector when asked (`fit_trust`), and write summary.json last, with the whole run's seconds since
    `started` (a time.perf_counter()) as total_seconds."""
    if run.best.exists():
        t.raw_model.load_state_dict(checkpoint.load(run.best)["model"])  # onto the CPU, copied to the device
    finished = run.read_summary()
    if not trained_now and finished is not None:
        # A finished run resumed: its summary, wall time included, stays as its own processes wrote it.
        return FitResult(model=t.raw_model, summary=finished, history=done.history)
    test = evaluate(t.raw_model, t.tensors.test_x, t.tensors.test_y, cfg.eval_batch_size)  # the chosen weights
    summary = summarize(cfg, t.raw_model, done.history, t.device, done.earlier_seconds + seconds, run.path)
    summary["test_accuracy"], summary["test_loss"] = test.accuracy, test.loss
    if stopped:
        summary["stopped"] = stopped
    summary["processes"], summary["process_group"] = t.world.size, distributed.backend()
    if parent := run.read_parent():
        summary["parent"] = parent
    from fmnist import plots  # matplotlib: only when a run finishes

    if fit_trust:  # the temperature and the non-garment detector, fitted on validation, join best.pt
        training = (t.tensors.train_x, t.tensors.train_y)
        trust.fit_and_store(t.raw_model, t.tensors.val_x, t.tensors.val_y, training, run.best, split_seed(cfg), log)
    # Then the plots, on disk before summary.json says the run is finished. Drawn in a thread beside the fit, they
    # slowed it by 0.3-0.6 s (matplotlib and the rendering of the fit's reference photos take turns on the GIL) and
    # saved 0.1-0.2 s of a 7-8 s run (docs/TRUST.md): not worth a thread, nor a fit time that counts the plots.
    plots.write_run_plots(run.path, done.history, test, t.tensors.test_x.cpu(), CLASSES)
    summary["total_seconds"] = done.earlier_total + time.perf_counter() - started  # the whole run, to this write
    run.write_summary(summary)  # last: a run with summary.json is finished, and a resume does not redo it
    return FitResult(model=t.raw_model, summary=summary, history=done.history)


class TrainingFailed(FmnistError):
    """An unexpected error in an epoch's training steps, told in one line; the traceback is in the
    run directory's error.log and the checkpoint of the last completed epoch is left as it was."""


@contextmanager
def failure_as_error(run: RunDir, epoch: int, write_log: bool = True) -> Iterator[None]:
    """Turn an unexpected exception of the block into TrainingFailed (chained to it), writing its
    traceback to run_dir/error.log when `write_log`. FmnistError (already one line) and OSError
    (the machine's state, such as a full disk) pass unchanged, and so do KeyboardInterrupt and
    other BaseExceptions."""
    try:
        yield
    except (FmnistError, OSError):
        raise
    except Exception as e:
        log = run.error_log
        if write_log:
            try:
                log.write_text("".join(traceback.format_exception(e)), encoding="utf-8")
            except OSError:
                pass
        detail = " ".join(str(e).split()) or "no message"
        kept = (
            f"the checkpoint of epoch {epoch - 1} is kept (continue with: fmnist train --resume {run})"
            if run.last.exists()
            else "no epoch had completed, so no checkpoint was written"
        )
        raise TrainingFailed(
            f"training stopped during epoch {epoch}: {type(e).__name__}: {detail}. {kept}; the traceback is in {log}."
        ) from e


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
    world: distributed.World,
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
    on_host = [{k: v.cpu() if isinstance(v, torch.Tensor) else v for k, v in s.items()} for s in per_rank]
    data_generator.set_state(on_host[0]["data"])
    states = on_host[world.rank] if len(on_host) == world.size else {}
    saved_on = states.get("device", "cuda" if "cuda" in states else "cpu")
    if not states or saved_on != device.type:
        log(
            f"saved by {len(on_host)} process(es) on {on_host[0].get('device', saved_on)}, resumed by {world.size} on "
            f"{device.type}: augmentation and dropout draw fresh random numbers from here on"
        )
        return
    torch.set_rng_state(states["torch"])
    aug_generator.set_state(states["augment"])
    if device.type == "cuda":
        torch.cuda.set_rng_state(states["cuda"], device)
    elif device.type == "mps":
        torch.mps.set_rng_state(states["mps"])


def format_epoch(row: EpochRow, epochs: int) -> str:
    text = f"epoch {row['epoch']:>3}/{epochs}  train loss {row['train_loss']:.4f} acc {row['train_acc']:.2%}  "
    if "test_acc" in row:
        text += f"test loss {row['test_loss']:.4f} acc {row['test_acc']:.2%}  "
    if "val_acc" in row:
        text += f"val loss {row['val_loss']:.4f} acc {row['val_acc']:.2%}  "
    if "ema_val_acc" in row:
        text += f"EMA val acc {row['ema_val_acc']:.2%}  "
    return text + f"lr {row['lr']:.2e}  {row['epoch_seconds']:.2f}s  {row['images_per_second']:,.0f} img/s"


def summarize(cfg: Config, model: nn.Module, history: list[EpochRow], device, wall: float, run_dir: Path) -> Summary:
    if not history:
        raise FmnistError(f"{run_dir}: no completed epoch to summarise")
    chosen, weights = monitor.choose(history)
    ema = weights == monitor.EMA
    summary: Summary = {
        "test_accuracy": math.nan,  # finish() sets the chosen weights' test figures, evaluated once
        "test_loss": math.nan,
        "chosen_epoch": chosen["epoch"],
        "chosen_by": "best validation accuracy" if "val_acc" in chosen else "last epoch",
        "weights": weights,
        "epochs": len(history),
        "parameters": models.parameter_count(model),
        "wall_seconds": wall,
        "total_seconds": wall,  # finish() sets the whole run's
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
        summary["val_accuracy"] = chosen["ema_val_acc"] if ema else chosen["val_acc"]
        summary["val_loss"] = chosen["ema_val_loss"] if ema else chosen["val_loss"]
    return summary
