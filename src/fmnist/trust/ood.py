"""Out-of-distribution ("not a garment") scores: how much a picture looks like a Fashion-MNIST item.

Cues, each a number per image:
- from the model: `energy`, T * logsumexp(logits / T) with T = 1, the negative free energy (Liu, Wang, Owens
  and Li, 2020, "Energy-based Out-of-distribution Detection");
- from the 28x28 view the model sees (`view_cues`): the span of the object, its share of ink, the share of
  its ink inside a filled region rather than on a pen's line, and its sharpness (the energy of its gradient
  over its contrast: an enlarged small picture is smooth); its distance from the garments' principal
  subspace (`residual`); and its layout at 7x7 (`coarse`): the smallest Mahalanobis distance of its pooled
  pixels to a class's Gaussian, class-conditional Gaussians fitted on training images (as Lee, Lee, Lee and
  Shin, 2018, "A Simple Unified Framework for Detecting Out-of-Distribution Samples and Adversarial Attacks",
  fit them to a network's features);
- from the picture before it was framed to 28x28 (images.Cues): how much of the border is
  plain background, its noise, how much of the picture the object's box covers, how much of the
  box the object fills, and the share of the object in its largest connected piece (the first two describe
  the surface, and a picture on a textured surface has neither: SURFACE_CUES).

Each cue is turned into a conformal p-value (Vovk, Gammerman and Shafer, 2005): the share of
reference garment pictures at least as unusual, in the cue's unusual direction(s). The references of a
photo are garment photos rendered from validation images (trust.references); those of a plain 28x28
image (no framing cues) are plain validation images. A picture's smallest p-value, times the share of GATE its
second smallest is when it is under it (`unusualness`; the sharpness is never the smallest, only the second:
SECOND_ONLY), is then itself ranked among those of held-out garment
pictures of its kind (`calibrated`): the in-distribution score,
in [0, 1], is the share of garment pictures of the same kind that look at least as unusual, whatever
number of cues the kind has. The verdict is "garment" when the score is at least 1 - KEEP. Nothing
about non-garments is used to fit it; which cues are used and KEEP are measured per kind and leaving one kind
of picture out (benchmarks/ood.py).
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from typing import TYPE_CHECKING, TypeVar

import numpy as np

from fmnist.images import Cues

if TYPE_CHECKING:  # scoring an ONNX model's logits needs no torch
    import torch

# Which end of each cue is unusual: "low", "high" or "both".
UNUSUAL = {
    "energy": "low",
    **dict.fromkeys(Cues.NAMES, "both"),
    "span": "low",
    "ink": "both",
    "stroke": "both",
    "flat": "both",
    "sharpness": "low",
    "residual": "high",
    "coarse": "high",
}
KEEP = 0.985  # share of held-out garment pictures of each kind the threshold keeps (chosen by benchmarks/ood.py)
REFERENCE_SIZE = 512  # reference values kept per cue (quantiles), so a checkpoint stays small

Array = TypeVar("Array", "torch.Tensor", np.ndarray)


def energy(logits: Array, temperature: float = 1.0) -> Array:
    """[N] negative free energy T * logsumexp(logits / T) of logits [N, C] (Liu et al., 2020), a tensor for a
    tensor and a numpy array for an array; higher is more in-distribution."""
    z = logits / temperature
    if isinstance(z, np.ndarray):
        peak = z.max(1, keepdims=True)
        return temperature * (peak[:, 0] + np.log(np.exp(z - peak).sum(1)))
    return temperature * z.logsumexp(1)


VIEW_CUES = ("span", "ink", "stroke", "flat", "sharpness")
INK_LEVEL = 50  # a pixel of the 28x28 view brighter than this is the object's ("ink")
FULL_LEVEL = 200  # an ink pixel brighter than this is at full strength


def view_cues(views: np.ndarray) -> dict[str, np.ndarray]:
    """Shape cues of uint8 views [N, 28, 28] (what the model sees), float64 [N] each, from counts of pixels and
    sums of integers so that an ONNX graph and the page compute the same numbers (export.add_trust_outputs):

    - `span`: the longer side of the box around the ink, pixels. Fashion-MNIST's framing makes an object's
      longer side span the 28 pixels (26-28 in 99.4 % of its images); MNIST's puts a digit in a 20-pixel box.
    - `ink`: the ink's share of the 784 pixels (a garment's silhouette covers more than a pen's line).
    - `stroke`: the share of ink pixels whose eight neighbours are ink too (a binary erosion, Serra 1982): near 0
      for lines one or two pixels wide, high for a filled silhouette.
    - `flat`: the share of ink pixels at full strength (above FULL_LEVEL): printed or written ink is flat, a
      photographed garment is shaded.
    - `sharpness`: the squared differences between neighbouring pixels (across and down) over the squared
      deviations from the view's mean, 784 x sum(dx^2 + dy^2) / (784 x sum(x^2) - sum(x)^2); 0 for a blank view.
      The energy of the gradient (Subbarao, Choi and Nikzad, 1993; "GRA" in Pertuz, Puig and Garcia, 2013), a
      focus measure, divided by the contrast so that it does not move with it. A Fashion-MNIST image, reduced from
      a photo, has edges a pixel or two wide; a small picture enlarged to 28x28 (scikit-learn's 8x8 digits) or a
      blurred pencil drawing is smoother than nearly every garment's view (low is unusual).
    """
    ink = views > INK_LEVEL  # [N, 28, 28]
    count = _counts(ink)
    occupied = np.stack([ink.any(1), ink.any(2)], 1)  # [N, 2, 28]: the columns and the rows holding ink
    # last - first + 1 along each axis, from the first occupied position seen from either end
    spans = ink.shape[-1] - occupied.argmax(2) - occupied[..., ::-1].argmax(2)
    has_ink = np.maximum(count, 1).astype(np.float64)
    return {
        "span": np.where(count > 0, spans.max(1), 0).astype(np.float64),
        "ink": count / np.float64(ink.shape[1] * ink.shape[2]),
        "stroke": _counts(_eroded(ink)) / has_ink,
        "flat": _counts(views > FULL_LEVEL) / has_ink,
        "sharpness": _sharpness(views),
    }


def _sharpness(views: np.ndarray) -> np.ndarray:
    """view_cues' `sharpness` of uint8 views [N, H, W], float64 [N]: both sums are integers below 2^53, exact in
    float64 whatever the order of the additions, so a single division gives the same bits everywhere."""
    x = views.astype(np.int64)
    gradient = (np.diff(x, axis=2) ** 2).sum((1, 2)) + (np.diff(x, axis=1) ** 2).sum((1, 2))
    pixels = x.shape[1] * x.shape[2]
    spread = pixels * (x * x).sum((1, 2)) - x.sum((1, 2)) ** 2  # pixels^2 x the variance
    return np.where(spread > 0, (pixels * gradient).astype(np.float64) / np.maximum(spread, 1), 0.0)


def _counts(pixels: np.ndarray) -> np.ndarray:
    """[N] the True pixels of bool [N, H, W] (summed as bytes: a bool sum converts each to a 64-bit integer first)."""
    return pixels.view(np.uint8).sum((1, 2), dtype=np.uint32)


def _eroded(ink: np.ndarray) -> np.ndarray:
    """bool [N, H, W]: the binary erosion of `ink` by a 3x3 square, the pixels outside the views not ink, as two
    separable passes over the whole batch laid end to end (three pixels in a row, then three such rows). A pixel
    on a view's border has an outer neighbour, so it is never interior; its neighbours across the seam of two
    rows or two views are cleared with it."""
    n, height, width = ink.shape
    flat = ink.reshape(-1)
    across = flat[:-2] & flat[1:-1] & flat[2:]  # centred on flat[1:-1]
    interior = np.zeros_like(flat)
    interior[width + 1 : -width - 1] = across[: -2 * width] & across[width:-width] & across[2 * width :]
    inner = np.zeros((height, width), dtype=bool)
    inner[1:-1, 1:-1] = True
    return interior.reshape(ink.shape) & inner


BASIS_SIZE = 10  # principal directions of garment views that the `residual` cue keeps


def basis_of(views: np.ndarray, size: int = BASIS_SIZE) -> np.ndarray:
    """float64 [size + 1, 784]: the mean of uint8 garment views [M, 28, 28] (scaled to 0..1), then their first
    `size` principal directions (principal component analysis, Pearson 1901: the top eigenvectors of the
    scatter matrix, scipy.linalg.eigh asked for those alone, tens of milliseconds where a full SVD took seconds)."""
    from scipy.linalg import eigh

    x = views.reshape(len(views), -1) / 255.0
    mean = x.mean(0)
    centred = x - mean
    side = centred.shape[1]
    vectors = eigh(centred.T @ centred, subset_by_index=[side - size, side - 1])[1]
    return np.vstack([mean, vectors[:, ::-1].T])


def residual(views: np.ndarray, basis: np.ndarray) -> np.ndarray:
    """[N] the `residual` cue of uint8 views [N, 28, 28]: the squared distance of each view (0..1) from the
    garments' principal subspace (`basis_of`), what its first directions cannot draw: a pen's line, a letter,
    a texture. High is unusual."""
    x = views.reshape(len(views), -1) / 255.0
    x -= basis[0]
    directions = basis[1:]
    x -= (x @ directions.T) @ directions
    return np.square(x, out=x).sum(1)


COARSE_BLOCK = 4  # the `coarse` cue pools blocks of 4x4 pixels: a 28x28 view becomes 7x7 means and 7x7 maxima
COARSE_RIDGE = 1e-3  # added to each class's covariance, times its mean variance, so that it inverts


def coarse_pools(views: np.ndarray) -> np.ndarray:
    """float64 [N, 2 * (28 / COARSE_BLOCK) ** 2]: the means, then the maxima, of the COARSE_BLOCK x COARSE_BLOCK
    blocks of uint8 views [N, 28, 28], scaled to 0..1. A mean is the block's exact integer sum / 16, then / 255,
    as the ONNX graph and the page compute it, so the three agree to the bit."""
    n, height, width = views.shape
    rows, cols = height // COARSE_BLOCK, width // COARSE_BLOCK
    blocks = np.asarray(views, dtype=np.uint8).reshape(n, rows, COARSE_BLOCK, cols, COARSE_BLOCK)
    sums = blocks.sum((2, 4), dtype=np.uint32).reshape(n, -1)  # no float copy of the views
    means = sums / float(COARSE_BLOCK * COARSE_BLOCK)
    return np.concatenate([means, blocks.max((2, 4)).reshape(n, -1)], 1) / 255.0


def gaussians_of(views: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """float64 [K, 1 + D, D]: for each of the K classes among `labels` [N] (class indices) of uint8 garment views
    [N, 28, 28], the mean of their coarse_pools [D], then the precision matrix (the inverse of their covariance,
    with COARSE_RIDGE of its mean variance added to its diagonal): the class-conditional Gaussians whose
    Mahalanobis distance the `coarse` cue measures (as Lee et al., 2018, fit them to a network's features, here
    each with its own covariance, on the pixels pooled; fitted on training images, which the detector's references
    and calibration never include). Raises ValueError without any view."""
    if not len(views):
        raise ValueError("the coarse cue's Gaussians need at least one garment view")
    pools, labels = coarse_pools(np.asarray(views)), np.asarray(labels)
    fitted = []
    for label in np.unique(labels):
        members = pools[labels == label]
        mean = members.mean(0)
        covariance = np.atleast_2d(np.cov(members.T, bias=True))
        covariance += COARSE_RIDGE * max(float(covariance.diagonal().mean()), 1e-12) * np.eye(len(mean))
        fitted.append(np.vstack([mean, np.linalg.inv(covariance)]))
    return np.stack(fitted)


def coarse(views: np.ndarray, gaussians: np.ndarray) -> np.ndarray:
    """[N] the `coarse` cue of uint8 views [N, 28, 28]: the smallest squared Mahalanobis distance of their
    coarse_pools [N, D] to a class's Gaussian of `gaussians` [K, 1 + D, D] (gaussians_of; ValueError from numpy
    when D differs). It reads the view's layout at 7x7: a digit's or a letter's strokes, a face, a ball fall
    where no garment class's images do. High is unusual. One class at a time, so memory grows as N * D."""
    pools = coarse_pools(views)
    nearest = np.full(len(pools), np.inf)
    for gaussian in gaussians:
        diff = pools - gaussian[0]  # [N, D]
        np.minimum(nearest, np.einsum("nd,nd->n", diff @ gaussian[1:], diff), out=nearest)
    return nearest


