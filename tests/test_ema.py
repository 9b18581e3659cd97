import pytest
import torch
from torch import nn

from fmnist.ema import WARMUP_POWER, ModelEma, decay_at


def test_decay_warms_up_as_timm_and_is_capped():
    assert decay_at(0, 0.999).item() == 0.0  # the first update copies the weights
    assert decay_at(1, 0.999).item() == pytest.approx(1 - 2**-WARMUP_POWER)
    assert decay_at(10, 0.999).item() == pytest.approx(1 - 11 ** (-2 / 3))
    assert decay_at(10**9, 0.999).item() == pytest.approx(0.999)


def test_ema_matches_a_hand_computation_of_weights_and_buffers():
    model = nn.Sequential(nn.Linear(1, 1, bias=False), nn.BatchNorm1d(1))
    ema = ModelEma(model, max_decay=0.5)
    values, means = [1.0, 3.0, -2.0, 7.0], [0.25, 0.5, 1.0, 2.0]
    for w, m in zip(values, means, strict=True):
        with torch.no_grad():
            model[0].weight.fill_(w)
            model[1].running_mean.fill_(m)
            model[1].num_batches_tracked.fill_(int(4 * m))
        ema.update(model)
    # decay 0 (copy), then 1 - 2^-2/3 = 0.370, then min(0.5, 1 - 3^-2/3 = 0.519) = 0.5, then 0.5
    d1 = 1 - 2 ** (-2 / 3)
    expect_w = ((1.0 * d1 + 3.0 * (1 - d1)) * 0.5 + -2.0 * 0.5) * 0.5 + 7.0 * 0.5
    expect_m = ((0.25 * d1 + 0.5 * (1 - d1)) * 0.5 + 1.0 * 0.5) * 0.5 + 2.0 * 0.5
    assert ema.module[0].weight.item() == pytest.approx(expect_w, rel=1e-6)
    assert ema.module[1].running_mean.item() == pytest.approx(expect_m, rel=1e-6)
    assert ema.module[1].num_batches_tracked.item() == 8  # integer buffers: the latest value
    assert int(ema.n_averaged) == 4
    assert not any(p.requires_grad for p in ema.parameters())


def test_state_dict_round_trip_continues_identically():
    torch.manual_seed(0)
    model = nn.Linear(4, 3)
    a = ModelEma(model, 0.9)
    for _ in range(3):
        with torch.no_grad():
            model.weight.add_(torch.randn_like(model.weight))
        a.update(model)
    b = ModelEma(nn.Linear(4, 3), 0.9)
    b.load_state_dict(a.state_dict())
    with torch.no_grad():
        model.weight.add_(1.0)
    a.update(model)
    b.update(model)
    assert torch.equal(a.module.weight, b.module.weight) and int(b.n_averaged) == 4
    assert set(a.weights()) == set(model.state_dict())


def test_decay_out_of_range_is_refused():
    with pytest.raises(ValueError, match="decay"):
        ModelEma(nn.Linear(1, 1), 1.0)
