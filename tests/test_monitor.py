from fmnist import monitor
from fmnist.config import Config


def row(epoch, val=None, ema=None, seconds=1.0):
    r = {"epoch": epoch, "epoch_seconds": seconds, "test_acc": 0.0}
    if val is not None:
        r["val_acc"] = val
    if ema is not None:
        r["ema_val_acc"] = ema
    return r


def test_choose_takes_the_best_weights_on_validation_earliest_on_ties():
    history = [row(1, 0.8, 0.7), row(2, 0.82, 0.85), row(3, 0.85, 0.84)]
    assert monitor.choose(history) == (history[1], "ema")
    assert monitor.choose([row(1, 0.8, 0.8)]) == (row(1, 0.8, 0.8), "raw")
    assert monitor.choose([row(1), row(2)]) == (row(2), "raw")  # no validation split: the last epoch


def test_epochs_without_gain_follows_keras_min_delta():
    history = [row(1, 0.80), row(2, 0.805), row(3, 0.82), row(4, 0.81)]
    assert monitor.epochs_without_gain(history, 0.0) == 1
    assert monitor.epochs_without_gain(history, 0.01) == 1  # 0.805 is no gain over 0.80; 0.82 is
    assert monitor.epochs_without_gain(history, 0.03) == 3


def test_stop_reason_on_a_plateau_and_on_the_time_budget():
    cfg = Config(epochs=10, val_size=100, patience=2)
    plateau = [row(1, 0.9), row(2, 0.9), row(3, 0.89)]
    assert "early stopping" in monitor.stop_reason(cfg, plateau, 0.0)
    assert monitor.stop_reason(cfg, plateau[:2], 0.0) is None
    budget = Config(epochs=10, max_time=10)
    assert monitor.stop_reason(budget, [row(1, seconds=3)], 6.5) is None  # 6.5 + 3 fits in 10
    assert "planned 10 epochs and was cut after 1" in monitor.stop_reason(budget, [row(1, seconds=3)], 7.5)
    assert monitor.stop_reason(budget, [row(i, seconds=3) for i in range(10)], 99) is None  # all planned epochs ran