# The cues that describe the surface a picture's object lies on rather than the object. A picture on a textured
# or shaded surface (Cues.textured, as images.on_texture decided: a table's grain, a cloth's weave, grass) has none
# (NaN, p-value 1): it is judged by its object. The references are product photos on plain backdrops, so any
# garment on a table would be unusual in these cues; benchmarks/ood.py measures the choice leaving one kind out.
SURFACE_CUES = ("border_fit", "noise")


def picture_cues(cues: Sequence[Cues | None], judge_surface: bool = False) -> dict[str, np.ndarray]:
    """Per picture cue, float64 [N] values (NaN where a picture had none: a plain 28x28 image), the SURFACE_CUES
    NaN for a picture on a textured surface unless `judge_surface` (benchmarks/ood.py compares both)."""
    missing = (np.nan,) * len(Cues.NAMES)
    table = np.array([missing if c is None else _CUE_FIELDS(c) for c in cues], dtype=np.float64)
    table = table.reshape(len(cues), len(Cues.NAMES))
    if not judge_surface:
        textured = np.array([c is not None and c.textured for c in cues], dtype=bool)
        table[np.ix_(textured, np.array([Cues.NAMES.index(name) for name in SURFACE_CUES]))] = np.nan
    return dict(zip(Cues.NAMES, table.T.copy(), strict=True))


