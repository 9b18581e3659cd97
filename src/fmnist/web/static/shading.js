"use strict";
// fmnist.shading in JavaScript, for framing.js: a straight edge of light across a photo (a hard shadow, a window's
// light) found and taken out of its luminance (withoutLightEdge). Each function ports the Python function of the
// same name step by step (the numbered steps of its module docstring), in the same float64/float32 precision;
// scipy's maximum_filter1d (mode "wrap") and numpy's interp are ported with the semantics those steps use.
// The parity test (tests/test_web.py) holds framing.js, and so this, to Python on the same pixels.
// Loaded as a browser script before framing.js (window.fmnistShading) or a CommonJS module (node).
(function (root, factory) {
  if (typeof module === "object" && module.exports) module.exports = factory();
  else root.fmnistShading = factory();
})(typeof self !== "undefined" ? self : this, function () {
  const CONSTANTS = {
    FLOOR: 2.0,
    MIN_STEP: 0.1,
    FLANK_SHARE: 1 / 64,
    MIN_FLANK: 6,
    FLAT: 0.04,
    SHARPNESS: 20.0,
    GAPS: [2, 6, 16],
    MAX_STEPS: 4,
    SHARPEST: 0.9,
    MATCH: 0.35,
    TOLERANCE: 0.04,
    AGREE: 0.5,
    SAMPLES: 48,
    CHORD_ENDS: 0.08,
    REACH: 3,
    MIN_CHORD: 16,
    TRANSITION: 0.05,
    CHROMA: 0.5,
    EDGES: 2,
  };
  const C = CONSTANTS;
  const f32 = Math.fround;

  // `gray` (Float32Array [h * w]) with the strongest straight edge of light taken out, as a new array, or null
  // (without_light_edge). `smooth`: gray's box mean; `border`: [ys, xs] going round; `linear`: framing.js's
  // arithmetic (quantile); `colour`: gives the picture's colour planes ({planes, w, h}), asked for only when a chord
  // is found.
  function withoutLightEdge(gray, smooth, w, h, border, linear, colour) {
    if (Math.min(h, w) < C.MIN_CHORD) return null;
    const [ys, xs] = border;
    const n = ys.length;
    const values = new Float64Array(n);
    for (let k = 0; k < n; k++) values[k] = Math.log(Math.max(smooth[ys[k] * w + xs[k]], 0) + C.FLOOR);
    const places = borderPlaces(values);
    let best = null;
    for (let i = 0; i < places.length; i++) {
      const [a, stepA, gapA] = places[i];
      for (let j = i + 1; j < places.length; j++) {
        const [b, stepB, gapB] = places[j];
        if (stepA * stepB >= 0 || Math.abs(stepA + stepB) > C.MATCH * Math.max(Math.abs(stepA), Math.abs(stepB))) {
          continue;
        }
        if (sides(ys[a], xs[a], h, w) & sides(ys[b], xs[b], h, w)) continue;
        const ends = [[ys[a], xs[a]], [ys[b], xs[b]]];
        const found = edge(smooth, w, h, ends, Math.max(gapA, gapB), Math.abs(stepA), linear, colour);
        if (found && (!best || found.score > best.score)) best = found;
      }
    }
    return best ? takenOut(gray, w, h, best) : null;
  }

  function flankOf(n) {
    return Math.max(C.MIN_FLANK, Math.trunc(n * C.FLANK_SHARE));
  }

  function apart(a, b, n) {
    return Math.min(Math.abs(a - b), n - Math.abs(a - b));
  }

  // Step 1: [border index, step, gap] of each place where the light steps, none when more than MAX_STEPS; each at
  // the border's steepest pixel, with the sharpest gap that holds SHARPEST of its step (_border_places).
  function borderPlaces(values) {
    const steps = borderSteps(values), n = values.length, flank = flankOf(n);
    const places = [];
    for (const step of steps) {
      if (places.every(([k, , g]) => apart(step[0], k, n) > step[2] + flank + g)) places.push(step);
    }
    if (places.length > C.MAX_STEPS) return [];
    return places.map(([place, strongest, widest]) => {
      let chosen = null;
      for (const [k, step, gap] of steps) {
        if (apart(k, place, n) > widest + flank + gap || step * strongest <= 0) continue;
        if (Math.abs(step) < C.SHARPEST * Math.abs(strongest)) continue;
        if (!chosen || gap < chosen[2]) chosen = [k, step, gap]; // the first of the sharpest, as Python's min
      }
      return [steepest(values, chosen[0], chosen[2]), chosen[1], chosen[2]];
    });
  }

  // The border index within gap + 1 of `index` where the values change most between a pixel's two neighbours; the
  // first of equals (_steepest).
  function steepest(values, index, gap) {
    const n = values.length, wrap = (i) => ((i % n) + n) % n;
    let best = -1, at = index;
    for (let d = -gap - 1; d <= gap + 1; d++) {
      const k = wrap(index + d), change = Math.abs(values[wrap(k + 1)] - values[wrap(k - 1)]);
      if (change > best) [best, at] = [change, k];
    }
    return at;
  }

  // [border index, step, gap] of each step of light on the border (_border_steps), strongest first.
  function borderSteps(values) {
    const n = values.length, flank = flankOf(n);
    const sums = new Float64Array(3 * n + 1), squares = new Float64Array(3 * n + 1);
    for (let i = 0; i < 3 * n; i++) {
      const v = values[i % n];
      sums[i + 1] = sums[i] + v;
      squares[i + 1] = squares[i] + v * v;
    }
    const flankAt = (first) => {
      const mean = (sums[first + flank] - sums[first]) / flank;
      const spread = Math.sqrt(Math.max((squares[first + flank] - squares[first]) / flank - mean * mean, 0.0));
      return [mean, spread];
    };
    const found = [];
    for (const gap of C.GAPS) {
      const step = new Float64Array(n), strength = new Float64Array(n);
      for (let k = 0; k < n; k++) {
        const [before, spreadBefore] = flankAt(k + n - gap - flank), [after, spreadAfter] = flankAt(k + n + gap + 1);
        step[k] = after - before;
        const s = Math.abs(step[k]);
        strength[k] = Math.max(spreadBefore, spreadAfter) > Math.min(C.FLAT, s / C.SHARPNESS) ? 0.0 : s;
      }
      const half = gap + flank; // scipy's maximum_filter1d(size 2 * half + 1, mode "wrap")
      for (let k = 0; k < n; k++) {
        if (strength[k] < C.MIN_STEP) continue;
        let peak = true;
        for (let d = -half; d <= half && peak; d++) peak = strength[(((k + d) % n) + n) % n] <= strength[k];
        if (peak) found.push([k, step[k], gap]);
      }
    }
    return found.sort((p, q) => Math.abs(q[1]) - Math.abs(p[1])); // stable, as Python's sorted
  }

  // The picture's sides a border pixel lies on, as bits (top, right, bottom, left) (_sides).
  function sides(y, x, h, w) {
    return (y === 0 ? 1 : 0) | (x === w - 1 ? 2 : 0) | (y === h - 1 ? 4 : 0) | (x === 0 ? 8 : 0);
  }

  // Steps 2 and 3 for the chord between `ends` ([row, column] each): { score, start, normal, profile, reach } or null
  // (_edge).
  function edge(smooth, w, h, [start, end], gap, size, linear, colour) {
    const dy = end[0] - start[0], dx = end[1] - start[1];
    const length = Math.sqrt(dy ** 2 + dx ** 2);
    if (length < C.MIN_CHORD) return null;
    const normal = [-(dx / length), dy / length];
    const reach = gap + C.REACH;
    const spacing = (1 - C.CHORD_ENDS - C.CHORD_ENDS) / (C.SAMPLES - 1); // np.linspace
    const places = Array.from({ length: C.SAMPLES }, (_, i) => {
      const t = i === C.SAMPLES - 1 ? 1 - C.CHORD_ENDS : i * spacing + C.CHORD_ENDS;
      return [start[0] + t * dy, start[1] + t * dx];
    });
    const logAt = ([y, x], offset) => Math.log(
      Math.max(bilinear(smooth, w, h, y + offset * normal[0], x + offset * normal[1]), 0) + C.FLOOR,
    );
    const differences = Float64Array.from(places, (p) => logAt(p, reach) - logAt(p, -reach));
    const step = linear.quantile(differences, 0.5);
    const tolerance = Math.max(C.MATCH * Math.abs(step), C.TOLERANCE);
    const agreeing = places.filter((_, i) => Math.abs(differences[i] - step) <= tolerance);
    if (Math.abs(Math.abs(step) - size) > C.MATCH * size || agreeing.length / C.SAMPLES < C.AGREE) return null;
    const profile = new Float64Array(4 * reach + 1), column = new Float64Array(agreeing.length);
    for (let o = 0; o < profile.length; o++) {
      agreeing.forEach((p, i) => { column[i] = logAt(p, o - 2 * reach) - logAt(p, -2 * reach); });
      profile[o] = linear.quantile(column, 0.5);
    }
    for (let o = 1; o < profile.length; o++) {
      profile[o] = step > 0 ? Math.max(profile[o], profile[o - 1]) : Math.min(profile[o], profile[o - 1]);
    }
    if (Math.abs(profile[profile.length - 1] - step) > C.MATCH * Math.abs(step)) return null;
    if (colour && !neutral(colour(), w, h, agreeing, normal, reach, step, linear)) return null;
    return { score: (agreeing.length / C.SAMPLES) * Math.abs(step), start, normal, profile, reach };
  }

  // Whether the step across the chord is the same in each colour channel, within CHROMA of `step` (_neutral).
  function neutral({ planes, w: pw, h: ph }, w, h, places, normal, reach, step, linear) {
    if (planes.length < 3) return true;
    const down = ph / h, across = pw / w;
    const steps = planes.map((plane) => {
      const logAt = ([y, x], side) => Math.log(Math.max(bilinear(
        plane, pw, ph, (y + side * reach * normal[0] + 0.5) * down - 0.5, (x + side * reach * normal[1] + 0.5) * across - 0.5,
      ), 0) + C.FLOOR);
      return linear.quantile(Float64Array.from(places, (p) => logAt(p, 1) - logAt(p, -1)), 0.5);
    });
    return Math.max(...steps) - Math.min(...steps) <= C.CHROMA * Math.abs(step);
  }

  // Step 4: the brighter side darkened by the profile, the edge itself bridged (_taken_out).
  function takenOut(gray, w, h, { start, normal, profile, reach }) {
    const last = profile[profile.length - 1], lift = Math.min(0.0, last);
    const out = new Float32Array(gray.length), distance = new Float64Array(gray.length);
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        const i = y * w + x, d = (y - start[0]) * normal[0] + (x - start[1]) * normal[1];
        distance[i] = d;
        out[i] = f32(f32(gray[i] + C.FLOOR) * Math.exp(-(interp(d, -2 * reach, profile) - lift)) - C.FLOOR);
      }
    }
    let first = -1, final = -1;
    for (let o = 0; o < profile.length; o++) {
      const share = profile[o] / last;
      if (first < 0 && share >= C.TRANSITION) first = o;
      if (share <= 1 - C.TRANSITION) final = o;
    }
    const low = first - 2 * reach - 1, high = final - 2 * reach + 1;
    const bridged = [];
    for (let i = 0; i < gray.length; i++) {
      const d = distance[i];
      if (d < low || d > high) continue;
      const y = Math.trunc(i / w), x = i % w;
      const below = bilinear(out, w, h, y - (d - low) * normal[0], x - (d - low) * normal[1]);
      const above = bilinear(out, w, h, y + (high - d) * normal[0], x + (high - d) * normal[1]);
      const weight = (d - low) / Math.max(high - low, 1e-6);
      bridged.push([i, below * (1 - weight) + above * weight]);
    }
    for (const [i, v] of bridged) out[i] = f32(v);
    return out;
  }

  // np.interp at `x` of `profile` at the offsets first, first + 1, ...: its end values beyond them.
  function interp(x, first, profile) {
    const at = x - first, last = profile.length - 1;
    if (at <= 0) return profile[0];
    if (at >= last) return profile[last];
    const j = Math.floor(at);
    return (profile[j + 1] - profile[j]) * (x - (first + j)) + profile[j];
  }

  // `plane` [h * w] at (y, x), bilinearly, clamped to its edge, in float64 (_bilinear).
  function bilinear(plane, w, h, yIn, xIn) {
    const y = Math.min(Math.max(yIn, 0), h - 1), x = Math.min(Math.max(xIn, 0), w - 1);
    const top = Math.floor(y), left = Math.floor(x);
    const bottom = Math.min(top + 1, h - 1), right = Math.min(left + 1, w - 1);
    const down = y - top, across = x - left;
    const upper = (1 - across) * plane[top * w + left] + across * plane[top * w + right];
    const lower = (1 - across) * plane[bottom * w + left] + across * plane[bottom * w + right];
    return (1 - down) * upper + down * lower;
  }

  return { CONSTANTS, withoutLightEdge };
});
