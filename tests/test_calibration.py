import math

import pytest
import torch

from fmnist.trust import calibration


def sampled(temperature: float, n: int = 20_000, classes: int = 10, seed: int = 0):
    """Logits, and labels drawn from softmax(logits / temperature): that temperature is the right one."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, classes, generator=g) * 4
    labels = torch.multinomial((logits / temperature).softmax(1), 1, generator=g)[:, 0]
    return logits, labels


@pytest.mark.parametrize("true_t", [0.5, 1.0, 2.5])
def test_fit_temperature_recovers_the_temperature_the_labels_were_drawn_with(true_t):
    logits, labels = sampled(true_t)
    assert calibration.fit_temperature(logits, labels) == pytest.approx(true_t, rel=0.05)


def test_scaling_lowers_nll_and_ece_of_an_overconfident_model_and_keeps_its_predictions():
    logits, labels = sampled(2.0)
    t = calibration.fit_temperature(logits, labels)
    before = calibration.measure(logits.softmax(1), labels)
    after = calibration.measure(calibration.scaled(logits, t), labels)
    assert after.nll < before.nll and after.ece < before.ece / 3 and after.ece < 0.02
    assert after.accuracy == before.accuracy


def test_measures_match_hand_computed_values():
    probs = torch.tensor([[0.9, 0.1], [0.6, 0.4], [0.3, 0.7]])
    labels = torch.tensor([0, 1, 1])
    m = calibration.measure(probs, labels, bins=15)
    # one bin each: 0.9 (right), 0.6 (wrong), 0.7 (right): |1-0.9| + |0-0.6| + |1-0.7|, each weighted 1/3
    assert m.ece == pytest.approx((0.1 + 0.6 + 0.3) / 3)
    assert m.nll == pytest.approx(-(math.log(0.9) + math.log(0.4) + math.log(0.7)) / 3)
    assert m.brier == pytest.approx((2 * 0.1**2 + 2 * 0.6**2 + 2 * 0.3**2) / 3)
    assert m.accuracy == pytest.approx(2 / 3)


def test_reliability_bins_put_confidence_one_in_the_top_bin():
    count, mean_conf, accuracy = calibration.reliability(
        torch.tensor([1.0, 0.05, 0.5]), torch.tensor([1.0, 0.0, 1.0]), bins=15
    )
    assert count.sum() == 3 and count[-1] == 1 and count[0] == 1
    assert mean_conf[-1] == 1.0 and accuracy[0] == 0.0


def test_no_temperature_means_plain_softmax_and_bad_input_is_refused():
    logits = torch.randn(5, 10)
    assert torch.allclose(calibration.scaled(logits, None), logits.softmax(1))
    with pytest.raises(ValueError, match="expected logits"):
        calibration.fit_temperature(torch.zeros(0, 10), torch.zeros(0, dtype=torch.long))