_CUE_FIELDS = operator.attrgetter(*Cues.NAMES)


def p_values(values: np.ndarray, reference: np.ndarray, unusual: str, itself: bool = False) -> np.ndarray:
    """Conformal p-values [N] of `values` against sorted `reference` [M]: (1 + references at least as unusual)
    / (1 + M); two-sided for "both" (twice the smaller tail, at most 1). NaN values give 1.

    `itself`: each value is also in `reference` (scoring the reference set); it is left out of its own count,
    on the same (1 + M) grid as a fresh value, so that the two compare exactly (a fresh value's p-value is,
    in distribution, at least as large: calibrating on these is conservative).
    """
    own, size = int(itself), 1.0 + len(reference)
    if unusual == "low":
        p = (1 - own + np.searchsorted(reference, values, side="right")) / size  # references <= value
    elif unusual == "high":
        p = (1 - own + len(reference) - np.searchsorted(reference, values, side="left")) / size  # >= value
    else:
        low, high = p_values(values, reference, "low", itself), p_values(values, reference, "high", itself)
        p = np.minimum(1.0, 2 * np.minimum(low, high))
    return np.where(np.isnan(values), 1.0, p)


def combined(cues: dict[str, np.ndarray], references: dict[str, np.ndarray], itself: bool = False) -> np.ndarray:
    """[N] in-distribution score: the smallest p-value over the cues that have a reference."""
    return p_value_table(cues, references, itself).min(0)


