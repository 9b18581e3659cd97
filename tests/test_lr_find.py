import math
import random

import pytest

from fmnist import data, lr_find
from fmnist.config import Config
from fmnist.errors import FmnistError


def quadratic_problem(curvature: float):
    """Gradient descent on f(w) = curvature / 2 * sum(w_i^2) from w = 1: the loss falls fastest
    near lr = 1 / curvature and diverges above lr = 2 / curvature. Each step returns the loss
    the loss with 1% noise of its starting value, as a minibatch's loss is noisy."""
    state = {"w": [1.0] * 4}
    noise = random.Random(0)

    def step(lr: float) -> float:
        state["w"] = [w - lr * curvature * w for w in state["w"]]
        return curvature / 2 * sum(w * w for w in state["w"]) + 1.0 + noise.gauss(0, 0.01 * (2 * curvature + 1))

    return step


@pytest.mark.parametrize("curvature", [0.5, 10.0, 200.0])
def test_suggestion_lies_in_the_known_good_range(curvature):
    result = lr_find.sweep(quadratic_problem(curvature), 1e-6, 100.0, 200)
    # Each step shrinks w by the factor |1 - lr * curvature|: by at least 2% from 0.02 / curvature,
    # and it grows beyond 2 / curvature. The sweep spans 8 decades; this window, 2.
    good = (0.02 / curvature, 2 / curvature)
    assert good[0] <= result.suggestion <= good[1], (result.suggestion, good)
    assert good[0] <= result.steepest <= good[1], (result.steepest, good)
    assert result.lrs[-1] < 100.0  # stopped once the loss diverged
    assert result.lrs == sorted(result.lrs) and math.isclose(result.lrs[0], 1e-6)


def test_valley_and_steepest_on_a_hand_made_curve():
    lrs = [10.0**i for i in range(12)]
    losses = [6.0, 6.5, 5.0, 4.5, 4.0, 3.5, 3.0, 2.5, 0.5, 3.0, 9.0, 20.0]  # falls over indices 0, 2..8
    # longest fall: 8 steps ending at index 8, so start = 8 - 8 = 0 and the suggestion is
    # 0 + int(8/3) + int(8/6) = 3, as fastai computes it
    assert lr_find.valley(lrs, losses) == lrs[3]
    assert lr_find.steepest(lrs, losses) == lrs[7]  # 2.5 -> 0.5 is the steepest fall


def test_bad_ranges_and_immediate_divergence_are_one_line_errors():
    with pytest.raises(FmnistError, match="0 < start"):
        lr_find.sweep(lambda lr: 1.0, 1.0, 0.1, 100)
    with pytest.raises(FmnistError, match="diverged within"):
        lr_find.sweep(lambda lr: math.nan, 1e-3, 1.0, 100)


def test_lr_find_on_a_config_leaves_no_trace(synthetic_data, tmp_path, monkeypatch, one_thread):
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    cfg = Config(hidden=(32,), batch_size=32, optimizer="sgd", lr=0.1, val_size=0)
    result = lr_find.lr_find(cfg, data.load(), start_lr=1e-4, end_lr=100.0, steps=60)
    assert 1e-4 < result.suggestion < 10
    assert min(result.losses) < result.losses[0]  # it learned somewhere in the range
    assert list((tmp_path / "cwd").iterdir()) == []  # no run directory, no file
