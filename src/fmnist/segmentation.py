"""Find a garment lying on a textured, patterned, shaded or coloured surface, and how far it is turned.

Used by the photo framing (fmnist.images) when the plain-background method takes the surface for part of
the object. Classical and array-only, so that it can be ported as it is (to JavaScript, for instance):

Separating the object from the surface (`object_mask`), on a picture `colour` [H, W, C]:

1. Shrink the picture so that its longer side is at most SEGMENT_SIDE pixels (box-filter averaging):
   fine texture (grain, weave, gravel) averages out, and every later step is cheap.
2. Per pixel, FEATURES: each colour channel smoothed by a (2 * SMOOTH + 1)^2 box mean, and the texture
   energy: the standard deviation of the luminance (channel mean) over a (2 * TEXTURE + 1)^2 box.
3. The surface model, from the pixels of the outer RING pixels of the picture (the surface is what
   surrounds the object): per feature a quadratic trend in x and y (1, x, y, x^2, y^2, xy: a gradient of
   light, a vignette) fitted by least squares, and the covariance of what the trend leaves. Refitted
   FIT_ROUNDS times on the ring pixels within CHI2 squared Mahalanobis distance of the previous fit, so
   that an object touching the edge does not count as surface.
4. Each pixel's squared Mahalanobis distance from the surface model (after its trend); the object is
   where it exceeds THRESHOLD times the larger of CHI2 and the ring's own 99th percentile of inliers.
5. Morphology: an opening (3x3) removes specks, a closing (a (2 * CLOSE + 1)^2 square) joins the
   object's parts (a sandal's straps), then only the largest connected piece (8-connected) is kept and
   its holes are filled. A piece under MIN_AREA of the picture is no object (None). The texture energy
   spreads the object by its box's radius: the piece is eroded by TEXTURE - 1 pixels (3x3 cross, repeated).
6. The mask is scaled back to the picture's size (nearest pixel).

How far the object is turned (`tilt`), from its own shape. Most garments (tops, trousers, dresses, coats,
bags) are mirror-symmetric about a vertical axis: the mask is shrunk to at most TILT_SIDE pixels (BOX),
turned by angles in -MAX_TILT..MAX_TILT degrees (Pillow's bilinear rotate), first every TILT_COARSE
degrees, then every TILT_STEP around the best, and scored by how much of it its mirror image about its
centroid column covers (the overlap of a shape with its reflection, as in Zabrodsky, Peleg and Avnir 1995's
symmetry measure). When the best overlap reaches SYMMETRIC, its angle is the answer, used only when it
beats the upright overlap by SYMMETRY_GAIN. Otherwise the object is a shoe seen from the side
(Fashion-MNIST's sandals, sneakers and ankle boots), not symmetric. Lying on a surface, a shoe rests on its
sole: the answer is the angle, searched in the same way, that puts the most of the mask in the lowest
SOLE_BAND of its height, used only when it beats the upright one by SOLE_GAIN (relative). On a plain
backdrop (a product photo, where a shoe stands upright and a heel or a curved sole would mislead that
rule), the answer is the angle of the object's minimum-area bounding box among boxes turned by
-MAX_TILT..MAX_TILT degrees in steps of TILT_STEP (the box of the convex hull's corners turned by each
angle; Freeman and Shapira 1975 show the minimum-area box has a side on the hull), used only when that box
is at least TILT_GAIN smaller than the upright one. A garment already upright, or round, is left as it is.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache

import numpy as np
from PIL import Image
from scipy import ndimage
from scipy.spatial import ConvexHull, QhullError

SEGMENT_SIDE = 128  # pixels, the longer side the surface is separated at
SMOOTH = 2  # box radius of the colour features, pixels at SEGMENT_SIDE
TEXTURE = 3  # box radius of the texture energy, pixels at SEGMENT_SIDE
RING = 3  # width of the border ring the surface is modelled on, pixels at SEGMENT_SIDE
FIT_ROUNDS = 4
CHI2 = 13.28  # the chi-square distribution's 99th percentile for 4 degrees of freedom (3 colours + texture)
THRESHOLD = 2.0  # the object's least distance, as a multiple of the surface's own spread
CLOSE = 2  # half-size of the closing square, pixels at SEGMENT_SIDE
MIN_AREA = 0.005  # the least share of the picture an object covers
VARIANCE_FLOOR = 1.0  # grey levels squared added to each feature's variance: a flat surface is not infinitely sure

MAX_TILT = 30.0  # degrees either way
TILT_STEP = 1.0  # degrees, the finest angle tried
TILT_COARSE = 3.0  # degrees between the angles tried first
TILT_SIDE = 48  # pixels, the longer side the mask is turned at
SYMMETRIC = 0.9  # the mirror overlap from which an object is taken as mirror-symmetric
SYMMETRY_GAIN = 0.02  # the least gain in mirror overlap over the upright object that counts as a tilt
SOLE_BAND = 0.05  # share of the object's height that holds its sole
SOLE_GAIN = 0.1  # the least relative gain of the sole's pixels over the upright object's that counts as a tilt
TILT_GAIN = 0.04  # the least relative shrink of the bounding box that counts as a tilt


def object_mask(colour: np.ndarray, shape: tuple[int, int]) -> np.ndarray | None:
    """Boolean mask [H, W] = `shape` of the object on a surface in the picture `colour` (float [h, w, C], C = 1
    or 3, any range, of the same aspect as `shape`; at most SEGMENT_SIDE on its longer side saves step 1), or
    None when nothing covering MIN_AREA of the picture stands out of the surface (steps 1-6 above)."""
    height, width = shape
    small = shrunk(colour)
    features = _features(small)
    distance = _surface_distance(features)
    mask = _largest_piece(distance)
    if mask is None:
        return None
    rows = np.minimum((np.arange(height) * mask.shape[0]) // height, mask.shape[0] - 1)
    cols = np.minimum((np.arange(width) * mask.shape[1]) // width, mask.shape[1] - 1)
    return mask[np.ix_(rows, cols)]


def shrunk(colour: np.ndarray, side: int = SEGMENT_SIDE) -> np.ndarray:
    """`colour` [H, W, C] shrunk so that its longer side is at most `side` pixels (Pillow's BOX resize of each
    plane, float32), or as it is when it is that small already."""
    height, width = colour.shape[:2]
    scale = side / max(height, width)
    if scale >= 1.0:
        return colour.astype(np.float32)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    planes = [
        np.asarray(
            Image.fromarray(np.ascontiguousarray(colour[..., c], dtype=np.float32), "F").resize(
                size, Image.Resampling.BOX
            )
        )
        for c in range(colour.shape[2])
    ]
    return np.stack(planes, axis=-1)


def _features(small: np.ndarray) -> np.ndarray:
    """[h, w, C + 1]: the box-smoothed channels and the luminance's local standard deviation."""
    smooth = ndimage.uniform_filter(small, size=(2 * SMOOTH + 1, 2 * SMOOTH + 1, 1), mode="nearest")
    luminance = small.mean(axis=2)
    size = 2 * TEXTURE + 1
    mean = ndimage.uniform_filter(luminance, size, mode="nearest")
    square = ndimage.uniform_filter(luminance * luminance, size, mode="nearest")
    energy = np.sqrt(np.clip(square - mean * mean, 0, None))
    return np.concatenate([smooth, energy[..., None]], axis=2)


