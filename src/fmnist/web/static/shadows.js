"use strict";
// fmnist.shadows in JavaScript, for framing.js: the drop shadow an object casts on its backdrop, found and taken out
// of the picture's contrast (withoutShadow). Each function ports the Python function of the same name step by step
// (the numbered steps of its module docstring); scipy.ndimage's Gaussian filter and map_coordinates (order 1) are
// ported with the semantics those steps use, and the correlations that Python takes by FFT are summed directly.
// The parity test (tests/test_web.py) holds framing.js, and so this, to Python on the same pixels.
// Loaded as a browser script after segmentation.js (window.fmnistShadows) or a CommonJS module (node).
(function (root, factory) {
  if (typeof module === "object" && module.exports) module.exports = factory(require("./segmentation.js"));
  else root.fmnistShadows = factory(root.fmnistSegmentation);
})(typeof self !== "undefined" ? self : this, function (segmentation) {
  const CONSTANTS = {
    ANALYSIS_SIDE: 64,
    PAD: 0.1,
    CORE: 0.3,
    BLURS: [2.0, 3.0, 4.0],
    SHARP: 1.0,
    MAX_SHIFT: 8,
    MIN_SHIFT: 2.0,
    EXPLAINED: 0.25,
    OVERLAP: 1e-6,
  };
  const C = CONSTANTS;
  const f32 = Math.fround;

  // `contrast` (Float32Array [h * w]) with the drop shadow cast by the object of `mask` (0/1 [h * w]) taken out, as a
  // new array, or null (without_shadow). `linear`: framing.js's arithmetic (rint, quantile, resampleBox, objectBox).
  function withoutShadow(contrast, mask, w, h, linear) {
    const box = linear.objectBox(mask, w, h);
    if (!box) return null;
    const [rowFirst, rowEnd, colFirst, colEnd] = box;
    const pad = Math.trunc(C.PAD * Math.max(rowEnd - rowFirst, colEnd - colFirst)) + 1;
    const top = Math.max(rowFirst - pad, 0), bottom = Math.min(rowEnd + pad, h);
    const left = Math.max(colFirst - pad, 0), right = Math.min(colEnd + pad, w);
    const ww = right - left, wh = bottom - top;
    if (Math.max(wh, ww) < C.ANALYSIS_SIDE) return null;
    const window = new Float32Array(ww * wh);
    for (let y = 0; y < wh; y++) {
      for (let x = 0; x < ww; x++) window[y * ww + x] = Math.max(contrast[(top + y) * w + left + x], 0);
    }
    const small = shrunk(window, ww, wh, linear);
    const found = shadowOf(Float64Array.from(small.data), small.w, small.h, linear);
    if (!found) return null;
    const full = enlarged(found.shadow, small.w, small.h, ww, wh);
    const inside = enlarged(Float64Array.from(found.core), small.w, small.h, ww, wh);
    const out = Float32Array.from(contrast);
    for (let y = 0; y < wh; y++) {
      for (let x = 0; x < ww; x++) {
        const i = y * ww + x;
        if (inside[i] >= 0.5) continue;
        const j = (top + y) * w + left + x;
        out[j] = f32(out[j] - f32(Math.min(full[i], Math.max(out[j], 0))));
      }
    }
    return out;
  }

  // Step 1: at most ANALYSIS_SIDE pixels on the longer side, by Pillow's BOX resize (segmentation.shrunk).
  function shrunk(plane, w, h, linear) {
    const scale = C.ANALYSIS_SIDE / Math.max(h, w);
    if (scale >= 1) return { data: plane, w, h };
    const sw = Math.max(1, linear.rint(w * scale)), sh = Math.max(1, linear.rint(h * scale));
    return { data: linear.resampleBox(plane, w, h, sw, sh), w: sw, h: sh };
  }

  // Steps 2-4 on the analysis plane: {shadow: the fitted s * S_v, core: 0/1} or null (_shadow).
  function shadowOf(plane, w, h, linear) {
    const peak = linear.quantile(plane, 0.999); // np.quantile(plane, 0.999)
    if (peak <= 0) return null;
    const core = segmentation.fillHoles(plane.map((v) => (v > C.CORE * peak ? 1 : 0)), w, h);
    const near = segmentation.morph(core, w, h, segmentation.SQUARE(1), false);
    const weighted = new Float64Array(w * h), beside = new Float64Array(w * h);
    let total = 0;
    for (let i = 0; i < plane.length; i++) {
      if (near[i]) continue;
      beside[i] = 1;
      weighted[i] = plane[i];
      total += plane[i] * plane[i];
    }
    if (total <= 0) return null;
    const span = 2 * C.MAX_SHIFT + 1;
    const coreValues = Float64Array.from(core);
    const blurs = [C.SHARP, ...C.BLURS];
    const fitted = blurs.map((blur) => {
      const soft = blurred(coreValues, w, h, blur);
      return { along: correlations(weighted, soft, w, h), energy: correlations(beside, soft.map((v) => v * v), w, h) };
    });
    let most = 0;
    for (const { energy } of fitted) for (const e of energy) if (e > most) most = e;
    let best = { left: Infinity, blur: 0, level: 0, dy: 0, dx: 0 };
    for (const [b, blur] of blurs.entries()) {
      const { along, energy } = fitted[b];
      let k = -1, least = Infinity;
      for (let i = 0; i < span * span; i++) {
        const dy = Math.floor(i / span) - C.MAX_SHIFT, dx = (i % span) - C.MAX_SHIFT;
        if (!(along[i] > 0 && energy[i] > C.OVERLAP * most && Math.hypot(dy, dx) >= C.MIN_SHIFT)) continue;
        const left = total - (along[i] * along[i]) / energy[i];
        if (left < least) [least, k] = [left, i];
      }
      if (k >= 0 && least < best.left) {
        best = {
          left: least, blur, level: along[k] / energy[k],
          dy: Math.floor(k / span) - C.MAX_SHIFT, dx: (k % span) - C.MAX_SHIFT,
        };
      }
    }
    if (best.blur === C.SHARP || !(best.left <= C.EXPLAINED * total)) return null; // sharper than a shadow
    const moved = translated(blurred(coreValues, w, h, best.blur), w, h, best.dy, best.dx);
    return { shadow: moved.map((v) => best.level * v), core };
  }

  // scipy.ndimage.gaussian_filter, mode "constant" (zero beyond the plane), truncated at 4 sigma: rows' axis first,
  // each line as correlate1d sums a symmetric kernel (the centre, then each pair of taps from the outermost inward).
  function blurred(plane, w, h, sigma) {
    const radius = Math.trunc(4.0 * sigma + 0.5);
    const weights = new Float64Array(2 * radius + 1);
    let sum = 0;
    for (let j = -radius; j <= radius; j++) {
      weights[j + radius] = Math.exp((-0.5 / (sigma * sigma)) * j * j);
      sum += weights[j + radius];
    }
    for (let j = 0; j < weights.length; j++) weights[j] /= sum;
    const pass = (values, alongX) => {
      const out = new Float64Array(values.length);
      const lines = alongX ? h : w, length = alongX ? w : h, step = alongX ? 1 : w, lineStep = alongX ? w : 1;
      for (let l = 0; l < lines; l++) {
        const base = l * lineStep;
        const at = (i) => (i < 0 || i >= length ? 0 : values[base + i * step]);
        for (let i = 0; i < length; i++) {
          let tmp = at(i) * weights[radius];
          for (let j = radius; j >= 1; j--) tmp += (at(i - j) + at(i + j)) * weights[radius - j];
          out[base + i * step] = tmp;
        }
      }
      return out;
    };
    return pass(pass(plane, false), true);
  }

  // `plane` moved by dy rows down and dx columns right, zero where it was not (_translated).
  function translated(plane, w, h, dy, dx) {
    const out = new Float64Array(plane.length);
    for (let y = Math.max(dy, 0); y < h + Math.min(dy, 0); y++) {
      for (let x = Math.max(dx, 0); x < w + Math.min(dx, 0); x++) out[y * w + x] = plane[(y - dy) * w + x - dx];
    }
    return out;
  }

  // [(2 MAX_SHIFT + 1)^2], row-major over (dy, dx): the sum over pixels of weighted[y, x] * shadow[y - dy, x - dx]
  // (_correlations).
  function correlations(weighted, shadow, w, h) {
    const span = 2 * C.MAX_SHIFT + 1;
    const out = new Float64Array(span * span);
    for (let dy = -C.MAX_SHIFT; dy <= C.MAX_SHIFT; dy++) {
      for (let dx = -C.MAX_SHIFT; dx <= C.MAX_SHIFT; dx++) {
        let sum = 0;
        for (let y = Math.max(dy, 0); y < h + Math.min(dy, 0); y++) {
          const row = y * w, from = (y - dy) * w - dx;
          for (let x = Math.max(dx, 0); x < w + Math.min(dx, 0); x++) sum += weighted[row + x] * shadow[from + x];
        }
        out[(dy + C.MAX_SHIFT) * span + dx + C.MAX_SHIFT] = sum;
      }
    }
    return out;
  }

  // `plane` [h * w] resampled to [height * width] bilinearly at pixel centres, clamped at the edges: between two rows,
  // then between two columns (_enlarged).
  function enlarged(plane, w, h, width, height) {
    const taps = (size, outSize) => Array.from({ length: outSize }, (_, i) => {
      const at = Math.min(Math.max(((i + 0.5) * size) / outSize - 0.5, 0), size - 1), low = Math.floor(at);
      return [low, Math.min(low + 1, size - 1), at - low];
    });
    const columns = taps(w, width);
    const out = new Float64Array(width * height), row = new Float64Array(w);
    taps(h, height).forEach(([top, bottom, down], r) => {
      for (let x = 0; x < w; x++) row[x] = (1 - down) * plane[top * w + x] + down * plane[bottom * w + x];
      columns.forEach(([left, right, across], c) => {
        out[r * width + c] = (1 - across) * row[left] + across * row[right];
      });
    });
    return out;
  }

  return { CONSTANTS, withoutShadow };
});
