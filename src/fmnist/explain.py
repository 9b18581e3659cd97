"""What drove a prediction: a heatmap over the 28x28 view the model saw, for `predict --explain` and the server.

Two attribution methods, both from Captum (Kokhlikyan et al., 2020, "Captum: A unified and generic model
interpretability library for PyTorch"), both explaining the logit of one class per image against a black
image (Fashion-MNIST's background, so "nothing there"):

- PyTorch models: integrated gradients (Sundararajan, Taly and Yan, 2017, "Axiomatic Attribution for Deep
  Networks"), STEPS points of the straight path from black to the image, Gauss-Legendre. The maps of a
  pixel add up to the logit's change from black to the image (completeness).
- Any other predictor, such as an ONNX export run by onnxruntime: occlusion (Zeiler and Fergus, 2014,
  "Visualizing and Understanding Convolutional Networks"), which needs forward passes only: a WINDOW x WINDOW
  black patch slid with stride STRIDE; a pixel gets the mean drop of the logit over the patches covering it.

In both, a positive value means the pixel pushed towards the explained class.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import torch
from captum.attr import IntegratedGradients, Occlusion
from PIL import Image

from fmnist.data import SIDE, as_input
from fmnist.inference import Predictor, TorchPredictor

STEPS = 32  # integrated gradients: the maps' sums stay within a few % of the logit change (tested)
WINDOW, STRIDE = 4, 2  # occlusion: 13 x 13 = 169 patches, one onnxruntime call per image
CHUNK = 16  # images per model call: 512 inputs (integrated gradients) or 2,704 (occlusion) bound its memory
SCALE = 8  # heatmap PNGs are 224 x 224: each of the 28 x 28 pixels drawn as an 8 x 8 block

INTEGRATED_GRADIENTS = "integrated gradients (Captum, black baseline, 32 steps)"
OCCLUSION = "occlusion (Captum, 4x4 black patch, stride 2)"


@dataclass
class Explanation:
    maps: torch.Tensor  # float32 [N, 28, 28] on the CPU: each pixel's attribution to the target's logit
    targets: torch.Tensor  # int64 [N]: the class each map explains
    method: str  # INTEGRATED_GRADIENTS or OCCLUSION


class Explainer:
    """Attribution maps of a predictor: integrated gradients for a PyTorch model, occlusion for any other."""

    def __init__(self, predictor: Predictor):
        self.predictor = predictor
        if isinstance(predictor, TorchPredictor):
            model, device = predictor.model, predictor.device
            self.method = INTEGRATED_GRADIENTS
            self._integrated = IntegratedGradients(lambda x: model(x).float())
            self._device = device
        else:
            self.method = OCCLUSION
            self._occlusion = Occlusion(self._forward_pixels)

    def _forward_pixels(self, pixels: torch.Tensor) -> torch.Tensor:
        """Logits for float pixel values 0..255 [B, 28, 28], as the model's uint8 input."""
        return self.predictor.logits(pixels.round().clamp(0, 255).to(torch.uint8))

    def __call__(self, images: torch.Tensor, targets: torch.Tensor | None = None) -> Explanation:
        """Maps of uint8 images [N, 28, 28] for `targets` (int64 [N]; default: each image's predicted class).

        Runs CHUNK images at a time: each costs 32 (integrated gradients) or 169 (occlusion) model inputs."""
        if images.dtype != torch.uint8 or images.shape[1:] != (SIDE, SIDE):
            raise ValueError(f"expected uint8 images [N, {SIDE}, {SIDE}], got {images.dtype} {tuple(images.shape)}")
        images = images.cpu()
        if targets is None:
            targets = self.predictor.logits(images).argmax(1)
        targets = targets.cpu().long()
        maps = [self._maps(images[i : i + CHUNK], targets[i : i + CHUNK]) for i in range(0, len(images), CHUNK)]
        return Explanation(torch.cat(maps) if maps else torch.zeros(0, SIDE, SIDE), targets, self.method)

    def _maps(self, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if self.method == INTEGRATED_GRADIENTS:
            x = as_input(images.to(self._device))
            with torch.enable_grad():
                maps = self._integrated.attribute(x, baselines=0.0, target=targets.to(self._device), n_steps=STEPS)
            return maps.detach().float().cpu().reshape(-1, SIDE, SIDE)
        patches = ((SIDE - WINDOW) // STRIDE + 1) ** 2
        return self._occlusion.attribute(
            images.float(),
            sliding_window_shapes=(WINDOW, WINDOW),
            strides=(STRIDE, STRIDE),
            baselines=0.0,
            target=targets,
            perturbations_per_eval=patches,
        ).float()


def heatmaps(images: torch.Tensor, explanation: Explanation) -> list[bytes]:
    """heatmap_png of every image [k, 28, 28] with its map in `explanation`."""
    return [heatmap_png(image, attribution) for image, attribution in zip(images, explanation.maps, strict=True)]


def heatmap_png(image: torch.Tensor, attribution: torch.Tensor) -> bytes:
    """A PNG (224 x 224 RGB) of a uint8 [28, 28] image, dimmed, under its attribution [28, 28]: red where a
    pixel pushed towards the explained class, blue where against, stronger colour for a larger share of
    the map's largest absolute value."""
    gray = image.cpu().numpy().astype(np.float32)[..., None] / 255 * 0.6
    values = attribution.cpu().numpy().astype(np.float32)
    strength = values / max(float(np.abs(values).max()), 1e-12)
    alpha = np.abs(strength)[..., None] ** 0.7 * 0.9
    colour = np.where(
        strength[..., None] >= 0, np.array([1.0, 0.15, 0.1], np.float32), np.array([0.1, 0.35, 1.0], np.float32)
    )
    rgb = np.clip(np.rint((gray * (1 - alpha) + colour * alpha) * 255), 0, 255).astype(np.uint8)
    rgb = rgb.repeat(SCALE, axis=0).repeat(SCALE, axis=1)
    buffer = io.BytesIO()
    Image.fromarray(rgb, "RGB").save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()
