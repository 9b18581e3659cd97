"use strict";
// fmnist.segmentation in JavaScript, for framing.js: a garment found on a textured, patterned, shaded or coloured
// surface (objectMask), and how far it is turned (tilt). Each function ports the Python function of the same
// name step by step (the numbered steps of its module docstring); scipy.ndimage's filters and morphology and
// Pillow's BOX resize are ported with the semantics those steps use. The parity test (tests/test_web.py) holds
// framing.js, and so this, to Python on the same pixels.
// Loaded as a browser script (window.fmnistSegmentation) or a CommonJS module (node, for the parity test).
(function (root, factory) {
  const api = factory();
  if (typeof module === "object" && module.exports) module.exports = api;
  else root.fmnistSegmentation = api;
})(typeof self !== "undefined" ? self : this, function () {
  const CONSTANTS = {
    SEGMENT_SIDE: 128,
    SMOOTH: 2,
    TEXTURE: 3,
    RING: 3,
    FIT_ROUNDS: 4,
    CHI2: 13.28,
    THRESHOLD: 2.0,
    CLOSE: 2,
    MIN_AREA: 0.005,
    VARIANCE_FLOOR: 1.0,
    MAX_TILT: 30.0,
    TILT_STEP: 1.0,
    TILT_COARSE: 3.0,
    TILT_SIDE: 48,
    SYMMETRIC: 0.9,
    SYMMETRY_GAIN: 0.02,
    SOLE_BAND: 0.05,
    SOLE_GAIN: 0.1,
    TILT_GAIN: 0.04,
  };
  const C = CONSTANTS;
  const f32 = Math.fround;

  // Boolean mask (Uint8Array [H * W]) of the object on a surface in `colour` ({planes: [Float32Array(h * w)] x C,
  // w, h}), or null (object_mask).
  function objectMask(colour, width, height, linear) {
    const small = shrunk(colour, linear);
    const features = featuresOf(small);
    const distance = surfaceDistance(features, small.w, small.h, linear);
    const mask = largestPiece(distance, small.w, small.h);
    if (!mask) return null;
    const out = new Uint8Array(width * height);
    for (let y = 0; y < height; y++) {
      const row = Math.min(Math.floor((y * small.h) / height), small.h - 1);
      for (let x = 0; x < width; x++) {
        out[y * width + x] = mask[row * small.w + Math.min(Math.floor((x * small.w) / width), small.w - 1)];
      }
    }
    return out;
  }

  // Step 1: at most SEGMENT_SIDE pixels on the longer side, by Pillow's BOX resize of float32 planes (shrunk).
  function shrunk(colour, linear) {
    const { w, h } = colour;
    const scale = C.SEGMENT_SIDE / Math.max(h, w);
    if (scale >= 1) return colour;
    const sw = Math.max(1, linear.rint(w * scale)), sh = Math.max(1, linear.rint(h * scale));
    return { planes: colour.planes.map((p) => linear.resampleBox(p, w, h, sw, sh)), w: sw, h: sh };
  }

  // scipy.ndimage.uniform_filter1d, mode "nearest", along rows (`alongX`) or columns, float32 in and out:
  // a running mean in float64 over the line extended by its edge values.
  function uniform1d(values, w, h, size, alongX) {
    const out = new Float32Array(values.length);
    const lines = alongX ? h : w, length = alongX ? w : h;
    const step = alongX ? 1 : w, lineStep = alongX ? w : 1, half = size >> 1;
    const line = new Float64Array(length + size - 1);
    for (let l = 0; l < lines; l++) {
      const base = l * lineStep;
      for (let i = 0; i < line.length; i++) {
        line[i] = values[base + Math.min(Math.max(i - half, 0), length - 1) * step];
      }
      let tmp = 0;
      for (let i = 0; i < size; i++) tmp += line[i];
      tmp /= size;
      out[base] = tmp;
      for (let i = 1; i < length; i++) {
        tmp += (line[i + size - 1] - line[i - 1]) / size;
        out[base + i * step] = tmp;
      }
    }
    return out;
  }

  function uniform(values, w, h, size) { // scipy.ndimage.uniform_filter over both axes: rows' axis (y) first
    return uniform1d(uniform1d(values, w, h, size, false), w, h, size, true);
  }

  // Step 2: the box-smoothed channels and the luminance's local standard deviation (_features).
  function featuresOf({ planes, w, h }) {
    const features = planes.map((p) => uniform(p, w, h, 2 * C.SMOOTH + 1));
    const luminance = new Float32Array(w * h);
    for (let i = 0; i < luminance.length; i++) {
      let sum = 0;
      for (const p of planes) sum = f32(sum + p[i]);
      luminance[i] = sum / planes.length;
    }
    const size = 2 * C.TEXTURE + 1;
    const mean = uniform(luminance, w, h, size);
    const square = uniform(luminance.map((v) => v * v), w, h, size);
    features.push(mean.map((m, i) => Math.sqrt(Math.max(f32(square[i] - f32(m * m)), 0))));
    return features;
  }

  // Steps 3-4: each pixel's squared Mahalanobis distance from the ring's surface model, in units of the
  // surface's own threshold (_surface_distance).
  function surfaceDistance(features, w, h, linear) {
    const n = w * h, depth = features.length;
    const design = Array.from({ length: 6 }, () => new Float64Array(n)); // 1, x, y, x^2, y^2, xy (float32)
    const ring = [];
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        const i = y * w + x;
        const gx = f32(f32(x / Math.max(w - 1, 1)) - 0.5), gy = f32(f32(y / Math.max(h - 1, 1)) - 0.5);
        [1, gx, gy, f32(gx * gx), f32(gy * gy), f32(gx * gy)].forEach((t, j) => { design[j][i] = t; });
        if (y < C.RING || y >= h - C.RING || x < C.RING || x >= w - C.RING) ring.push(i);
      }
    }
    const residualAt = (coef, i) => features.map((f, d) => {
      let fitted = 0;
      for (let j = 0; j < 6; j++) fitted += design[j][i] * coef[d][j];
      return f32(f[i] - f32(fitted));
    });
    const mahalanobis = (r, precision) => {
      let s = 0;
      for (let j = 0; j < depth; j++) for (let k = 0; k < depth; k++) s += r[j] * precision[j][k] * r[k];
      return s;
    };
    let inliers = ring, coef, precision;
    for (let round = 0; round < C.FIT_ROUNDS; round++) {
      const pick = (array) => Float64Array.from(inliers, (i) => array[i]);
      coef = features.map((f) => linear.leastSquares(...linear.householder(design.map(pick), pick(f))));
      const inlierSet = new Set(inliers);
      const residuals = ring.map((i) => residualAt(coef, i));
      precision = precisionOf(residuals.filter((_, r) => inlierSet.has(ring[r])), depth);
      const kept = ring.filter((_, r) => mahalanobis(residuals[r], precision) <= C.CHI2);
      if (kept.length < 12) break;
      inliers = kept;
    }
    // Every pixel's residual from the trend, summed term by term in float32 with float32 coefficients.
    const coef32 = coef.map((c) => c.map(f32));
    const distance = new Float64Array(n);
    const residual = new Float64Array(depth);
    for (let i = 0; i < n; i++) {
      for (let d = 0; d < depth; d++) {
        let trend = 0;
        for (let j = 0; j < 6; j++) trend = f32(trend + f32(design[j][i] * coef32[d][j]));
        residual[d] = f32(features[d][i] - trend);
      }
      distance[i] = mahalanobis(residual, precision);
    }
    const inside = Float64Array.from(inliers, (i) => mahalanobis(residualAt(coef, i), precision));
    const limit = C.THRESHOLD * Math.max(C.CHI2, inside.length ? linear.quantile(inside, 0.99) : C.CHI2);
    return distance.map((d) => d / limit);
  }

  // The inverse of the residuals' covariance (np.cov, n - 1) plus VARIANCE_FLOOR on its diagonal (_precision).
  function precisionOf(rows, depth) {
    const cov = Array.from({ length: depth }, (_, j) => Float64Array.from({ length: depth }, (_, k) => +(j === k)));
    if (rows.length > 1) {
      const mean = new Float64Array(depth);
      for (const r of rows) for (let j = 0; j < depth; j++) mean[j] += r[j];
      for (let j = 0; j < depth; j++) mean[j] /= rows.length;
      for (let j = 0; j < depth; j++) {
        for (let k = 0; k < depth; k++) {
          let s = 0;
          for (const r of rows) s += (r[j] - mean[j]) * (r[k] - mean[k]);
          cov[j][k] = s / (rows.length - 1);
        }
      }
    }
    for (let j = 0; j < depth; j++) cov[j][j] += C.VARIANCE_FLOOR;
    return inverse(cov);
  }

  function inverse(matrix) { // Gauss-Jordan with partial pivoting
    const n = matrix.length;
    const a = matrix.map((row, i) => [...row, ...Array.from({ length: n }, (_, j) => +(i === j))]);
    for (let c = 0; c < n; c++) {
      let pivot = c;
      for (let r = c + 1; r < n; r++) if (Math.abs(a[r][c]) > Math.abs(a[pivot][c])) pivot = r;
      [a[c], a[pivot]] = [a[pivot], a[c]];
      const p = a[c][c];
      for (let k = 0; k < 2 * n; k++) a[c][k] /= p;
      for (let r = 0; r < n; r++) {
        if (r === c) continue;
        const factor = a[r][c];
        for (let k = 0; k < 2 * n; k++) a[r][k] -= factor * a[c][k];
      }
    }
    return a.map((row) => row.slice(n));
  }

  // ---- scipy.ndimage's binary morphology on 0/1 masks [h, w] ----------------------------------------------

  const SQUARE = (radius) => {
    const offsets = [];
    for (let dy = -radius; dy <= radius; dy++) for (let dx = -radius; dx <= radius; dx++) offsets.push([dy, dx]);
    return offsets;
  };
  const CROSS = [[0, 0], [-1, 0], [1, 0], [0, -1], [0, 1]];

  // Erosion (every offset set) or dilation (any offset set; the structure is symmetric), border_value 0.
  function morph(mask, w, h, offsets, erode) {
    const out = new Uint8Array(mask.length);
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        let hit = erode;
        for (const [dy, dx] of offsets) {
          const yy = y + dy, xx = x + dx;
          const v = yy >= 0 && yy < h && xx >= 0 && xx < w ? mask[yy * w + xx] : 0;
          if (erode ? !v : v) {
            hit = !erode;
            break;
          }
        }
        out[y * w + x] = hit ? 1 : 0;
      }
    }
    return out;
  }

  // Connected pieces of the set pixels in raster order of their first pixel (scipy.ndimage.label).
  function pieces(mask, w, h, offsets) {
    const labels = new Int32Array(mask.length);
    const sizes = [];
    const stack = [];
    for (let start = 0; start < mask.length; start++) {
      if (!mask[start] || labels[start]) continue;
      const label = sizes.length + 1;
      let size = 0;
      labels[start] = label;
      stack.push(start);
      while (stack.length) {
        const i = stack.pop();
        size++;
        const y = Math.floor(i / w), x = i % w;
        for (const [dy, dx] of offsets) {
          const yy = y + dy, xx = x + dx;
          if (yy < 0 || yy >= h || xx < 0 || xx >= w) continue;
          const j = yy * w + xx;
          if (mask[j] && !labels[j]) {
            labels[j] = label;
            stack.push(j);
          }
        }
      }
      sizes.push(size);
    }
    return { labels, sizes };
  }

  // Step 5 (_largest_piece).
  function largestPiece(distance, w, h) {
    let mask = distance.map((d) => (d > 1 ? 1 : 0));
    mask = morph(morph(Uint8Array.from(mask), w, h, SQUARE(1), true), w, h, SQUARE(1), false); // opening
    mask = morph(morph(mask, w, h, SQUARE(C.CLOSE), false), w, h, SQUARE(C.CLOSE), true); // closing
    const { labels, sizes } = pieces(mask, w, h, SQUARE(1));
    if (!sizes.length) return null;
    let largest = 0;
    sizes.forEach((s, i) => { if (s > sizes[largest]) largest = i; });
    if (sizes[largest] < C.MIN_AREA * distance.length) return null;
    let filled = fillHoles(labels.map((l) => (l === largest + 1 ? 1 : 0)), w, h);
    let shrunkMask = filled;
    for (let i = 0; i < C.TEXTURE - 1; i++) shrunkMask = morph(shrunkMask, w, h, CROSS, true);
    return shrunkMask.some((v) => v) ? shrunkMask : filled;
  }

  // scipy.ndimage.binary_fill_holes: the background not 4-connected to the picture's edge becomes object.
  function fillHoles(mask, w, h) {
    const outside = new Uint8Array(mask.length);
    const stack = [];
    const visit = (i) => {
      if (!mask[i] && !outside[i]) {
        outside[i] = 1;
        stack.push(i);
      }
    };
    for (let x = 0; x < w; x++) { visit(x); visit((h - 1) * w + x); }
    for (let y = 0; y < h; y++) { visit(y * w); visit(y * w + w - 1); }
    while (stack.length) {
      const i = stack.pop();
      const y = Math.floor(i / w), x = i % w;
      if (x > 0) visit(i - 1);
      if (x < w - 1) visit(i + 1);
      if (y > 0) visit(i - w);
      if (y < h - 1) visit(i + w);
    }
    return outside.map((o) => (o ? 0 : 1));
  }

  // Degrees to turn the object of a 0/1 mask [h, w] by (counter-clockwise as displayed, as Pillow's rotate) so
  // that it stands upright, or 0 (tilt): the mask shrunk to TILT_SIDE and turned by `linear.rotated` (Pillow's
  // bilinear rotate) to the angle of its best mirror overlap; else, on a textured surface (`onSurface`), to the
  // angle of its sole; else the angle of its minimum-area box.
  function tilt(mask, w, h, linear, onSurface = false) {
    let count = 0;
    for (let i = 0; i < mask.length; i++) if (mask[i]) count++;
    if (count < 3) return 0;
    let small = { data: Float32Array.from(mask), w, h };
    const scale = C.TILT_SIDE / Math.max(h, w);
    if (scale < 1) {
      const sw = Math.max(1, linear.rint(w * scale)), sh = Math.max(1, linear.rint(h * scale));
      small = { data: linear.resampleBox(small.data, w, h, sw, sh), w: sw, h: sh };
    }
    const planes = new Map();
    const turned = (angle) => {
      if (!planes.has(angle)) planes.set(angle, linear.rotated(small, angle));
      return planes.get(angle);
    };
    const [angle, overlap, upright] = search(turned, mirrorOverlap);
    if (overlap >= C.SYMMETRIC) return overlap - upright > C.SYMMETRY_GAIN ? angle : 0;
    if (!onSurface) return boxTilt(mask, w, h);
    const [soleAngle, sole, uprightSole] = search(turned, (plane) => soleOf(plane, linear));
    return sole > (1 + C.SOLE_GAIN) * uprightSole ? soleAngle : 0;
  }

  // [the angle of the highest score, the smallest such angle on a tie; its score; the upright score] of the mask
  // turned every TILT_COARSE degrees, then every TILT_STEP around the best (_search).
  function search(turned, score) {
    const scores = new Map();
    const best = () => {
      let found = null;
      for (const a of [...scores.keys()].sort((x, y) => x - y)) {
        if (found === null || scores.get(a) > scores.get(found)) found = a;
      }
      return found;
    };
    for (let a = -C.MAX_TILT; a <= C.MAX_TILT + C.TILT_COARSE / 2; a += C.TILT_COARSE) scores.set(a, score(turned(a)));
    const coarse = best();
    for (let a = coarse - C.TILT_COARSE + C.TILT_STEP; a < coarse + C.TILT_COARSE - C.TILT_STEP / 2; a += C.TILT_STEP) {
      if (Math.abs(a) <= C.MAX_TILT && !scores.has(a)) scores.set(a, score(turned(a)));
    }
    const found = best();
    return [found, scores.get(found), scores.get(0)];
  }

  // The share of a coverage plane that its mirror image about its centroid column covers (_mirror_overlap).
  function mirrorOverlap({ data, w, h }) {
    const columns = new Float64Array(w);
    for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) columns[x] += data[y * w + x];
    let total = 0, moment = 0;
    for (let x = 0; x < w; x++) {
      total += columns[x];
      moment += columns[x] * x;
    }
    const twice = (2 * moment) / total; // the mirror takes column x to column twice - x
    const low = Math.floor(twice), share = twice - low;
    const column = (y, c) => (c >= 0 && c < w ? data[y * w + c] : 0);
    let sum = 0;
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        sum += Math.min(data[y * w + x], (1 - share) * column(y, low - x) + share * column(y, low + 1 - x));
      }
    }
    return sum / total;
  }

  // Pixels of a coverage plane over one half in the lowest SOLE_BAND of the rows that hold any, per row (_sole).
  function soleOf({ data, w, h }, linear) {
    let first = -1, last = -1;
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        if (data[y * w + x] > 0.5) {
          if (first < 0) first = y;
          last = y;
          break;
        }
      }
    }
    if (first < 0) return 0;
    const band = Math.max(1, linear.rint(C.SOLE_BAND * (last - first + 1)));
    let count = 0;
    for (let y = last - band + 1; y <= last; y++) for (let x = 0; x < w; x++) if (data[y * w + x] > 0.5) count++;
    return count / band;
  }

  // The angle of the object's minimum-area bounding box, or 0 (_box_tilt). The extremes of a turned point set
  // are those of its convex hull, so the bounding boxes are taken over the edge pixels themselves.
  function boxTilt(mask, w, h) {
    const inner = morph(mask, w, h, CROSS, true);
    const xs = [], ys = [];
    for (let i = 0; i < mask.length; i++) {
      if (mask[i] && !inner[i]) {
        xs.push(i % w);
        ys.push(-Math.floor(i / w));
      }
    }
    if (xs.length < 3 || collinear(xs, ys)) return 0;
    const count = Math.round((2 * C.MAX_TILT) / C.TILT_STEP) + 1;
    const areas = [], angles = [];
    for (let a = 0; a < count; a++) {
      const angle = -C.MAX_TILT + a * C.TILT_STEP;
      const radians = angle * (Math.PI / 180);
      const cos = Math.cos(radians), sin = Math.sin(radians);
      let minX = Infinity, maxX = -Infinity, minY = Infinity, maxY = -Infinity;
      for (let i = 0; i < xs.length; i++) {
        const tx = xs[i] * cos - ys[i] * sin, ty = xs[i] * sin + ys[i] * cos;
        if (tx < minX) minX = tx;
        if (tx > maxX) maxX = tx;
        if (ty < minY) minY = ty;
        if (ty > maxY) maxY = ty;
      }
      angles.push(angle);
      areas.push((maxX - minX) * (maxY - minY));
    }
    const upright = areas[Math.floor(count / 2)];
    let best = 0;
    areas.forEach((area, i) => { if (area < areas[best]) best = i; });
    return areas[best] < (1 - C.TILT_GAIN) * upright ? angles[best] : 0;
  }

  function collinear(xs, ys) { // no hull: Qhull refuses points on one line
    for (let i = 2; i < xs.length; i++) {
      if ((xs[1] - xs[0]) * (ys[i] - ys[0]) !== (ys[1] - ys[0]) * (xs[i] - xs[0])) return false;
    }
    return true;
  }

  return { CONSTANTS, objectMask, tilt, pieces, fillHoles, morph, SQUARE };
});
