import numpy as np
import pytest
import torch

from fmnist.trust import ood


def test_p_values_are_conformal_ranks_in_the_unusual_direction():
    reference = np.arange(1.0, 10.0)  # 1..9
    assert ood.p_values(np.array([0.0]), reference, "low")[0] == pytest.approx(1 / 10)
    assert ood.p_values(np.array([9.0]), reference, "low")[0] == pytest.approx(1.0)
    assert ood.p_values(np.array([9.5]), reference, "high")[0] == pytest.approx(1 / 10)
    assert ood.p_values(np.array([5.0]), reference, "both")[0] == pytest.approx(1.0)
    assert ood.p_values(np.array([0.0]), reference, "both")[0] == pytest.approx(2 / 10)
    assert ood.p_values(np.array([np.nan]), reference, "both")[0] == 1.0  # no cue: no evidence


def test_scoring_the_reference_itself_leaves_each_value_out():
    reference = np.arange(1.0, 10.0)
    assert ood.p_values(np.array([1.0]), reference, "low", itself=True)[0] == pytest.approx(1 / 10)
    assert ood.p_values(np.array([1.0]), reference, "low")[0] == pytest.approx(2 / 10)


def test_combined_score_is_the_most_unusual_cue():
    refs = {"energy": np.arange(10.0), "coverage": np.linspace(0.2, 0.6, 10)}
    cues = {"energy": np.array([9.0, -5.0]), "coverage": np.array([0.4, 0.4])}
    score = ood.combined(cues, refs)
    assert score[0] > 0.5 and score[1] == pytest.approx(1 / 11)


def test_the_calibrated_score_keeps_its_share_of_fresh_pictures_of_each_kind():
    # Photos with nine cues (400 references, each scored against the others) and plain images with four (split
    # in two halves): whatever the number of cues, a threshold t keeps about 1 - t of fresh pictures of the kind,
    # though the smallest of nine p-values on a grid of 1/401 ties for 4 % of them (the product breaks the ties).
    rng = np.random.default_rng(0)
    names = ["energy", *ood.VIEW_CUES, *ood.Cues.NAMES]
    plain_names = names[: 1 + len(ood.VIEW_CUES)]
    kept = {"photo": [], "plain": []}
    for _ in range(20):
        photos = {name: rng.normal(size=400) for name in names}
        refs = {name: np.sort(v) for name, v in photos.items()}
        plain = {name: np.sort(rng.normal(size=1000)) for name in plain_names}
        held_out = {
            "photo": np.sort(ood.unusualness(photos, refs, itself=True)),
            "plain": np.sort(ood.unusualness({name: rng.normal(size=1000) for name in plain_names}, plain)),
        }
        fresh = {name: rng.normal(size=4000) for name in names}
        for kind, is_photo in (("photo", True), ("plain", False)):
            scores = ood.calibrated(fresh, np.full(4000, is_photo), refs, plain, held_out)
            kept[kind].append(float((scores >= 1 - ood.KEEP).mean()))
    for shares in kept.values():
        assert abs(np.median(shares) - ood.KEEP) < 0.006 and min(shares) > ood.KEEP - 0.03, sorted(shares)


def test_view_cues_tell_a_pen_stroke_from_a_filled_silhouette():
    views = np.zeros((3, 28, 28), np.uint8)
    views[0, :, 4:24] = 200  # a filled silhouette spanning the 28 pixels
    views[1, 4:24, 13:15] = 255  # a "1" two pixels wide in a 20-pixel box, as MNIST draws it
    cues = ood.view_cues(views)  # the third view is blank
    assert cues["span"].tolist() == [28, 20, 0]
    assert cues["ink"][0] == pytest.approx(20 * 28 / 784) and cues["ink"][2] == 0
    assert cues["stroke"][0] == pytest.approx(18 * 26 / (20 * 28)) and cues["stroke"][1] == 0
    assert cues["flat"].tolist() == [0, 1, 0]  # shaded at 200; full-strength ink


def test_energy_and_max_softmax():
    logits = torch.tensor([[0.0, 0.0], [10.0, 0.0]])
    assert torch.allclose(ood.energy(logits), torch.logsumexp(logits, 1))
    assert torch.allclose(ood.max_softmax(logits), torch.tensor([0.5, float(1 / (1 + np.exp(-10)))]))


def test_gaussians_with_identity_covariance_give_squared_euclidean_distance_to_the_nearest_mean():
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(2).repeat(5000)
    means = torch.tensor([[0.0, 0.0], [10.0, 0.0]])
    features = means[labels] + torch.randn(10_000, 2, generator=g)
    fitted = ood.Gaussians.fit(features, labels, 2)
    distance = fitted.distance(torch.tensor([[0.0, 3.0], [10.0, 0.0]]))
    assert distance[0] == pytest.approx(9.0, rel=0.1) and distance[1] < 0.05
    with pytest.raises(ValueError, match="every class"):
        ood.Gaussians.fit(features, torch.zeros(10_000, dtype=torch.long), 2)


def test_penultimate_drops_the_output_layer():
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2))
    assert ood.penultimate(model)(torch.zeros(1, 4)).shape == (1, 3)
    with pytest.raises(TypeError):
        ood.penultimate(torch.nn.Linear(4, 2))


def test_reference_is_thinned_to_quantiles_and_drops_missing_values():
    values = np.r_[np.arange(2000.0), np.nan]
    ref = ood.reference_of(values)
    assert len(ref) == ood.REFERENCE_SIZE and ref[0] == 0 and ref[-1] == 1999 and np.all(np.diff(ref) >= 0)