def p_value_table(cues: dict[str, np.ndarray], references: dict[str, np.ndarray], itself: bool = False) -> np.ndarray:
    """[K, N] the p_values of the K cues that have a reference, one row each in the references' order: the same
    numbers, from two searchsorted over every cue at once. Each cue's references and values lie in a lane of their
    own, as complex numbers whose real part is the lane and imaginary part the value, which numpy orders
    lexicographically (real part first): one sorted array holds all the references, and a value's rank among its
    own cue's is its rank in it less the references of the lanes before. The references must be sorted and hold
    no NaN, as reference_of and `fitted` make them: numpy sorts a NaN after every lane."""
    names = list(references)
    values = np.array([cues[name] for name in names], dtype=np.float64)  # [K, N]
    sizes = np.array([len(references[name]) for name in names])
    lanes = np.empty(sizes.sum(), np.complex128)
    lanes.real = np.repeat(np.arange(len(names)), sizes)
    lanes.imag = np.concatenate([references[name] for name in names])
    probes = np.empty(values.shape, np.complex128)
    probes.real = np.arange(len(names))[:, None]
    probes.imag = values
    before = (np.cumsum(sizes) - sizes)[:, None]  # references in the lanes before each cue's
    at_most = np.searchsorted(lanes, probes, side="right") - before  # references <= value
    at_least = sizes[:, None] - (np.searchsorted(lanes, probes, side="left") - before)  # references >= value
    own, size = int(itself), 1.0 + sizes[:, None]
    low, high = (1 - own + at_most) / size, (1 - own + at_least) / size
    unusual = [UNUSUAL[name] for name in names]
    p = np.where(
        np.array([u == "low" for u in unusual])[:, None],
        low,
        np.where(np.array([u == "high" for u in unusual])[:, None], high, np.minimum(1.0, 2 * np.minimum(low, high))),
    )
    return np.where(np.isnan(values), 1.0, p)


