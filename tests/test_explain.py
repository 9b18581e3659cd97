"""Sanity checks of the attribution maps (Adebayo et al., 2018, "Sanity Checks for Saliency Maps") on a case
where only one region carries the class, so what the maps should show is known."""

import io

import numpy as np
import pytest
import torch
from PIL import Image

from fmnist import checkpoint, models
from fmnist.config import Config, to_dict
from fmnist.data import as_input
from fmnist.explain import INTEGRATED_GRADIENTS, OCCLUSION, Explainer, heatmap_png
from fmnist.inference import TorchPredictor

REGION = (slice(4, 12), slice(16, 24))  # 8 x 8 pixels of 28 x 28: 8 % of the image


def region_images(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Noise everywhere; class 1 has a bright REGION, class 0 noise there too: only REGION tells them apart."""
    rng = np.random.default_rng(seed)
    images = rng.uniform(0, 140, (n, 28, 28))
    labels = np.arange(n) % 2
    images[labels == 1, REGION[0], REGION[1]] = rng.uniform(180, 255, (int(labels.sum()), 8, 8))
    return torch.from_numpy(images.astype(np.uint8)), torch.from_numpy(labels).long()


class ForwardOnly:
    """A predictor that offers logits only, as onnxruntime does: the explainer must use occlusion."""

    def __init__(self, model: torch.nn.Module):
        self.model = model

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.model(as_input(images))


def predictor_of(model: torch.nn.Module, cfg: Config, tmp_path) -> TorchPredictor:
    path = tmp_path / f"{id(model)}.pt"
    checkpoint.save(path, {"model": model.state_dict(), "config": to_dict(cfg), "epoch": 0})
    return TorchPredictor(path, "cpu")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(trained predictor, the same network with fresh random weights, test images and labels)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    cfg = Config(hidden=(32,), val_size=0)
    model = models.build(cfg)
    images, labels = region_images(512, seed=0)
    optimizer = torch.optim.Adam(model.parameters(), 3e-3)
    for step in range(120):
        batch = torch.arange(step * 64, step * 64 + 64) % len(images)
        loss = torch.nn.functional.cross_entropy(model(as_input(images[batch])), labels[batch])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    test_images, test_labels = region_images(40, seed=1)
    assert (model(as_input(test_images)).argmax(1) == test_labels).float().mean() > 0.95  # it learned the rule
    torch.manual_seed(1)
    tmp = tmp_path_factory.mktemp("explain")
    yield predictor_of(model, cfg, tmp), predictor_of(models.build(cfg).eval(), cfg, tmp), test_images, test_labels
    torch.set_num_threads(threads)


def share_in_region(maps: torch.Tensor, margin: int = 0) -> torch.Tensor:
    """Per map: the share of its positive attribution inside REGION (grown by `margin` pixels)."""
    positive = maps.clamp(min=0)
    inside = torch.zeros(28, 28, dtype=torch.bool)
    rows, cols = REGION
    inside[rows.start - margin : rows.stop + margin, cols.start - margin : cols.stop + margin] = True
    return positive[:, inside].sum(1) / positive.flatten(1).sum(1).clamp(min=1e-12)


def rank_correlation(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Spearman's rank correlation of each pair of maps [N, 28, 28] -> [N]."""
    ra, rb = (m.flatten(1).argsort(1).argsort(1).float() for m in (a, b))
    ra, rb = ra - ra.mean(1, keepdim=True), rb - rb.mean(1, keepdim=True)
    return (ra * rb).sum(1) / (ra.norm(dim=1) * rb.norm(dim=1))


def test_integrated_gradients_point_at_the_region_that_carries_the_class(trained):
    predictor, _, images, labels = trained
    explainer = Explainer(predictor)
    explanation = explainer(images[labels == 1])
    assert explanation.method == INTEGRATED_GRADIENTS and (explanation.targets == 1).all()
    assert share_in_region(explanation.maps).min() > 0.7  # the region is 8 % of the pixels


def test_occlusion_of_a_forward_only_model_points_at_the_region_too(trained):
    predictor, _, images, labels = trained
    explainer = Explainer(ForwardOnly(predictor.model))
    explanation = explainer(images[labels == 1], labels[labels == 1])
    assert explanation.method == OCCLUSION
    # A 4x4 patch at stride 2 spreads a pixel's effect over up to 3 neighbours.
    assert share_in_region(explanation.maps, margin=3).min() > 0.7


@pytest.mark.parametrize("forward_only", [False, True])
def test_maps_of_randomised_weights_differ_from_the_trained_models(trained, forward_only):
    predictor, randomised, images, labels = trained
    wrap = ForwardOnly if forward_only else lambda p: p

    def maps(p):
        return Explainer(wrap(p.model) if forward_only else p)(images, labels).maps

    trained_maps, random_maps = maps(predictor), maps(randomised)
    assert rank_correlation(trained_maps, maps(predictor)).min() > 0.999  # the measure sees sameness
    assert rank_correlation(trained_maps, random_maps).mean().abs() < 0.3


def test_integrated_gradients_add_up_to_the_logit_change(trained):
    predictor, _, images, _ = trained
    explanation = Explainer(predictor)(images[:8])
    with torch.no_grad():
        logits, black = predictor.model(as_input(images[:8])), predictor.model(as_input(torch.zeros_like(images[:8])))
    rows = torch.arange(8)
    change = logits[rows, explanation.targets] - black[rows, explanation.targets]
    assert explanation.maps.sum((1, 2)) == pytest.approx(change, rel=0.05, abs=0.05)


def test_heatmap_is_a_png_red_where_the_map_is_positive():
    image = torch.full((28, 28), 100, dtype=torch.uint8)
    attribution = torch.zeros(28, 28)
    attribution[0, 0], attribution[27, 27] = 1.0, -1.0
    picture = np.asarray(Image.open(io.BytesIO(heatmap_png(image, attribution))))
    assert picture.shape == (224, 224, 3)
    red, blue, neutral = picture[3, 3], picture[220, 220], picture[100, 100]
    assert red[0] > 200 > red[2] and blue[2] > 200 > blue[0] and neutral[0] == neutral[1] == neutral[2]


def test_bad_images_are_refused(trained):
    with pytest.raises(ValueError, match="uint8"):
        Explainer(trained[0])(torch.zeros(1, 28, 28))


def test_many_images_are_explained_in_chunks_with_the_same_maps(trained):
    predictor, _, images, _ = trained
    explainer = Explainer(predictor)
    assert len(images) > 16  # more than one chunk
    whole, tail = explainer(images), explainer(images[16:])
    assert torch.allclose(whole.maps[16:], tail.maps, atol=1e-5) and len(whole.maps) == len(images)


def test_absolute_maps_follow_the_bright_pixels_even_for_random_weights(trained):
    """Why the heatmaps keep the sign: the magnitude of integrated gradients carries the factor (picture - black),
    so absolute maps of random weights look like the picture and like the trained model's (Adebayo et al.)."""
    predictor, randomised, images, labels = trained
    random_maps = Explainer(randomised)(images, labels).maps
    trained_maps = Explainer(predictor)(images, labels).maps
    assert rank_correlation(images.float(), random_maps.abs()).mean() > 0.4
    assert rank_correlation(trained_maps.abs(), random_maps.abs()).mean() > 0.3  # the signed maps: < 0.3 in absolute
