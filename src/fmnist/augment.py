"""Batched, per-sample-random augmentations that run on the training device.

Every kind takes a whole batch ``[B, C, H, W]`` and makes its random decisions for all
samples with one ``torch.rand`` call, so the cost is a fixed handful of kernel launches per
batch whatever B is (the airbench recipe: no per-image Python call, no host sync).
All randomness comes from the caller's generator, which must live on ``x.device``; the
global RNG is never touched.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from fmnist.config import AUGMENTATIONS as KINDS  # the kinds, and their strength's range, are config values
from fmnist.config import MAX_STRENGTH
from fmnist.errors import FmnistError

_CROP_MAX_LOG_ASPECT = math.log(4 / 3)
_ERASE_MAX_LOG_ASPECT = math.log(1 / 0.3)  # torchvision RandomErasing's default ratio range
_ERASE_MIN_AREA = 0.02


def parse_kinds(spec: str | Sequence[str]) -> tuple[str, ...]:
    """``"flip,crop"`` or ``["crop", "flip"]`` -> ``("flip", "crop")``; ``""``/``"none"`` -> ``()``.

    Names are case-insensitive and may carry spaces; duplicates are dropped and the result
    follows KINDS order, which is also the order in which `augment` applies them.
    """
    if isinstance(spec, str):
        items = spec.split(",")
    elif isinstance(spec, Sequence) and all(isinstance(item, str) for item in spec):
        items = list(spec)
    else:
        raise FmnistError(f"augmentations must be a comma-separated string or a list of names, got {spec!r}")
    names = {item.strip().lower() for item in items} - {"", "none"}
    for name in sorted(names):
        if name not in KINDS:
            raise FmnistError(f"unknown augmentation {name!r}; choose from {', '.join(KINDS)}")
    return tuple(kind for kind in KINDS if kind in names)


def augment(
    x: torch.Tensor,
    kinds: Sequence[str],
    generator: torch.Generator,
    *,
    strength: float = 1.0,
) -> torch.Tensor:
    """Return a randomly augmented copy of the batch ``x`` (float ``[B, C, H, W]`` in [0, 1]).

    ``kinds``: names from KINDS, as parse_kinds gives them (a config holds them parsed once, so no batch
    parses them again); each is applied once, in KINDS order, whatever order they are given in. Each
    sample gets its own random decisions. ``strength`` in [0, MAX_STRENGTH] scales crop, translate
    and erase; 0 makes them the identity (flip does not depend on it). The input is never modified.
    Raises FmnistError for an unknown name or strength, ValueError for a tensor of another shape.
    """
    if x.ndim != 4 or not x.is_floating_point():
        raise ValueError(f"augment expects a float tensor [B, C, H, W], got {tuple(x.shape)} {x.dtype}")
    if not (isinstance(strength, numbers.Real) and 0.0 <= strength <= MAX_STRENGTH):
        raise FmnistError(f"augmentation strength must be a number in [0, {MAX_STRENGTH:g}], got {strength!r}")
    unknown = sorted(set(kinds).difference(KINDS))
    if unknown:
        raise FmnistError(f"unknown augmentation {unknown[0]!r}; choose from {', '.join(KINDS)}")
    out = x
    for kind in KINDS:
        if kind in kinds:
            out = _APPLY[kind](out, generator, float(strength))
    return x.clone() if out is x else out


def _rand(x: torch.Tensor, generator: torch.Generator, *shape: int) -> torch.Tensor:
    return torch.rand(*shape, generator=generator, device=x.device, dtype=x.dtype)


def _flip(x: torch.Tensor, generator: torch.Generator, strength: float) -> torch.Tensor:
    """Horizontal mirror with probability 1/2 per sample."""
    mask = _rand(x, generator, x.shape[0]) < 0.5
    return torch.where(mask.view(-1, 1, 1, 1), x.flip(-1), x)


def _crop(x: torch.Tensor, generator: torch.Generator, strength: float) -> torch.Tensor:
    """Random resized crop: area scale in [1 - strength/4, 1], aspect in [3/4, 4/3], resized back.

    The aspect ratio is drawn log-uniformly from the part of [3/4, 4/3] for which the crop
    fits inside the image (|log r| <= -log scale), so scale 1 means the whole image.
    """
    if strength == 0.0:
        return x
    u = _rand(x, generator, x.shape[0], 4)
    scale = 1.0 - 0.25 * strength * u[:, 0]
    max_log_aspect = torch.clamp(-torch.log(scale), max=_CROP_MAX_LOG_ASPECT)
    aspect = torch.exp((2.0 * u[:, 1] - 1.0) * max_log_aspect)
    # Crop sides as fractions of the image side (= half-widths in grid units, where [-1, 1]
    # spans the image); w * h == scale and w / h == aspect.
    w = torch.sqrt(scale * aspect).clamp(max=1.0)
    h = torch.sqrt(scale / aspect).clamp(max=1.0)
    cx = (2.0 * u[:, 2] - 1.0) * (1.0 - w)
    cy = (2.0 * u[:, 3] - 1.0) * (1.0 - h)
    grid = _axis_aligned_grid(w, h, cx, cy, x.shape[-2], x.shape[-1])
    # "border": the outermost output pixels sample up to half a pixel outside the crop box.
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return out.clamp_(0.0, 1.0)  # guard: the four bilinear weights may sum to 1 + ulp


def _axis_aligned_grid(
    w: torch.Tensor, h: torch.Tensor, cx: torch.Tensor, cy: torch.Tensor, height: int, width: int
) -> torch.Tensor:
    """``F.affine_grid`` for ``theta = [[w, 0, cx], [0, h, cy]]`` with align_corners=False.

    Built by broadcasting because on CPU affine_grid's batched matmul costs ~0.5 ms at
    batch 64, five times the grid_sample it feeds.
    """
    xs = torch.linspace(-1 + 1 / width, 1 - 1 / width, width, device=w.device, dtype=w.dtype)
    ys = torch.linspace(-1 + 1 / height, 1 - 1 / height, height, device=w.device, dtype=w.dtype)
    gx = torch.addcmul(cx.view(-1, 1), w.view(-1, 1), xs.view(1, -1)).view(-1, 1, width)
    gy = torch.addcmul(cy.view(-1, 1), h.view(-1, 1), ys.view(1, -1)).view(-1, height, 1)
    shape = (w.shape[0], height, width)
    return torch.stack([gx.expand(shape), gy.expand(shape)], dim=-1)


def _translate(x: torch.Tensor, generator: torch.Generator, strength: float) -> torch.Tensor:
    """Zero-pad by round(2 * strength) pixels and take a random HxW window: integer shifts."""
    pad = math.floor(2.0 * strength + 0.5)  # round half up (Python's round() is half-to-even)
    if pad == 0:
        return x
    b, c, height, width = x.shape
    u = _rand(x, generator, b, 2)
    # Window origin in padded coordinates, uniform over 0..2*pad for each axis.
    origin = (u * (2 * pad + 1)).long().clamp_(max=2 * pad)
    padded = F.pad(x, (pad, pad, pad, pad))
    rows = origin[:, 0].view(-1, 1, 1) + torch.arange(height, device=x.device).view(1, -1, 1)
    cols = origin[:, 1].view(-1, 1, 1) + torch.arange(width, device=x.device).view(1, 1, -1)
    index = (rows * (width + 2 * pad) + cols).view(b, 1, -1).expand(b, c, -1)
    return padded.flatten(2).gather(2, index).view(b, c, height, width)


def _erase(x: torch.Tensor, generator: torch.Generator, strength: float) -> torch.Tensor:
    """With probability 1/2 per sample, zero a rectangle covering 2%..20%*strength of the image.

    Below strength 0.1 the lower bound shrinks with the upper one, so strength 0 erases nothing.
    """
    if strength == 0.0:
        return x
    b, _, height, width = x.shape
    u = _rand(x, generator, b, 5)
    hi = 0.2 * strength
    lo = min(_ERASE_MIN_AREA, hi)
    area = (lo + (hi - lo) * u[:, 1]) * (height * width)
    aspect = torch.exp((2.0 * u[:, 2] - 1.0) * _ERASE_MAX_LOG_ASPECT)
    h = torch.sqrt(area * aspect).round().clamp(0, height)
    w = torch.sqrt(area / aspect).round().clamp(0, width)
    top = (u[:, 3] * (height - h + 1)).floor().view(-1, 1, 1)
    left = (u[:, 4] * (width - w + 1)).floor().view(-1, 1, 1)
    rows = torch.arange(height, device=x.device, dtype=x.dtype).view(1, -1, 1)
    cols = torch.arange(width, device=x.device, dtype=x.dtype).view(1, 1, -1)
    in_rows = (rows >= top) & (rows < top + h.view(-1, 1, 1)) & (u[:, 0] < 0.5).view(-1, 1, 1)
    in_cols = (cols >= left) & (cols < left + w.view(-1, 1, 1))
    inside = in_rows & in_cols  # [B, H, 1] & [B, 1, W]: the only full-size boolean op
    return x.masked_fill(inside.unsqueeze(1), 0.0)


_APPLY = {"flip": _flip, "crop": _crop, "translate": _translate, "erase": _erase}


def mix(
    x: torch.Tensor,
    y: torch.Tensor,
    num_classes: int,
    generator: torch.Generator,
    *,
    mixup_alpha: float = 0.0,
    cutmix_alpha: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mixup (Zhang et al., 2018) and CutMix (Yun et al., 2019) of a batch, per sample, on its device.

    ``x`` float [B, C, H, W], ``y`` int64 [B]. Sample i is mixed with sample B-1-i (timm's Mixup
    pairs a batch with its reverse the same way) with its own weight lam ~ Beta(alpha, alpha):
    mixup blends the two images, lam * x_i + (1 - lam) * x_partner; CutMix pastes a box of the
    partner covering about 1 - lam of the image (timm's rand_bbox: centre uniform, box clipped to
    the image) and then sets lam to the share actually left uncovered. With both alphas > 0 each
    sample takes one of the two with probability 1/2 (timm's switch_prob). An alpha of 0 turns its
    method off.

    Returns (images, targets): targets float [B, num_classes], lam on y_i and 1 - lam on the
    partner's label, so every row sums to 1. Pass them to ``F.cross_entropy(logits, targets,
    label_smoothing=s)``, which smooths the mixed targets further: (1 - s) * target + s / classes.
    """
    if mixup_alpha < 0 or cutmix_alpha < 0 or not (mixup_alpha or cutmix_alpha):
        raise ValueError(f"mix needs alphas >= 0, one of them > 0; got {mixup_alpha}, {cutmix_alpha}")
    b, _, height, width = x.shape
    u = _rand(x, generator, b, 3)
    if mixup_alpha and cutmix_alpha:
        cut = u[:, 0] < 0.5
    else:
        cut = torch.full((b,), bool(cutmix_alpha), device=x.device)
    alpha = torch.where(cut, cutmix_alpha, mixup_alpha).to(x.dtype)
    # Beta(a, a) as G1 / (G1 + G2) with G ~ Gamma(a): the sampler torch.distributions.Beta uses,
    # called here with the caller's generator, which torch.distributions cannot take.
    gammas = torch._standard_gamma(alpha.view(-1, 1).expand(b, 2).contiguous(), generator=generator)
    lam = gammas[:, 0] / gammas.sum(1).clamp(min=torch.finfo(x.dtype).tiny)
    partner, partner_y = x.flip(0), y.flip(0)
    # CutMix box: sides sqrt(1 - lam) of the image's, centre uniform, clipped at the borders.
    side = torch.sqrt(1 - lam)
    cy, cx = u[:, 1] * height, u[:, 2] * width
    top = (cy - side * height / 2).round().clamp(0, height).view(-1, 1, 1)
    bottom = (cy + side * height / 2).round().clamp(0, height).view(-1, 1, 1)
    left = (cx - side * width / 2).round().clamp(0, width).view(-1, 1, 1)
    right = (cx + side * width / 2).round().clamp(0, width).view(-1, 1, 1)
    rows = torch.arange(height, device=x.device, dtype=x.dtype).view(1, -1, 1)
    cols = torch.arange(width, device=x.device, dtype=x.dtype).view(1, 1, -1)
    box = (rows >= top) & (rows < bottom) & (cols >= left) & (cols < right) & cut.view(-1, 1, 1)
    box_share = ((bottom - top) * (right - left)).flatten() / (height * width)
    lam = torch.where(cut, 1 - box_share, lam)
    blended = torch.lerp(partner, x, lam.view(-1, 1, 1, 1))
    images = torch.where(box.unsqueeze(1), partner, torch.where(cut.view(-1, 1, 1, 1), x, blended))
    targets = lam.view(-1, 1) * F.one_hot(y, num_classes).to(x.dtype)
    targets += (1 - lam).view(-1, 1) * F.one_hot(partner_y, num_classes).to(x.dtype)
    return images, targets