# How much the product of a picture's p-values adds to their minimum in `unusualness`: under the step between
# two p-values of REFERENCE_SIZE references, so it only orders pictures whose smallest p-values tie (before the
# gate multiplies it).
TIE_BREAK = 1e-6
# How far under it a picture's second smallest p-value must lie to count (`unusualness`). With the smallest p-value
# alone, a non-garment beyond every garment in one cue and far out in a second ties with the garments that lie at
# the edge of any one of ten cues; the product of the two smallest (a gate of 1) tells those apart but lets a
# picture odd in one cue alone pass. Counting the second only under the gate does some of both. 1/30 came from a
# sweep of 1/10 to 1/1000 that looked at the non-garments' holdout parts too; benchmarks/ood.py then chose it
# among 0, 1/30 and 1, leaving one kind out (docs/TRUST.md). A detector fitted before it (no `gate` in its
# checkpoint) has 0, the smallest p-value alone.
GATE = 1 / 30
# Cues that a picture's unusualness (`unusualness`) counts only as its second unusual cue, never as its first. A
# garment photographed out of focus, or a product photo on a flat backdrop that the framing reads as a digital
# image, is smoother than the references (a lens, a soft shadow) and unusual in nothing else: counted like the
# others, the sharpness rejected 65.5 % of the square product photos with a soft shadow, and kept 72.5 % of product
# photos blurred by a Gaussian of 2 % of their size against 96.0 % without the cue (84.0 % second only; measured on
# the upright reference photos of 5d52778, benchmarks/blurred_photos.py, docs/TRUST.md).
SECOND_ONLY = ("sharpness",)


def unusualness(
    cues: dict[str, np.ndarray],
    references: dict[str, np.ndarray],
    itself: bool = False,
    gate: float = 0.0,
) -> np.ndarray:
    """[N] the smallest p-value over the cues that have a reference, ties broken by the product of all of them
    (Fisher's combination, 1932, in another form): min + TIE_BREAK * product, multiplied in the references' order
    so that an ONNX graph gets the same bits; then, for a `gate` above 0 and two cues or more, times
    min(1, second smallest / gate), so that a second unusual cue (a p-value under the gate) makes the picture more
    unusual, in proportion (the truncated product of Zaykin, Zhivotovsky, Westfall and Weir, 2002, on the second
    smallest p-value, each scaled by the truncation point). The smallest p-values of several cues tie often (a
    picture beyond every reference of one cue gets the smallest p-value there is), the products seldom. The cues
    of SECOND_ONLY are left out of the smallest p-value but not of the second smallest:
    such a cue alone never makes a picture unusual, and beside another unusual cue it counts as the second (when
    it is the smallest of all, the second smallest is the other cue's own, which then counts twice)."""
    ps = p_value_table(cues, references, itself)
    product = ps[0]
    for p in ps[1:]:
        product = product * p
    first = np.array([name not in SECOND_ONLY for name in references])
    smallest = ps[first].min(0) + TIE_BREAK * product
    if not gate or len(ps) < 2:
        return smallest
    return smallest * np.minimum(1.0, np.sort(ps, 0)[1] / gate)


