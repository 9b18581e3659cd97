"""Take a drop shadow out of a photo's contrast, so that the object's box and its 28x28 view hold the object alone.

A product photo's object often casts a soft shadow on its backdrop, down and to one side (a studio light, or the
"drop shadow" layer style of photo editors). The shadow darkens the backdrop like the object does, so the
framing (fmnist.images) took it for part of the object: the box grew on its side, the garment shrank and moved
in the view, and a grey halo hung beside it.

The model is the drop shadow's own: the object's silhouette, translated, blurred by a Gaussian, darkening the
backdrop by a fixed share. On `contrast` [H, W] (the backdrop 0, the object positive) around the object of `mask`:

1. The object's box with PAD of its longer side round it, shrunk so that its longer side is at most
   ANALYSIS_SIDE pixels (Pillow's BOX resize, as segmentation.py shrinks): the analysis plane C, negative
   contrast read as 0.
2. The object's core A: the pixels of C above CORE times its peak (the 99.9th percentile), holes filled. Beside
   it, W: the pixels neither in A nor next to it (a 3x3 dilation of A; an edge pixel partly covered by the object
   is the object's), holding the backdrop, the object's faint parts and any shadow.
3. For each Gaussian blur BLURS (pixels of C) and each translation v with MIN_SHIFT <= |v| <= MAX_SHIFT pixels
   (either axis within MAX_SHIFT), the shadow S_v = blur(A) translated by v, and the least-squares level s of
   C ~ s * S_v over W: s = <C, S_v>_W / <S_v, S_v>_W (positive). What it leaves is R_v = <C, C>_W - s <C, S_v>_W.
   (Correlations over every v and blur at once, by FFT.)
4. A drop shadow is there when the best R_v is at most EXPLAINED of <C, C>_W: the shifted, blurred core explains
   nearly all contrast beside the object. An object's own faint rim is no such thing (it lies all round the
   core, not to one side), and MIN_SHIFT keeps a blur all round the core from counting. Nor is a light part of
   the object on one side of its core (a white sole under a dark shoe, a hem): its edge is sharp, so the core
   blurred by only SHARP pixels, tried with the others, fits it best, and then no shadow is taken out.
5. The shadow is taken out: s * S_v, enlarged back to the picture's pixels (bilinear, at pixel centres), is
   subtracted from the contrast outside the core. Under the core the object hides the shadow.

The translation and blur of a shadow, the level of its darkening and the core are measured per picture; the
constants are tuned on renders of the validation images with sensor noise (benchmarks/square_photos.py).
Not taken out: a shadow darker than CORE of the object's own contrast (it joins the core), one lying all round
the object (a contact shadow: no translation), and any shadow of an object whose box and PAD span fewer than
ANALYSIS_SIDE pixels. Array-only, to be ported as it is (shadows.js).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from fmnist import segmentation

ANALYSIS_SIDE = 64  # pixels, the longer side of the analysis plane
PAD = 0.1  # of the object's longer side, kept round its box
CORE = 0.3  # of the peak contrast: the object's core
BLURS = (2.0, 3.0, 4.0)  # Gaussian standard deviations tried, pixels of the analysis plane: a drop shadow is soft
SHARP = 1.0  # pixels of the analysis plane: a blur this small that fits better says the contrast is the object's
MAX_SHIFT = 8  # pixels of the analysis plane, on either axis
MIN_SHIFT = 2.0  # pixels of the analysis plane: the least translation a drop shadow has
EXPLAINED = 0.25  # the largest share of the contrast beside the core a drop shadow leaves unexplained
# A candidate shadow S_v whose energy beside the core <S_v, S_v>_W is under OVERLAP of the largest candidate's lies
# nearly all under the core or off the plane: it explains nothing, and the FFT's sums for it are rounding noise (about
# 1e-12 of the largest), which could make its least-squares level, and so R_v, anything (even below 0).
OVERLAP = 1e-6


def without_shadow(contrast: np.ndarray, mask: np.ndarray) -> np.ndarray | None:
    """`contrast` (float [H, W], grey levels, the backdrop 0, the object positive) with the drop shadow cast by the
    object of `mask` (bool [H, W], the pixels standing out) taken out, as a new float32 array (no pixel taken below
    0 by it); None when no drop shadow explains the contrast beside the object (see the module's steps)."""
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    if rows.size == 0:
        return None
    height, width = contrast.shape
    pad = int(PAD * max(rows[-1] + 1 - rows[0], cols[-1] + 1 - cols[0])) + 1
    top, bottom = max(int(rows[0]) - pad, 0), min(int(rows[-1]) + 1 + pad, height)
    left, right = max(int(cols[0]) - pad, 0), min(int(cols[-1]) + 1 + pad, width)
    if max(bottom - top, right - left) < ANALYSIS_SIDE:  # too few pixels to tell a shadow from the object's rim
        return None
    window = np.clip(contrast[top:bottom, left:right], 0, None).astype(np.float32)
    plane = segmentation.shrunk(window[..., None], ANALYSIS_SIDE)[..., 0].astype(np.float64)
    found = _shadow(plane)
    if found is None:
        return None
    shadow, core = found
    full = _enlarged(shadow, bottom - top, right - left)
    inside = _enlarged(core.astype(np.float64), bottom - top, right - left) >= 0.5
    out = contrast.astype(np.float32, copy=True)
    around = out[top:bottom, left:right]  # a view: subtracting from it changes `out`
    # The shadow darkened the backdrop by at most what is left of it: no contrast is taken below 0.
    around -= np.where(inside, 0.0, np.minimum(full, np.maximum(around, 0.0))).astype(np.float32)
    return out


def _shadow(plane: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """(the fitted shadow s * S_v [h, w], the core A, bool [h, w]) on the analysis plane, or None (steps 2-4)."""
    peak = float(np.quantile(plane, 0.999))
    if peak <= 0:
        return None
    core = ndimage.binary_fill_holes(plane > CORE * peak)
    beside = (~ndimage.binary_dilation(core, np.ones((3, 3), bool))).astype(np.float64)
    total = float((beside * plane * plane).sum())
    if total <= 0:
        return None
    shifts = np.arange(-MAX_SHIFT, MAX_SHIFT + 1)
    far = np.hypot(shifts[:, None], shifts[None, :]) >= MIN_SHIFT
    softs = np.stack([_blurred(core.astype(np.float64), blur) for blur in (SHARP, *BLURS)])  # [blurs, h, w]
    along = _correlations(beside * plane, softs)  # [blurs, dy, dx]: <C, S_v>_W
    energy = _correlations(beside, softs * softs)  # <S_v, S_v>_W
    fits = (along > 0) & (energy > OVERLAP * energy.max()) & far
    left = np.where(fits, total - along * along / np.where(fits, energy, 1.0), np.inf)
    k = int(np.argmin(left))  # the first of the least, blurs in turn
    blur, row, column = np.unravel_index(k, left.shape)
    if blur == 0 or not left.flat[k] <= EXPLAINED * total:  # sharper than a shadow, or not explained
        return None
    shadow = _translated(softs[blur], int(shifts[row]), int(shifts[column]))
    return float(along.flat[k] / energy.flat[k]) * shadow, core


def _blurred(plane: np.ndarray, sigma: float) -> np.ndarray:
    """A Gaussian blur of standard deviation `sigma` pixels, zero beyond the plane (scipy's, truncated at 4 sigma)."""
    return ndimage.gaussian_filter(plane, sigma, mode="constant", truncate=4.0)


def _translated(plane: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """`plane` moved by dy rows down and dx columns right, zero where it was not."""
    out = np.zeros_like(plane)
    height, width = plane.shape
    out[max(dy, 0) : height + min(dy, 0), max(dx, 0) : width + min(dx, 0)] = plane[
        max(-dy, 0) : height + min(-dy, 0), max(-dx, 0) : width + min(-dx, 0)
    ]
    return out


def _correlations(weighted: np.ndarray, shadows: np.ndarray) -> np.ndarray:
    """[n, 2 MAX_SHIFT + 1, 2 MAX_SHIFT + 1]: for each of the n `shadows` [n, h, w], the sum over pixels x of
    weighted[x] * shadow[x - v] for each translation v = (dy, dx) in -MAX_SHIFT..MAX_SHIFT (the shadow moved by v,
    zero beyond the plane), by FFT."""
    height, width = weighted.shape
    size = (height + 2 * MAX_SHIFT, width + 2 * MAX_SHIFT)
    product = np.fft.rfft2(weighted, size) * np.conj(np.fft.rfft2(shadows, size))
    circular = np.fft.irfft2(product, size)  # [n, u, t]: sum of weighted[x] * shadow[x - (u, t)], modulo size
    shifts = np.arange(-MAX_SHIFT, MAX_SHIFT + 1)
    return circular[:, shifts % size[0]][:, :, shifts % size[1]]


def _enlarged(plane: np.ndarray, height: int, width: int) -> np.ndarray:
    """`plane` [h, w] resampled to [height, width] bilinearly at pixel centres (clamped at the edges): between two
    rows, then between two columns."""

    def taps(size: int, out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        at = np.clip((np.arange(out) + 0.5) * size / out - 0.5, 0, size - 1)
        low = np.floor(at).astype(np.int64)
        return low, np.minimum(low + 1, size - 1), at - low

    top, bottom, down = taps(plane.shape[0], height)
    rows = (1 - down)[:, None] * plane[top] + down[:, None] * plane[bottom]  # [height, w]
    left, right, across = taps(plane.shape[1], width)
    return (1 - across) * rows[:, left] + across * rows[:, right]
