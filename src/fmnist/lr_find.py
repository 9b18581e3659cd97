"""The learning-rate range test (Smith, "Cyclical Learning Rates for Training Neural Networks", 2017),
as fastai's `Learner.lr_find` runs it: train a throwaway copy of the config's model for a few hundred
steps while the learning rate grows exponentially, record the smoothed loss, and suggest a rate.

Nothing of a run is read or written: the model, optimizer and generators are built fresh from the
config (train.build_step_state), and the sweep stops early once the loss diverges.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from fmnist.config import Config
from fmnist.data import FashionMNIST
from fmnist.device import select_device
from fmnist.errors import FmnistError
from fmnist.training import NonFiniteLoss, StepStream, build_step_state, split_data, train_one_epoch

SMOOTHING = 0.98  # fastai's exponential smoothing of the recorded loss (with bias correction)
DIVERGED = 4.0  # stop once the smoothed loss is this many times its minimum (fastai's stop_div)


@dataclass
class Sweep:
    lrs: list[float]  # the learning rate of each step
    losses: list[float]  # the smoothed training loss after each step
    suggestion: float  # the suggested learning rate (fastai's default, `valley`)
    steepest: float  # the learning rate where the smoothed loss falls fastest (fastai's "steep")


def sweep(step: Callable[[float], float], start_lr: float, end_lr: float, steps: int) -> Sweep:
    """Run `step(lr) -> loss` for `steps` learning rates spaced exponentially from `start_lr` to `end_lr`.

    Stops early when the smoothed loss exceeds DIVERGED times its minimum or is not finite.
    Raises FmnistError for a range that is empty or not positive, or when fewer than 5 steps ran.
    """
    if not 0 < start_lr < end_lr or steps < 5:
        raise FmnistError(f"lr-find needs 0 < start ({start_lr:g}) < end ({end_lr:g}) and at least 5 steps")
    ratio = (end_lr / start_lr) ** (1 / (steps - 1))
    lrs: list[float] = []
    losses: list[float] = []
    average, best = 0.0, math.inf
    for i in range(steps):
        lr = start_lr * ratio**i
        loss = step(lr)
        if not math.isfinite(loss):
            break
        average = SMOOTHING * average + (1 - SMOOTHING) * loss
        smoothed = average / (1 - SMOOTHING ** (i + 1))
        lrs.append(lr)
        losses.append(smoothed)
        best = min(best, smoothed)
        if smoothed > DIVERGED * best:
            break
    if len(losses) < 5:
        raise FmnistError(f"the loss diverged within {len(losses)} steps: lower the start of the range")
    # As fastai's LRFinder: suggest from the curve less its first tenth (the smoothing's noisy
    # start) and its last 5 steps (the divergence).
    kept = slice(len(lrs) // 10, len(lrs) - 5) if len(lrs) - len(lrs) // 10 - 5 >= 5 else slice(None)
    return Sweep(lrs, losses, suggestion=valley(lrs[kept], losses[kept]), steepest=steepest(lrs[kept], losses[kept]))


def steepest(lrs: list[float], losses: list[float]) -> float:
    """The learning rate of the steepest fall of the loss against log(lr) (fastai's `steep`)."""
    slopes = [(losses[i + 1] - losses[i]) / math.log(lrs[i + 1] / lrs[i]) for i in range(len(losses) - 1)]
    return lrs[min(range(len(slopes)), key=slopes.__getitem__)]


def valley(lrs: list[float], losses: list[float]) -> float:
    """fastai's `valley` suggestion (fastai.callback.schedule.valley): the longest decreasing
    subsequence of the loss curve, found by dynamic programming, marks the valley; the
    suggestion is int(L/3) + int(L/6) steps, about half of its length L, past its start.
    """
    n = len(losses)
    longest = [1] * n  # length of the longest decreasing subsequence ending at each step
    start = end = 0
    for i in range(1, n):
        for j in range(i):
            if losses[i] < losses[j] and longest[i] < longest[j] + 1:
                longest[i] = longest[j] + 1
            if longest[end] < longest[i]:
                end = i
                start = end - longest[end]
    sections = (end - start) / 3
    return lrs[start + int(sections) + int(sections / 2)]


def lr_find(
    cfg: Config,
    data: FashionMNIST,
    *,
    start_lr: float = 1e-7,
    end_lr: float = 10.0,
    steps: int = 100,
    progress: Callable[[int, float, float], None] | None = None,
) -> Sweep:
    """The range test on `cfg`'s model, optimizer, batch size, augmentation and training split
    (the validation images held out as a run would), with a constant learning rate per step in
    place of the schedule. `progress(step, lr, smoothed_loss)` is called after each step.
    Raises UntrainableConfig (before any step) for batches this data cannot train (train.check_batches)."""
    device = select_device(cfg.device)
    split = split_data(cfg, data, device)
    one_cfg = cfg.replace(epochs=1, schedule="none", warmup_epochs=0.0)
    st = build_step_state(one_cfg, device, steps_per_epoch=1)
    # One optimizer step per learning rate, cut from seeded epochs as fit() cuts them (a longer range
    # test than an epoch goes on into the next; the last step of each keeps its merged remainder).
    stream = StepStream(len(split.train_x), cfg, st.data_generator, device)
    done = [0]

    def step(lr: float) -> float:
        for group in st.optimizer.param_groups:
            group["lr"] = lr
        idx, _ = stream.take(1)
        done[0] += 1
        try:
            loss, _, _ = train_one_epoch(
                st.model, st.optimizer, _Constant(), split.train_x, split.train_y, idx, one_cfg, st.aug_generator
            )
        except NonFiniteLoss:
            return math.nan
        if progress:
            progress(done[0], lr, loss)
        return loss

    return sweep(step, start_lr, end_lr, steps)


class _Constant:
    """A schedule that leaves the learning rate as the sweep set it."""

    def step(self) -> None:
        pass