def _surface_distance(features: np.ndarray) -> np.ndarray:
    """[h, w] squared Mahalanobis distance of each pixel's features from the ring's surface model, in units of
    the surface's own threshold (above 1: the object)."""
    height, width, depth = features.shape
    ring = np.zeros((height, width), dtype=bool)
    ring[:RING], ring[-RING:], ring[:, :RING], ring[:, -RING:] = True, True, True, True
    x = (np.arange(width, dtype=np.float32) / max(width - 1, 1) - 0.5)[None, :]
    y = (np.arange(height, dtype=np.float32) / max(height - 1, 1) - 0.5)[:, None]
    terms = [np.ones((height, width), np.float32), x, y, x * x, y * y, x * y]  # broadcast to [h, w]
    ys, xs = np.nonzero(ring)
    design = np.stack([np.broadcast_to(t, (height, width))[ys, xs] for t in terms], axis=-1)
    values = features[ys, xs]
    inliers = np.ones(len(ys), dtype=bool)
    for _ in range(FIT_ROUNDS):
        coef = np.linalg.lstsq(design[inliers], values[inliers], rcond=None)[0]
        residual = values - design @ coef
        precision = _precision(residual[inliers])
        kept = _squared_distance(residual, precision) <= CHI2
        if kept.sum() < 12:  # too few surface pixels to refit: keep the last fit
            break
        inliers = kept
    trend = sum(t[..., None] * c for t, c in zip(terms, coef.astype(np.float32), strict=True))
    distance = _squared_distance((features - trend).reshape(-1, depth), precision)
    inside = _squared_distance(values[inliers] - design[inliers] @ coef, precision)
    limit = THRESHOLD * max(CHI2, float(np.percentile(inside, 99)) if inside.size else CHI2)
    return (distance / limit).reshape(height, width)


