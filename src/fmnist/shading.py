"""Take a straight edge of light out of a photo: a hard shadow, a window's light or the bar of its frame's shadow.

A garment photographed on a table or a backdrop is often crossed by a shadow's or a light's edge. The photo
framing (fmnist.images) models the backdrop as a smooth surface, which cannot follow a step of light: the darker
or lighter side was taken for part of the object, and the view became a wedge with the garment in it. Light
multiplies what it falls on, the backdrop and the garment alike, so on the logarithm of the luminance an edge of
light is a step of one size all along a straight line, whatever it crosses. `without_light_edge`, on a picture's
luminance `gray` [H, W] (0..255), its box mean `smooth` and its border pixels `border` (going round):

1. L = log(smooth + FLOOR) along the border. A step of light meets the border where L changes by MIN_STEP or more
   between two flanks of FLANK_SHARE of the border (at least MIN_FLANK pixels) with a transition of 2 * gap + 1
   pixels between them, for each gap of GAPS (a sharp or a soft edge), both flanks flat (standard deviation at
   most FLAT, and at most 1/SHARPNESS of the step: a gradient of light changes within a flank as across the gap).
   Where the border holds more than MAX_STEPS such places, it is a pattern (stripes, checks, tiles), not light:
   nothing is taken out. Each place is the border's steepest pixel there, with the sharpest gap that holds
   SHARPEST of its step (`_border_places`).
2. Each pair of steps of opposite signs and sizes within MATCH of each other, on two different sides of the
   picture, is an edge's two ends. Across the chord between them, at SAMPLES places along its middle, L is
   compared at gap + REACH pixels on either side: the chord is an edge of light when the median difference is
   within MATCH of the border's step and at least AGREE of the places agree with it (within MATCH, or TOLERANCE),
   the rest being covered by the object's own details; and when the step is the same in each colour channel of
   the picture, within CHROMA of its size (a coloured band, a screenshot's title bar, is no light).
3. The edge's profile across the chord: the median over the agreeing places of L at each offset from the chord,
   up to twice that reach on either side, relative to its start, made monotone. Its whole step must be the
   chord's, within MATCH (a flat band of one colour along the chord, a screenshot's title bar, is no edge).
4. The brighter side is darkened by the profile (the shadow's side is not brightened, which would amplify its
   noise and could pass white), FLOOR above black as it was measured, and across the transition itself (where the
   profile is between TRANSITION and 1 - TRANSITION of its step, a pixel more each side) the picture is bridged
   linearly from one side to the other: a line left where the profile misses by a pixel would stand out along
   the whole chord.

Of the chords found, the one with the strongest agreement times step is taken out; fmnist.images calls this
again for a second edge (the two edges of a bar of shadow). Not taken out: an edge meeting the border where the
object does (its flanks are not flat), a light clipped at white on one side (the step is not the same along
the chord), and curved or gradual light (the framing's smooth background surface follows those). Array-only, to
be ported as it is (shading.js).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy import ndimage

FLOOR = 2.0  # grey levels added before the logarithm: the noise of the darkest levels makes no steps
MIN_STEP = 0.1  # the least step of light, log units (about 10 %)
FLANK_SHARE = 1 / 64  # of the border's pixels, each flank of a step
MIN_FLANK = 6  # pixels
FLAT = 0.04  # the largest standard deviation of a flank, log units
SHARPNESS = 20.0  # the least step, as a multiple of a flank's standard deviation
GAPS = (2, 6, 16)  # pixels: half-widths of the transition tried, sharp to soft
MAX_STEPS = 4  # places on the border: two edges of light
SHARPEST = 0.9  # of a place's strongest step: a sharper gap's that is taken for it
MATCH = 0.35  # the largest difference of steps that are one edge's, relative to its size
TOLERANCE = 0.04  # log units: the least difference a place on the chord may have and still agree
AGREE = 0.5  # the least share of the chord's places where the step is the border's
SAMPLES = 48  # places along the chord
CHORD_ENDS = 0.08  # of the chord at either end, left out (the border's own flanks)
REACH = 3  # pixels beyond the transition's half-width at which the two sides are read
MIN_CHORD = 16  # pixels
TRANSITION = 0.05  # of the step: the edge's transition lies between this share of it and its complement
CHROMA = 0.5  # the largest spread of the step among colour channels, relative to the luminance's
EDGES = 2  # edges taken out of a picture, one after the other: a bar of shadow has two


def without_light_edge(
    gray: np.ndarray,
    smooth: np.ndarray,
    border: tuple[np.ndarray, np.ndarray],
    colour: Callable[[], np.ndarray] | None = None,
) -> np.ndarray | None:
    """`gray` (float [H, W], 0..255) with the strongest straight edge of light taken out (see the module's steps),
    as a new float32 array; None when there is none. `smooth`: `gray`'s box mean [H, W]; `border`: the row and
    column indices of its outermost pixels, going round; `colour`: gives the picture's colour planes float
    [h, w, C] (any size of `gray`'s aspect; C = 1 for a picture without colour), asked for only when a chord is
    found."""
    if min(gray.shape) < MIN_CHORD:
        return None
    ys, xs = border
    places = _border_places(np.log(np.maximum(smooth[ys, xs].astype(np.float64), 0) + FLOOR))
    best: tuple[float, np.ndarray, np.ndarray, np.ndarray, int] | None = None
    for i, (a, step_a, gap_a) in enumerate(places):
        for b, step_b, gap_b in places[i + 1 :]:
            if step_a * step_b >= 0 or abs(step_a + step_b) > MATCH * max(abs(step_a), abs(step_b)):
                continue
            if _sides(ys[a], xs[a], gray.shape) & _sides(ys[b], xs[b], gray.shape):
                continue
            ends = np.array([ys[a], xs[a]], float), np.array([ys[b], xs[b]], float)
            found = _edge(smooth, ends, max(gap_a, gap_b), abs(step_a), colour)
            if found is not None and (best is None or found[0] > best[0]):
                best = found
    if best is None:
        return None
    _, start, normal, profile, reach = best
    return _taken_out(gray, start, normal, profile, reach)


def _flank(n: int) -> int:
    return max(MIN_FLANK, int(n * FLANK_SHARE))


def _apart(a: int, b: int, n: int) -> int:
    return min(abs(a - b), n - abs(a - b))


def _border_places(values: np.ndarray) -> list[tuple[int, float, int]]:
    """Step 1: (border index, step in log units, gap) of each place on the border `values` [n] (log luminance
    going round) where the light steps, strongest first; none when there are more than MAX_STEPS. A place's gap is
    the sharpest whose step is at least SHARPEST of the place's strongest, and its index the border's steepest
    pixel within that gap of it (`_steepest`): a step's flanks leave it free to move along a plateau that wide."""
    steps = _border_steps(values)
    n, flank = values.size, _flank(values.size)
    places: list[tuple[int, float, int]] = []
    for candidate in steps:
        if all(_apart(candidate[0], k, n) > candidate[2] + flank + g for k, _, g in places):
            places.append(candidate)
    if len(places) > MAX_STEPS:  # a pattern (stripes, checks, tiles), not light
        return []
    chosen: list[tuple[int, float, int]] = []
    for place, strongest, widest in places:
        near = [
            (k, step, gap)
            for k, step, gap in steps
            if _apart(k, place, n) <= widest + flank + gap
            and step * strongest > 0
            and abs(step) >= SHARPEST * abs(strongest)
        ]
        index, step, gap = min(near, key=lambda near_step: near_step[2])
        chosen.append((_steepest(values, index, gap), step, gap))
    return chosen


def _steepest(values: np.ndarray, index: int, gap: int) -> int:
    """The border index within `gap` + 1 of `index` where `values` [n] (going round) change most between the two
    neighbours of a pixel; the first of equals."""
    n = values.size
    around = (index + np.arange(-gap - 1, gap + 2)) % n
    change = np.abs(values[(around + 1) % n] - values[(around - 1) % n])
    return int(around[int(np.argmax(change))])


def _border_steps(values: np.ndarray) -> list[tuple[int, float, int]]:
    """Step 1: (border index, step in log units, gap) of each step of light on the border `values` [n] (log
    luminance going round), strongest first."""
    n = values.size
    flank = _flank(n)
    # Running sums round the border (it closes on itself) give each flank's mean and spread in O(n).
    ring = np.concatenate([values, values, values])
    sums = np.concatenate([[0.0], np.cumsum(ring)])
    squares = np.concatenate([[0.0], np.cumsum(ring * ring)])
    index = np.arange(n) + n

    def flank_at(first: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        mean = (sums[first + flank] - sums[first]) / flank
        spread = np.sqrt(np.maximum((squares[first + flank] - squares[first]) / flank - mean * mean, 0.0))
        return mean, spread

    found: list[tuple[int, float, int]] = []
    for gap in GAPS:
        (before, spread_before), (after, spread_after) = flank_at(index - gap - flank), flank_at(index + gap + 1)
        step = after - before
        strength = np.abs(step)
        # Flat flanks, and flat beside the step: a gradient of light changes as much within a flank as across the gap.
        strength[np.maximum(spread_before, spread_after) > np.minimum(FLAT, strength / SHARPNESS)] = 0.0
        peak = strength == ndimage.maximum_filter1d(strength, 2 * (gap + flank) + 1, mode="wrap")
        found += [(int(k), float(step[k]), gap) for k in np.flatnonzero(peak & (strength >= MIN_STEP))]
    return sorted(found, key=lambda step: -abs(step[1]))


def _sides(y: int, x: int, shape: tuple[int, ...]) -> int:
    """The picture's sides a border pixel lies on, as bits (top, right, bottom, left): a corner is on two."""
    height, width = shape
    return int(y == 0) | int(x == width - 1) << 1 | int(y == height - 1) << 2 | int(x == 0) << 3


def _edge(
    plane: np.ndarray,
    ends: tuple[np.ndarray, np.ndarray],
    gap: int,
    size: float,
    colour: Callable[[], np.ndarray] | None,
) -> tuple[float, np.ndarray, np.ndarray, np.ndarray, int] | None:
    """Steps 2 and 3 for the chord between `ends` (row, column) on `plane` (the box mean): (its agreement
    times its step, its start, its unit normal, the profile [4 * reach + 1] at offsets -2 * reach..2 * reach along
    the normal, reach), or None when it is no edge of light of the border's step `size`."""
    start, end = ends
    length = float(np.sqrt(np.sum((end - start) ** 2)))
    if length < MIN_CHORD:
        return None
    along = (end - start) / length
    normal = np.array([-along[1], along[0]])
    reach = gap + REACH
    places = start + np.linspace(CHORD_ENDS, 1 - CHORD_ENDS, SAMPLES)[:, None] * (end - start)

    def log_at(points: np.ndarray) -> np.ndarray:
        return np.log(np.maximum(_bilinear(plane, points[:, 0], points[:, 1]), 0) + FLOOR)

    differences = log_at(places + reach * normal) - log_at(places - reach * normal)
    step = float(np.median(differences))
    agree = np.abs(differences - step) <= max(MATCH * abs(step), TOLERANCE)
    if abs(abs(step) - size) > MATCH * size or agree.mean() < AGREE:
        return None
    offsets = np.arange(-2 * reach, 2 * reach + 1)
    chosen = places[agree]
    across = log_at((chosen[:, None, :] + offsets[None, :, None] * normal).reshape(-1, 2)).reshape(len(chosen), -1)
    profile = np.median(across - across[:, :1], axis=0)
    profile = np.maximum.accumulate(profile) if step > 0 else np.minimum.accumulate(profile)
    if abs(float(profile[-1]) - step) > MATCH * abs(step):  # the chord's two sides differ, but by no edge of light
        return None
    if colour is not None and not _neutral(colour(), plane.shape, chosen, normal, reach, step):
        return None
    return float(agree.mean() * abs(step)), start, normal, profile, reach


def _neutral(
    planes: np.ndarray, shape: tuple[int, ...], places: np.ndarray, normal: np.ndarray, reach: int, step: float
) -> bool:
    """Step 2, last: whether the step across the chord is the same in each colour channel of `planes` [h, w, C]
    (the picture at another size), within CHROMA of the luminance's `step`: light changes how bright a surface is,
    not its colour. `places` [n, 2] and `reach` are on the plane of `shape`; a picture without colour passes."""
    if planes.shape[2] < 3:
        return True
    down, across = planes.shape[0] / shape[0], planes.shape[1] / shape[1]
    sides = [places + side * reach * normal for side in (1, -1)]
    steps = []
    for channel in range(planes.shape[2]):
        levels = [
            _bilinear(planes[..., channel], (p[:, 0] + 0.5) * down - 0.5, (p[:, 1] + 0.5) * across - 0.5) for p in sides
        ]
        logs = [np.log(np.maximum(level, 0) + FLOOR) for level in levels]
        steps.append(float(np.median(logs[0] - logs[1])))
    return max(steps) - min(steps) <= CHROMA * abs(step)


def _taken_out(gray: np.ndarray, start: np.ndarray, normal: np.ndarray, profile: np.ndarray, reach: int) -> np.ndarray:
    """Step 4: `gray` with the edge's brighter side darkened by `profile` and the edge itself bridged."""
    height, width = gray.shape
    ys, xs = np.mgrid[0:height, 0:width]
    distance = (ys - start[0]) * normal[0] + (xs - start[1]) * normal[1]
    offsets = np.arange(-2 * reach, 2 * reach + 1)
    shade = np.interp(distance, offsets, profile) - min(0.0, float(profile[-1]))
    out = ((gray + FLOOR) * np.exp(-shade) - FLOOR).astype(np.float32)  # the step was measured FLOOR above black
    # The transition: where the profile is between TRANSITION and 1 - TRANSITION of its step, a pixel more each side.
    share = profile / profile[-1]
    low = float(offsets[np.flatnonzero(share >= TRANSITION)[0]]) - 1
    high = float(offsets[np.flatnonzero(share <= 1 - TRANSITION)[-1]]) + 1
    band = (distance >= low) & (distance <= high)
    rows, cols, d = ys[band], xs[band], distance[band]
    below = _bilinear(out, rows - (d - low) * normal[0], cols - (d - low) * normal[1])
    above = _bilinear(out, rows + (high - d) * normal[0], cols + (high - d) * normal[1])
    weight = (d - low) / max(high - low, 1e-6)
    out[band] = below * (1 - weight) + above * weight
    return out


def _bilinear(plane: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """float64 [n]: `plane` [H, W] at the points (`rows`, `cols`), bilinearly, points beyond it clamped to its
    edge (scipy.ndimage.map_coordinates with order 1 and mode "nearest", spelled out for shading.js)."""
    height, width = plane.shape
    y, x = np.clip(rows, 0, height - 1), np.clip(cols, 0, width - 1)
    top, left = np.floor(y).astype(np.int64), np.floor(x).astype(np.int64)
    bottom, right = np.minimum(top + 1, height - 1), np.minimum(left + 1, width - 1)
    down, across = y - top, x - left

    def at(row: np.ndarray, col: np.ndarray) -> np.ndarray:  # only the pixels read, in float64
        return plane[row, col].astype(np.float64)

    upper = (1 - across) * at(top, left) + across * at(top, right)
    lower = (1 - across) * at(bottom, left) + across * at(bottom, right)
    return (1 - down) * upper + down * lower