def calibrated(
    values: dict[str, np.ndarray],
    photo: np.ndarray,
    references: dict[str, np.ndarray],
    plain: dict[str, np.ndarray],
    held_out: dict[str, np.ndarray],
    gate: float,
) -> np.ndarray:
    """[N] in-distribution scores: the conformal p-value of each picture's `unusualness` (with the detector's
    `gate`) among those of held-out garment pictures of its kind, `held_out[kind]` (sorted): a photo (`photo`,
    bool [N]) against `references`, a plain 28x28 image against `plain`; a photo on a textured surface (its SURFACE_CUES
    missing, as picture_cues leaves them) among the garment photos' unusualness without those cues,
    "textured" (a detector fitted before it had none: "photo"). So a score is the share of garment pictures
    judged on the same cues at least as unusual, whatever number of cues the kind has. A batch of several
    kinds is scored each way at once and picked per picture."""
    if not photo.any():  # plain images alone (a single one, a batch of them)
        return p_values(unusualness(values, plain, gate=gate), held_out["plain"], "low")
    as_photo = unusualness(values, references, gate=gate)
    scores = p_values(as_photo, held_out["photo"], "low")
    if "textured" in held_out and SURFACE_CUES[0] in values:
        textured = photo & np.isnan(values[SURFACE_CUES[0]]) & ~np.isnan(values["coverage"])
        if textured.any():
            scores = np.where(textured, p_values(as_photo, held_out["textured"], "low"), scores)
    if photo.all():
        return scores
    return np.where(photo, scores, p_values(unusualness(values, plain, gate=gate), held_out["plain"], "low"))


def fitted(
    photos: dict[str, np.ndarray],
    plain: dict[str, np.ndarray],
    cues: Sequence[str],
    keep: float = KEEP,
    gate: float = GATE,
) -> dict[str, object]:
    """A detector's fields (trust.Trust's references, plain, held_out, threshold, gate) from cue values [P] of
    garment photos and [M] of plain garment images, on `cues` (the plain images' those that are not framing
    cues), with the threshold 1 - `keep`, its unusualness counting the second smallest p-value under `gate`.

    Photos (when `cues` holds picture cues, those that have them): each cue's references are their values, and
    each photo's on a plain backdrop, scored against the others (leave one out), calibrates ("photo"); every
    photo's, scored without its SURFACE_CUES, calibrates those on a textured surface ("textured"). Plain images: the
    even-numbered give the references, the odd-numbered, scored against them, calibrate (split conformal, Vovk
    et al. 2005).
    """
    if any(name in Cues.NAMES for name in cues):
        # A photo the framing took for a digital image has no picture cues (NaN): predict scores such a picture
        # as a plain image, and it has no rank among the photos' picture cues, so it is no photo reference. (One
        # on a textured surface lacks only the SURFACE_CUES.)
        framed = ~np.isnan(photos["coverage"])
        photos = {name: values[framed] for name, values in photos.items()}
    references = {name: np.sort(photos[name][~np.isnan(photos[name])]) for name in cues}  # p_value_table: no NaN
    plain_refs = {name: reference_of(plain[name][0::2]) for name in cues if name not in Cues.NAMES}
    held_out = {name: v[1::2] for name, v in plain.items()}
    # Every photo can be judged by its object alone ("textured"); those on a plain backdrop by every cue ("photo").
    objects = {**photos, **{name: np.full(len(photos[name]), np.nan) for name in SURFACE_CUES if name in photos}}
    backdrop = ~np.isnan(photos[SURFACE_CUES[0]]) if SURFACE_CUES[0] in photos else slice(None)
    return {
        "references": {name: reference_of(v) for name, v in references.items()},
        "threshold": round(1 - keep, 12),  # 0.015, not 1 - 0.985 = 0.015000000000000013
        "plain": plain_refs,
        "held_out": {
            "photo": reference_of(
                unusualness({name: v[backdrop] for name, v in photos.items()}, references, True, gate)
            ),
            "plain": reference_of(unusualness(held_out, plain_refs, gate=gate)),
            "textured": reference_of(unusualness(objects, references, True, gate)),
        },
        "gate": gate,
    }


def reference_of(values: np.ndarray) -> np.ndarray:
    """Sorted reference values, thinned to REFERENCE_SIZE evenly spaced quantiles when there are more."""
    values = np.sort(values[~np.isnan(values)])
    if len(values) > REFERENCE_SIZE:
        values = np.quantile(values, np.linspace(0, 1, REFERENCE_SIZE))
    return values