def _squared_distance(residual: np.ndarray, precision: np.ndarray) -> np.ndarray:
    """[N] squared Mahalanobis distances of residual rows [N, D] under `precision` [D, D]."""
    return ((residual @ precision) * residual).sum(axis=1)


def _precision(residual: np.ndarray) -> np.ndarray:
    covariance = np.atleast_2d(np.cov(residual, rowvar=False)) if len(residual) > 1 else np.eye(residual.shape[1])
    return np.linalg.inv(covariance + VARIANCE_FLOOR * np.eye(covariance.shape[0]))


def _largest_piece(distance: np.ndarray) -> np.ndarray | None:
    mask = ndimage.binary_opening(distance > 1, structure=np.ones((3, 3), bool))
    mask = ndimage.binary_closing(mask, structure=np.ones((2 * CLOSE + 1,) * 2, bool), border_value=0)
    labels, count = ndimage.label(mask, structure=np.ones((3, 3), bool))
    if count == 0:
        return None
    sizes = np.bincount(labels.ravel())[1:]
    largest = int(sizes.argmax()) + 1
    if sizes[largest - 1] < MIN_AREA * distance.size:
        return None
    filled = ndimage.binary_fill_holes(labels == largest)
    # The texture energy of a pixel beside the object counts the object's edge: its box spreads the mask by
    # about TEXTURE pixels all round; take back all but one.
    eroded = ndimage.binary_erosion(filled, iterations=TEXTURE - 1)
    return eroded if eroded.any() else filled


def tilt(mask: np.ndarray, on_surface: bool = False) -> float:
    """Degrees to turn the object of a boolean [H, W] mask by (counter-clockwise as displayed, as Pillow's
    Image.rotate) so that it stands upright; 0.0 when it is upright or its shape does not say (see above).
    `on_surface`: the object was separated from a textured surface (object_mask), not from a plain backdrop."""
    if mask.sum() < 3:
        return 0.0
    small = Image.fromarray(shrunk(mask[..., None].astype(np.float32), TILT_SIDE)[..., 0], "F")

    @cache
    def turned(angle: float) -> np.ndarray:
        return np.asarray(small.rotate(angle, Image.Resampling.BILINEAR, expand=True), np.float64)

    angle, overlap, upright = _search(turned, _mirror_overlap)
    if overlap >= SYMMETRIC:
        return angle if overlap - upright > SYMMETRY_GAIN else 0.0
    if not on_surface:
        return _box_tilt(mask)
    angle, sole, upright = _search(turned, _sole)
    return angle if sole > (1 + SOLE_GAIN) * upright else 0.0


def _search(turned: Callable[[float], np.ndarray], score: Callable[[np.ndarray], float]) -> tuple[float, float, float]:
    """(the angle of the highest score, the smallest such angle on a tie; its score; the upright score): the
    score of the mask `turned` by every TILT_COARSE degrees over -MAX_TILT..MAX_TILT, then by every TILT_STEP
    around the best."""
    scores: dict[float, float] = {}
    for angle in np.arange(-MAX_TILT, MAX_TILT + TILT_COARSE / 2, TILT_COARSE):
        scores[float(angle)] = score(turned(float(angle)))
    coarse = max(sorted(scores), key=scores.__getitem__)
    for angle in np.arange(coarse - TILT_COARSE + TILT_STEP, coarse + TILT_COARSE - TILT_STEP / 2, TILT_STEP):
        if abs(angle) <= MAX_TILT and float(angle) not in scores:
            scores[float(angle)] = score(turned(float(angle)))
    found = max(sorted(scores), key=scores.__getitem__)
    return found, scores[found], scores[0.0]


def _mirror_overlap(plane: np.ndarray) -> float:
    """The share of a coverage plane [h, w] (0..1) that its mirror image about its centroid column covers: the
    sum of the smaller of each pixel and its mirror (sampled linearly between two columns), over the sum."""
    columns = plane.sum(0)
    total = columns.sum()
    width = plane.shape[1]
    twice = 2 * float(columns @ np.arange(width)) / total  # the mirror takes column x to column twice - x
    low = int(np.floor(twice))
    share = twice - low
    padded = np.zeros((plane.shape[0], 3 * width + 2))
    padded[:, width + 1 : 2 * width + 1] = plane  # column c of the plane is column c + width + 1 here
    near = padded[:, low + 2 : low + width + 2][:, ::-1]  # column low - x, for x = 0..width - 1
    far = padded[:, low + 3 : low + width + 3][:, ::-1]  # column low + 1 - x
    return float(np.minimum(plane, (1 - share) * near + share * far).sum() / total)


def _sole(plane: np.ndarray) -> float:
    """Pixels of a coverage plane [h, w] over one half in the lowest SOLE_BAND of the rows that hold any, per row
    of that band."""
    inside = plane > 0.5
    rows = np.flatnonzero(inside.any(1))
    if len(rows) == 0:
        return 0.0
    band = max(1, round(SOLE_BAND * (rows[-1] - rows[0] + 1)))
    return float(inside[rows[-1] - band + 1 : rows[-1] + 1].sum() / band)


def _box_tilt(mask: np.ndarray) -> float:
    """The angle of the object's minimum-area bounding box (see above), 0.0 unless it is TILT_GAIN smaller than
    the upright box."""
    edge = mask & ~ndimage.binary_erosion(mask)
    ys, xs = np.nonzero(edge)
    if len(xs) < 3:
        return 0.0
    points = np.stack([xs, -ys], axis=1).astype(np.float64)  # y up: counter-clockwise as displayed
    try:
        hull = points[ConvexHull(points).vertices]
    except QhullError:  # all on a line
        return 0.0
    angles = np.arange(-MAX_TILT, MAX_TILT + TILT_STEP / 2, TILT_STEP)
    radians = np.deg2rad(angles)
    cos, sin = np.cos(radians)[:, None], np.sin(radians)[:, None]
    turned_x = hull[:, 0] * cos - hull[:, 1] * sin  # [angles, corners]
    turned_y = hull[:, 0] * sin + hull[:, 1] * cos
    areas = np.ptp(turned_x, axis=1) * np.ptp(turned_y, axis=1)
    upright = areas[len(angles) // 2]
    best = int(areas.argmin())
    return float(angles[best]) if areas[best] < (1 - TILT_GAIN) * upright else 0.0
