"use strict";
// fmnist.images' framing in JavaScript, for the page that runs in the browser (fmnist export --web): a decoded
// picture (RGBA bytes) becomes the uint8 28x28 view the model sees and the picture cues the not-a-garment
// detector weighs, as `load_picture` makes them in Python. Each function below ports the Python function of
// the same name (snake_case there), step by step and in the same float32/float64 precision, so that the
// parity test (tests/test_web.py) can hold both to the same answers on the same pixels. Pillow's LANCZOS
// resize with reducing_gap=3.0 and its 8-bit grey conversions are ported too (libImaging Resample.c,
// Reduce.c, Convert.c): they decide pixel values before any threshold does.
// A picture on a textured surface is separated from it by segmentation.js (fmnist.segmentation), a drop shadow taken
// out by shadows.js (fmnist.shadows) and an edge of light by shading.js (fmnist.shading).
// Loaded as a browser script after those three (window.fmnistFraming) or a CommonJS module (node).
(function (root, factory) {
  if (typeof module === "object" && module.exports) {
    module.exports = factory(require("./segmentation.js"), require("./shadows.js"), require("./shading.js"));
  } else root.fmnistFraming = factory(root.fmnistSegmentation, root.fmnistShadows, root.fmnistShading);
})(typeof self !== "undefined" ? self : this, function (segmentation, shadows, shading) {
  // fmnist.images' constants; the parity test checks each against Python's.
  const CONSTANTS = {
    SIDE: 28,
    MAX_PIXELS: 50_000_000,
    WORK_SIDE: 512,
    SMOOTH_RADIUS: 2,
    NOISE_SIGMAS: 5.0,
    MIN_CONTRAST: 3.0,
    PEAK_FRACTION: 0.06,
    BACKGROUND_BAND: 40.0,
    ONE_SIDE: 0.02,
    ONE_SIDE_BAND: 24.0,
    FLAT_BAND: 6.0,
    DIGITAL_NOISE: 2.0,
    DIGITAL_OBJECT: 8.0,
    FAINT: 0.5,
    FADE: 0.9,
    GRADED: 0.5,
    SPECK: 5,
    DIGITAL_PIECES: 16,
    MARGIN_SPAN: 26 / 28,
    GRID_ERROR: 0.24,
    GRID_SPAN: 16,
    GRID_FACTOR: 3,
    DIGITAL_CONTRAST: 128.0,
    GRID_CONTRAST: 40.0,
    FULL_PEAK: 250.0,
    DATASET_BLACK: 8,
    SILHOUETTE_FLOOR: 0.25,
    CAPTION_HEIGHT: 0.2,
    CAPTION_PIECES: 3,
    CAPTION_GAP: 3,
    THIN_PART: 1 / 56,
    THIN_KEEP: 0.5,
    FACING: 0.1,
    FACING_LEVEL: 25,
    PAIR_SHARE: 0.95,
    PAIR_BALANCE: 0.5,
    PAIR_OVERLAP: 0.5,
    PAIR_ASPECT: 0.9,
    SURFACE_NOISE: 6.0,
    SURFACE_FIT: 0.8,
    SURFACE_MIN_NOISE: 1.0,
    SHADED_NOISE: 0.3,
    SHADING: 40.0,
    SURFACE_PIECES: 6,
    PIECE_RUN: 8,
    FRAME_FLAT: 0.5,
    FRAME_GAP: 2,
    FRAME_MARKS: 8,
    FRAME_TICKS: 0.25,
    FRAME_SQUARE: 2,
    CANVAS_FLAT: 0.9,
    INNER_BAND: 16.0,
    CANVAS_APART: 128.0,
    CANVAS_STEP: 24.0,
    INNER_SIDE: 8,
    INNER_ASPECT: 1.5,
    INNER_EDGE: 0.8,
    INNER_BACKGROUND: 0.1,
    INNER_SPAN: 1 / 3,
    INNER_RIM: 3,
    PLAIN_ROUNDS: 6,
    CLIPPED_BAND: 2.0,
    CLIPPED_WEIGHT: 1e-3,
    FIT_ROUNDS: 50,
    SETTLED: 0.05,
    CENSORED_GAIN: 0.15,
  };
  const C = CONSTANTS;
  const SIDE = C.SIDE;
  const CUE_NAMES = ["border_fit", "noise", "coverage", "fill", "largest_part"];
  const f32 = Math.fround;

  // ---- numpy's arithmetic ------------------------------------------------------------------------------

  function rint(x) { // round half to even, as np.rint and Python's round()
    const r = Math.round(x);
    return r - x === 0.5 && r % 2 !== 0 ? r - 1 : r;
  }

  // np.quantile's "linear" method, with a selection (Hoare's quickselect) in place of a sort: O(n).
  function quantile(values, q, inPlace = false) { // inPlace: `values`, a Float64Array, may be reordered
    const a = inPlace ? values : Float64Array.from(values);
    const index = q * (a.length - 1);
    const lo = Math.floor(index);
    const t = index - lo;
    const low = select(a, lo);
    if (lo + 1 >= a.length) return low;
    let high = Infinity; // after the selection, everything past `lo` is at least a[lo]
    for (let i = lo + 1; i < a.length; i++) if (a[i] < high) high = a[i];
    const diff = high - low;
    return t >= 0.5 ? high - diff * (1 - t) : low + diff * t;
  }

  function select(a, k) { // the k-th smallest value of `a` (reordered in place)
    let left = 0, right = a.length - 1;
    while (right > left) {
      const pivot = a[(left + right) >> 1];
      let i = left, j = right;
      while (i <= j) {
        while (a[i] < pivot) i++;
        while (a[j] > pivot) j--;
        if (i <= j) {
          const swap = a[i];
          a[i++] = a[j];
          a[j--] = swap;
        }
      }
      if (k <= j) right = j;
      else if (k >= i) left = i;
      else break;
    }
    return a[k];
  }

  function median(values) {
    return quantile(values, 0.5);
  }

  function maxOf(values) {
    let m = -Infinity;
    for (let i = 0; i < values.length; i++) if (values[i] > m) m = values[i];
    return m;
  }

  // ---- Pillow: grey levels, premultiplied alpha, reduce and LANCZOS resize -------------------------------

  function luminance(r, g, b) { // Convert.c L24: ITU-R 601-2 luma in 16-bit fixed point
    return (r * 19595 + g * 38470 + b * 7471 + 0x8000) >>> 16;
  }

  function muldiv255(a, b) {
    const t = a * b + 128;
    return ((t >> 8) + t) >> 8;
  }

  const sinc = (v) => (v === 0 ? 1 : Math.sin(v * Math.PI) / (v * Math.PI));
  const LANCZOS = { support: 3, at: (x) => (x >= -3 && x < 3 ? sinc(x) * sinc(x / 3) : 0) };
  const BOX = { support: 0.5, at: (x) => (x > -0.5 && x <= 0.5 ? 1 : 0) };

  function coefficients(inSize, in0, in1, outSize, filter) { // Resample.c precompute_coeffs
    const scale = f32(in1 - in0) / outSize;
    const filterscale = Math.max(scale, 1);
    const support = filter.support * filterscale;
    const ksize = Math.ceil(support) * 2 + 1;
    const bounds = new Int32Array(outSize * 2);
    const kk = new Float64Array(outSize * ksize);
    for (let xx = 0; xx < outSize; xx++) {
      const center = in0 + (xx + 0.5) * scale;
      const ss = 1 / filterscale;
      const xmin = Math.max(Math.trunc(center - support + 0.5), 0);
      const xmax = Math.min(Math.trunc(center + support + 0.5), inSize) - xmin;
      let ww = 0;
      for (let x = 0; x < xmax; x++) {
        const w = filter.at((x + xmin - center + 0.5) * ss);
        kk[xx * ksize + x] = w;
        ww += w;
      }
      if (ww !== 0) for (let x = 0; x < xmax; x++) kk[xx * ksize + x] /= ww;
      bounds[xx * 2] = xmin;
      bounds[xx * 2 + 1] = xmax;
    }
    return { bounds, kk, ksize };
  }

  const PRECISION_BITS = 32 - 8 - 2;

  function fixedPoint(kk) { // normalize_coeffs_8bpc
    return kk.map((k) => (k < 0 ? Math.trunc(-0.5 + k * 2 ** PRECISION_BITS) : Math.trunc(0.5 + k * 2 ** PRECISION_BITS)));
  }

  function clip8(ss) {
    if (ss >= 2 ** (PRECISION_BITS + 8)) return 255;
    if (ss <= 0) return 0;
    return Math.floor(ss / 2 ** PRECISION_BITS);
  }

  // One pass of the separable resample along x (`horizontal`) or y of a one-band plane, 8-bit or float32.
  function resamplePass(src, width, height, outSize, in0, in1, horizontal, float, filter) {
    const { bounds, kk, ksize } = coefficients(horizontal ? width : height, in0, in1, outSize, filter);
    const k = float ? kk : fixedPoint(kk);
    const outW = horizontal ? outSize : width, outH = horizontal ? height : outSize;
    const out = float ? new Float32Array(outW * outH) : new Uint8Array(outW * outH);
    const start = float ? 0 : 2 ** (PRECISION_BITS - 1);
    if (horizontal) {
      for (let o = 0; o < outSize; o++) {
        const xmin = bounds[o * 2], xmax = bounds[o * 2 + 1], base = o * ksize;
        for (let y = 0; y < height; y++) {
          let ss = start;
          const row = y * width + xmin;
          for (let x = 0; x < xmax; x++) ss += src[row + x] * k[base + x];
          out[y * outW + o] = float ? ss : clip8(ss);
        }
      }
      return out;
    }
    // Along y, a whole row of sums at a time (the same taps in the same order per pixel), for the cache.
    const sums = new Float64Array(width);
    for (let o = 0; o < outSize; o++) {
      const ymin = bounds[o * 2], ymax = bounds[o * 2 + 1], base = o * ksize;
      sums.fill(start);
      for (let y = 0; y < ymax; y++) {
        const row = (ymin + y) * width, weight = k[base + y];
        for (let x = 0; x < width; x++) sums[x] += src[row + x] * weight;
      }
      for (let x = 0; x < width; x++) out[o * outW + x] = float ? sums[x] : clip8(sums[x]);
    }
    return out;
  }

  // ImagingResampleInner (Pillow 13): x first, unless the height shrinks by more than twice as many pixels as the
  // width does; the order matters for 8-bit planes, which are clipped and rounded between the passes.
  function resample(src, width, height, outW, outH, box, float, filter = LANCZOS) {
    const needX = outW !== width || box[0] !== 0 || box[2] !== outW;
    const needY = outH !== height || box[1] !== 0 || box[3] !== outH;
    const xFirst = !(height - outH > 0 && height - outH > (width - outW) * 2);
    let plane = src, w = width, h = height;
    const passX = () => {
      plane = resamplePass(plane, w, h, outW, f32(box[0]), f32(box[2]), true, float, filter);
      w = outW;
    };
    if (needX && xFirst) passX();
    if (needY) {
      plane = resamplePass(plane, w, h, outH, f32(box[1]), f32(box[3]), false, float, filter);
      h = outH;
    }
    if (needX && !xFirst) passX();
    return plane;
  }

  function divisionUint32(count) { // Reduce.c division_UINT32(count, 8)
    return Math.floor(2 ** 32 / (256 * count));
  }

  // Image.reduce by (fx, fy) over the whole plane: 8-bit with Reduce.c's fixed-point rounding, float32 with
  // ImagingReduceNxN_32bpc's pairs (four float32 values added in float32, then summed in float64).
  function reduce(src, width, height, fx, fy, float) {
    const outW = Math.ceil(width / fx), outH = Math.ceil(height / fy);
    const out = float ? new Float32Array(outW * outH) : new Uint8Array(outW * outH);
    const fullX = Math.floor(width / fx), fullY = Math.floor(height / fy);
    for (let y = 0; y < outH; y++) {
      const y0 = y * fy, y1 = Math.min(y0 + fy, height);
      for (let x = 0; x < outW; x++) {
        const x0 = x * fx, x1 = Math.min(x0 + fx, width);
        const count = (x1 - x0) * (y1 - y0);
        if (!float) {
          let ss = Math.floor(count / 2);
          for (let yy = y0; yy < y1; yy++) for (let xx = x0; xx < x1; xx++) ss += src[yy * width + xx];
          out[y * outW + x] = Math.floor((ss * divisionUint32(count)) / 2 ** 24);
        } else if (x < fullX && y < fullY) {
          out[y * outW + x] = reducedBlock(src, width, x0, y0, fx, fy) * (1 / (fx * fy));
        } else {
          let ss = 0;
          for (let yy = y0; yy < y1; yy++) for (let xx = x0; xx < x1; xx++) ss += src[yy * width + xx];
          out[y * outW + x] = ss * (1 / count);
        }
      }
    }
    return out;
  }

  function reducedBlock(src, width, x0, y0, fx, fy) {
    const p = (xx, yy) => src[yy * width + xx];
    let ss = 0, yy = y0;
    for (; yy < y0 + fy - 1; yy += 2) {
      let xx = x0;
      for (; xx < x0 + fx - 1; xx += 2) ss += f32(f32(f32(p(xx, yy) + p(xx + 1, yy)) + p(xx, yy + 1)) + p(xx + 1, yy + 1));
      if (fx & 1) ss += f32(p(xx, yy) + p(xx, yy + 1));
    }
    if (fy & 1) {
      let xx = x0;
      for (; xx < x0 + fx - 1; xx += 2) ss += f32(p(xx, yy) + p(xx + 1, yy));
      if (fx & 1) ss += p(xx, yy);
    }
    return ss;
  }

  // Image.resize(size, LANCZOS, reducing_gap=3.0) of a one-band plane (8-bit "L" or float32 "F").
  function resize(src, width, height, outW, outH, float) {
    if (outW === width && outH === height) return src;
    const fx = Math.trunc(width / outW / 3) || 1, fy = Math.trunc(height / outH / 3) || 1;
    if (fx > 1 || fy > 1) {
      const reduced = reduce(src, width, height, fx, fy, float);
      const box = [0, 0, width / fx, height / fy];
      return resample(reduced, Math.ceil(width / fx), Math.ceil(height / fy), outW, outH, box, float);
    }
    return resample(src, width, height, outW, outH, [0, 0, width, height], float);
  }

  // ---- fmnist.images -------------------------------------------------------------------------------------

  // A decoded picture ({data: RGBA bytes, width, height}, as ImageData, and `colourless`: true when its file has
  // no colour planes) -> {image: Uint8Array(784), cues}: images.frame_picture. `cues` is null for a picture that already was a 28x28 Fashion-MNIST-style image
  // or a digital one (digital_view). Throws an Error for more than MAX_PIXELS pixels.
  function framePicture(picture) {
    const { data, width, height } = picture;
    if (width * height > C.MAX_PIXELS) {
      throw new Error(`image is ${width}x${height} = ${(width * height).toLocaleString("en")} pixels, more than ` +
        `the ${C.MAX_PIXELS.toLocaleString("en")} allowed; scale it down`);
    }
    const fashion = alreadyFashionMnist(data, width, height);
    if (fashion) return { image: fashion, cues: null };
    return framed(picture);
  }

  // framePicture of a picture not in the dataset's own format (_framed); `marked`: cut out of a larger one round a
  // picture found in a drawn frame among marks.
  function framed(picture, marked = false) {
    const { data, width, height } = picture;
    let { gray, alpha, w, h } = planes(data, width, height);
    const transparent = alpha && (inAlpha(gray, alpha, w, h) || onBlack(gray, alpha, w, h));
    if (transparent) return { image: transparent, cues: null };
    const inner = innerPicture(gray, alpha, w, h, marked);
    if (inner) { // read the picture on the canvas, not the canvas
      const across = width / w, down = height / h;
      const scaled = ([top, bottom, left, right]) =>
        [rint(left * across), rint(top * down), rint(right * across), rint(bottom * down)];
      const box = scaled(inner.box);
      if (across !== 1 || down !== 1) { // found on the work planes of a larger picture: when it fits them, cut out
        const outer = scaled(inner.outer); // with its frame
        const wider = [Math.max(0, rint(outer[0] - 2 * across - 1)), Math.max(0, rint(outer[1] - 2 * down - 1)),
          Math.min(width, rint(outer[2] + 2 * across + 1)), Math.min(height, rint(outer[3] + 2 * down + 1))];
        if (Math.max(wider[2] - wider[0], wider[3] - wider[1]) <= C.WORK_SIDE) {
          return framed(cropped(picture, wider), inner.inFrame);
        }
      }
      picture = cropped(picture, box);
      ({ plane: gray, w, h } = inner);
      alpha = null;
    }
    const digital = digitalView(gray, alpha, w, h, !inner);
    if (digital) return { image: digital, cues: null };
    return frameWithCues(gray, alpha, w, h, () => colourPlanes(picture, gray, w, h));
  }

  // The [x0, y0, x1, y1] part of a decoded picture, as Pillow's Image.crop.
  function cropped({ data, width, colourless }, [x0, y0, x1, y1]) {
    const out = new Uint8ClampedArray((x1 - x0) * (y1 - y0) * 4);
    for (let y = y0; y < y1; y++) out.set(data.subarray(4 * (y * width + x0), 4 * (y * width + x1)), 4 * (y - y0) * (x1 - x0));
    return { data: out, width: x1 - x0, height: y1 - y0, colourless };
  }

  // A digital picture set on a plain canvas or in a drawn frame among marks (_inner_picture): {box: [top, bottom,
  // left, right] in the work planes, plane: the picture there (on a canvas, a rim blurred by a smooth upscale set to
  // its background's level; in a frame, the frame's lines cut off), w, h, inFrame, outer: the box with the frame's
  // lines}, or null. `marked`: cut out of a larger picture round a frame found among marks.
  function innerPicture(gray, alpha, w, h, marked = false) {
    if (alpha && minOf(alpha) < 0.99) return null;
    const [ys, xs] = borderCoordinates(h, w);
    const border = Float32Array.from(ys, (y, i) => gray[y * w + xs[i]]);
    const level = modeLevel(border);
    if (!flat(border, level, C.FRAME_FLAT)) return null;
    const canvas = flat(border, level, C.CANVAS_FLAT) ? canvasBox(gray, w, h, level) : null;
    const inFrame = canvas === null;
    const foundFrame = inFrame ? frameBox(gray, w, h, level, marked) : null;
    let box = inFrame ? foundFrame && foundFrame.box : canvas;
    if (!box) return null;
    const planeOf = ([top, bottom, left, right]) => {
      const plane = new Float32Array((bottom - top) * (right - left));
      for (let y = top; y < bottom; y++) plane.set(gray.subarray(y * w + left, y * w + right), (y - top) * (right - left));
      return plane;
    };
    let plane = planeOf(box);
    let bh = box[1] - box[0], bw = box[3] - box[2];
    const short = Math.min(bh, bw);
    const found = inFrame ? frameBackground(plane, bw, bh, short) : canvasBackground(plane, bw, bh, short, level);
    if (!found) return null;
    const [rim, inner] = found;
    const outer = box;
    if (inFrame) { // the rings outside the background are the frame's
      box = insideFrame(box, rim);
      plane = planeOf(box);
      [bh, bw] = [box[1] - box[0], box[3] - box[2]];
    }
    let strongest = 0;
    const shown = new Uint8Array(plane.length);
    for (let i = 0; i < plane.length; i++) {
      const difference = Math.abs(plane[i] - inner);
      strongest = Math.max(strongest, difference);
      shown[i] = difference > C.DIGITAL_OBJECT ? 1 : 0;
    }
    if (strongest < C.DIGITAL_CONTRAST) return null;
    const standing = objectBox(shown, bw, bh);
    const span = standing ? Math.max(standing[1] - standing[0], standing[3] - standing[2]) : 0;
    if (span < C.INNER_SPAN * Math.max(bh, bw)) return null;
    // A block with no ticks is an object (a black bag above a caption), unless square and spanned as a dataset image.
    const datasetLike = bh === bw && span >= C.MARGIN_SPAN * bh;
    if (inFrame && rim === 0 && !(foundFrame.ticked || marked || datasetLike)) return null;
    if (!inFrame) {
      for (let y = 0; y < bh; y++) {
        for (let x = 0; x < bw; x++) {
          if (y < rim || y >= bh - rim || x < rim || x >= bw - rim) plane[y * bw + x] = inner;
        }
      }
    }
    return { box, plane, w: bw, h: bh, inFrame, outer };
  }

  // The part of a frame's box inside its `rim` rings of lines, cut square when FRAME_SQUARE pixels or less from
  // square (_inside_frame).
  function insideFrame([top, bottom, left, right], rim) {
    [top, bottom, left, right] = [top + rim, bottom - rim, left + rim, right - rim];
    const short = Math.min(bottom - top, right - left), long = Math.max(bottom - top, right - left);
    if (long - short > 0 && long - short <= C.FRAME_SQUARE) {
      top += Math.floor((bottom - top - short) / 2);
      left += Math.floor((right - left - short) / 2);
      [bottom, right] = [top + short, left + short];
    }
    return [top, bottom, left, right];
  }

  // The box of a picture on a plain canvas at `level`, or null (_canvas_box).
  function canvasBox(gray, w, h, level) {
    const far = [];
    for (const v of gray) if (Math.abs(v - level) >= C.CANVAS_STEP) far.push(v);
    if (!far.length) return null;
    const halfway = Math.abs(modeLevel(far) - level) / 2;
    const box = objectBox(Uint8Array.from(gray, (v) => (Math.abs(v - level) > halfway ? 1 : 0)), w, h);
    if (!box || !innerSize(box, w, h)) return null;
    const [top, bottom, left, right] = box;
    const apart = (y, x) => Math.abs(gray[y * w + x] - level) > C.CANVAS_STEP / 2;
    const corners = [[top, left], [top, right - 1], [bottom - 1, left], [bottom - 1, right - 1]];
    if (!corners.every(([y, x]) => apart(y, x))) return null;
    const [ry, rx] = borderCoordinates(bottom - top, right - left);
    let edge = 0;
    for (let i = 0; i < ry.length; i++) edge += apart(top + ry[i], left + rx[i]) ? 1 : 0;
    return edge / ry.length >= C.INNER_EDGE ? box : null;
  }

  // The box of a picture in a drawn frame on a page at `level`, or null (_frame_box): the widest 8-connected piece
  // of the pixels CANVAS_STEP off the page (the first on a tie, numbered in raster order as scipy numbers them),
  // cut to the rows and columns it fills for INNER_EDGE of its box.
  function frameBox(gray, w, h, level, marked) {
    const far = Uint8Array.from(gray, (v) => (Math.abs(v - level) >= C.CANVAS_STEP ? 1 : 0));
    const labels = new Int32Array(far.length);
    const stack = new Int32Array(far.length);
    let count = 0, widest = 0, widestArea = -1, piece = null;
    for (let start = 0; start < far.length; start++) {
      if (!far[start] || labels[start]) continue;
      count++;
      let top = h, bottom = -1, left = w, right = -1, size = 0;
      stack[size++] = start;
      labels[start] = count;
      while (size) {
        const i = stack[--size];
        const y = Math.floor(i / w), x = i - y * w;
        top = Math.min(top, y);
        bottom = Math.max(bottom, y);
        left = Math.min(left, x);
        right = Math.max(right, x);
        for (let yy = Math.max(0, y - 1); yy <= Math.min(h - 1, y + 1); yy++) {
          for (let xx = Math.max(0, x - 1); xx <= Math.min(w - 1, x + 1); xx++) {
            const j = yy * w + xx;
            if (far[j] && !labels[j]) {
              labels[j] = count;
              stack[size++] = j;
            }
          }
        }
      }
      const area = (bottom - top + 1) * (right - left + 1);
      if (area > widestArea) [widestArea, widest, piece] = [area, count, [top, bottom + 1, left, right + 1]];
    }
    if (!piece) return null;
    const [top, bottom, left, right] = piece;
    const ph = bottom - top, pw = right - left;
    const fullRows = [], fullCols = [], columns = new Int32Array(pw);
    for (let y = top; y < bottom; y++) {
      let filled = 0;
      for (let x = left; x < right; x++) {
        if (labels[y * w + x] === widest) {
          filled++;
          columns[x - left]++;
        }
      }
      if (filled / pw >= C.INNER_EDGE) fullRows.push(y);
    }
    for (let x = 0; x < pw; x++) if (columns[x] / ph >= C.INNER_EDGE) fullCols.push(left + x);
    if (!fullRows.length || !fullCols.length) return null;
    const box = [fullRows[0], fullRows[fullRows.length - 1] + 1, fullCols[0], fullCols[fullCols.length - 1] + 1];
    if (!innerSize(box, w, h)) return null;
    // Each corner within a pixel of one far from the page: a thin line's corner is antialiased lighter.
    const near = (y0, x0) => far[y0 * w + x0] || far[y0 * w + x0 + 1] || far[(y0 + 1) * w + x0] || far[(y0 + 1) * w + x0 + 1];
    const corners = [[box[0], box[2]], [box[0], box[3] - 2], [box[1] - 2, box[2]], [box[1] - 2, box[3] - 2]];
    if (!corners.every(([y, x]) => near(y, x))) return null;
    // Drawn on the page: round it, FRAME_GAP pixels out, the page (but where a tick crosses).
    const [ot, ob, ol, or] = [box[0] - C.FRAME_GAP, box[1] + C.FRAME_GAP, box[2] - C.FRAME_GAP, box[3] + C.FRAME_GAP];
    if (ot < 0 || ol < 0 || ob > h || or > w) return null;
    const [ry, rx] = borderCoordinates(ob - ot, or - ol);
    let page = 0;
    for (let i = 0; i < ry.length; i++) page += Math.abs(gray[(ot + ry[i]) * w + ol + rx[i]] - level) < C.CANVAS_STEP ? 1 : 0;
    if (page / ry.length < C.INNER_EDGE) return null;
    let marks = 0, reach = 0; // beyond that ring: other marks, and the frame's own piece (its ticks)
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        const label = labels[y * w + x];
        if (!label || (y >= ot && y < ob && x >= ol && x < or)) continue;
        if (label === widest) reach++;
        else marks++;
      }
    }
    if (!marked && marks < C.FRAME_MARKS) return null; // no other marks: a canvas or a backdrop
    const perimeter = 2 * (box[1] - box[0] + box[3] - box[2]);
    return { box, ticked: reach >= C.FRAME_MARKS && reach <= C.FRAME_TICKS * perimeter };
  }

  // Whether `box` could hold a digital picture inside a w x h one (_inner_size).
  function innerSize([top, bottom, left, right], w, h) {
    const bh = bottom - top, bw = right - left, short = Math.min(bh, bw);
    return !(bh === h && bw === w) && short >= C.INNER_SIDE && Math.max(bh, bw) <= C.INNER_ASPECT * short;
  }

  // [rim, the ring's pixels, their most common level] of the rings of a plane going inward (_rings).
  function ringsOf(plane, bw, bh, short) {
    const rings = [];
    for (let rim = 0; rim < Math.max(C.INNER_RIM, Math.floor(short / 10)); rim++) {
      const [cy, cx] = borderCoordinates(bh - 2 * rim, bw - 2 * rim);
      const ring = Float32Array.from(cy, (y, i) => plane[(y + rim) * bw + cx[i] + rim]);
      rings.push([rim, ring, modeLevel(ring)]);
    }
    return rings;
  }

  // Whether a ring at level `inner` is a digital image's background (_background_ring).
  function backgroundRing(plane, ring, inner, band) {
    let background = 0;
    for (const v of plane) if (Math.abs(v - inner) <= C.FLAT_BAND) background++;
    const near = Math.min(inner, 255 - inner); // from black or white
    return flat(ring, inner, 0.5) && background / plane.length >= C.INNER_BACKGROUND && near <= band;
  }

  // [rim, level] of the background of a picture on a canvas at `level`, or null (_canvas_background): rings near
  // black or white first; then, on a page far from the ring's level, a colour map's darkest (a figure saved without
  // its axes), further from black.
  function canvasBackground(plane, bw, bh, short, level) {
    const rings = ringsOf(plane, bw, bh, short);
    for (const [band, distance] of [[C.INNER_BAND, 0.0], [C.BACKGROUND_BAND, C.CANVAS_APART]]) {
      for (const [rim, ring, inner] of rings) {
        if (backgroundRing(plane, ring, inner, band) && Math.abs(inner - level) >= distance) {
          return Math.abs(inner - level) >= C.CANVAS_STEP ? [rim, inner] : null;
        }
      }
    }
    return null;
  }

  // [rim, level] of the background of a picture in a drawn frame, or null (_frame_background): the first ring that
  // is not a frame line (a ring two further in flat at a level CANVAS_STEP or more away).
  function frameBackground(plane, bw, bh, short) {
    const rings = ringsOf(plane, bw, bh, short);
    for (const [rim, ring, inner] of rings) {
      const further = rings[rim + 2];
      const line = further !== undefined && flat(further[1], further[2], 0.5) &&
        Math.abs(further[2] - inner) >= C.CANVAS_STEP;
      if (!line && backgroundRing(plane, ring, inner, C.BACKGROUND_BAND)) return [rim, inner];
    }
    return null;
  }

  // Whether at least `share` of `values` lie within FLAT_BAND of `level` with at most DIGITAL_NOISE of noise (_flat).
  function flat(values, level, share) {
    const deviations = [];
    for (const v of values) if (Math.abs(v - level) <= C.FLAT_BAND) deviations.push(Math.abs(v - level));
    return deviations.length >= share * values.length && 1.4826 * median(deviations) <= C.DIGITAL_NOISE;
  }

  // 28x28, grey (R = G = B), opaque, most of the border dark, a pixel below DATASET_BLACK, one at FULL_PEAK: the
  // dataset's own format (_already_fashion_mnist; Python also asks for Pillow's L, RGB or RGBA mode, which a decoded
  // picture no longer tells).
  function alreadyFashionMnist(data, width, height) {
    if (width !== SIDE || height !== SIDE) return null;
    const pixels = new Uint8Array(SIDE * SIDE);
    for (let i = 0; i < pixels.length; i++) {
      const r = data[4 * i];
      if (data[4 * i + 1] !== r || data[4 * i + 2] !== r || data[4 * i + 3] !== 255) return null;
      pixels[i] = r;
    }
    const [ys, xs] = borderCoordinates(SIDE, SIDE);
    let dark = 0;
    for (let i = 0; i < ys.length; i++) if (pixels[ys[i] * SIDE + xs[i]] < 32) dark++;
    return dark * 2 > ys.length && minOf(pixels) < C.DATASET_BLACK && maxOf(pixels) >= C.FULL_PEAK ? pixels : null;
  }

  // Luminance (float32, 0..255) and opacity (0..1, or null when opaque) at most WORK_SIDE pixels on a side
  // (_planes). A picture with transparency is resized with premultiplied alpha, as Pillow resizes "LA".
  function planes(data, width, height) {
    const scale = Math.min(1, C.WORK_SIDE / Math.max(width, height));
    const w = Math.max(1, rint(width * scale)), h = Math.max(1, rint(height * scale));
    const n = width * height;
    const lum = new Uint8Array(n);
    let opaque = true;
    for (let i = 0; i < n; i++) {
      lum[i] = luminance(data[4 * i], data[4 * i + 1], data[4 * i + 2]);
      if (data[4 * i + 3] !== 255) opaque = false;
    }
    if (opaque) return { gray: Float32Array.from(resize(lum, width, height, w, h, false)), alpha: null, w, h };
    let a = new Uint8Array(n);
    let l = lum;
    for (let i = 0; i < n; i++) a[i] = data[4 * i + 3];
    if (w !== width || h !== height) {
      const premultiplied = lum.map((v, i) => muldiv255(v, a[i]));
      const lp = resize(premultiplied, width, height, w, h, false);
      a = resize(a, width, height, w, h, false);
      l = lp.map((v, i) => (a[i] ? Math.min(255, Math.floor((255 * v) / a[i])) : 0));
    }
    const alpha = new Float32Array(w * h);
    for (let i = 0; i < alpha.length; i++) alpha[i] = a[i] / 255;
    return { gray: Float32Array.from(l), alpha, w, h };
  }

  // The uint8 28x28 view of a digital Fashion-MNIST-style image (square, or another shape at its own size), or null
  // for a photo (digital_view).
  function digitalView(gray, alpha, w, h, whole) {
    if (alpha && minOf(alpha) < 0.99) return null;
    const [ys, xs] = borderCoordinates(h, w);
    const border = new Float32Array(ys.length);
    for (let i = 0; i < ys.length; i++) border[i] = gray[ys[i] * w + xs[i]];
    const level = modeLevel(border);
    if (!flat(border, level, 0.5)) return null;
    let light = level > 127;
    // A 28x28 grid on a grey background, its object on one side of it (digital_view).
    const grey = C.BACKGROUND_BAND < level && level < 255 - C.BACKGROUND_BAND;
    if (grey) {
      let darker = 0, lighter = 0;
      for (const g of gray) {
        if (g < level - C.ONE_SIDE_BAND) darker++;
        else if (g > level + C.ONE_SIDE_BAND) lighter++;
      }
      if (Math.min(darker, lighter) > C.ONE_SIDE * Math.max(darker, lighter)) return null;
      light = darker > lighter;
    }
    // A pattern printed in flat colours along the border: a photo on a textured surface (digital_view).
    const near = Uint8Array.from(border, (v) => (Math.abs(v - level) <= C.FLAT_BAND ? 1 : 0));
    if (whole && near.reduce((sum, v) => sum + v, 0) / near.length < C.SURFACE_FIT
      && borderPieces(near) >= C.DIGITAL_PIECES) return null;
    // A photo's backdrop lit past white (or black) follows a gradient where its light comes into range (looked
    // for when CENSORED_GAIN of the border or more is off the level).
    let off = 0;
    for (const v of border) if (Math.abs(v - level) > C.FLAT_BAND) off++;
    if (off / border.length >= C.CENSORED_GAIN) {
      const { fitted } = borderSurface(gray, [0.0, 255.0, 1.0], w, h);
      for (const lit of fitted) if (Math.abs(Math.min(Math.max(lit, 0), 255) - level) > C.FLAT_BAND) return null;
    }
    const full = Math.max(light ? level : 255 - level, 1.0);
    const gain = f32(255 / full);
    let contrast = gray.map((g) => f32(Math.max(f32(light ? level - g : g - level), 0) * gain));
    if (w !== h && !atOwnSize(contrast, w, h)) return null;
    if (grey && (Math.min(w, h) < SIDE || !gridPicture(contrast, w, h))) return null;
    const wholeContrast = contrast;
    if (w !== SIDE || h !== SIDE) {
      const [crop, lifted] = digitalCrop(contrast, w, h, whole);
      contrast = sampled(lifted, w, h, crop);
    }
    const peak = maxOf(contrast);
    // A faint scan, grey text or a faint drawing on paper: a photo, unless the picture is a 28x28 grid (a tint).
    if (peak < C.GRID_CONTRAST || (peak < C.DIGITAL_CONTRAST && !gridPicture(wholeContrast, w, h))) return null;
    if (peak < C.FULL_PEAK) {
      const stretch = f32(255 / peak);
      contrast = contrast.map((v) => f32(v * stretch));
    }
    return Uint8Array.from(contrast, (v) => Math.min(255, Math.max(0, rint(v))));
  }

  // Whether a digital picture is a 28x28 grid: 28x28, or square and a 28x28 picture enlarged (_grid_picture).
  function gridPicture(contrast, w, h) {
    return (w === SIDE && h === SIDE) || (w === h && enlarged(contrast, h));
  }

  // Whether a digital picture's object spans 26 to 28 pixels on its longer side: a dataset image padded (_at_own_size).
  function atOwnSize(contrast, w, h) {
    const shown = new Uint8Array(contrast.length);
    for (let i = 0; i < shown.length; i++) shown[i] = contrast[i] > C.DIGITAL_OBJECT ? 1 : 0;
    const box = objectBox(shown, w, h);
    if (!box) return false;
    const [top, bottom, left, right] = faintBox(contrast, w, h, box);
    const longer = Math.max(bottom - top, right - left);
    return longer >= SIDE * C.MARGIN_SPAN && longer <= SIDE;
  }

  function minOf(values) {
    let m = Infinity;
    for (let i = 0; i < values.length; i++) if (values[i] < m) m = values[i];
    return m;
  }

  // [(top, left, side) of the square a digital picture is sampled from, the contrast to sample: without the drop
  // shadow of a large picture's object, if any] (_digital_crop).
  function digitalCrop(contrast, w, h, whole) {
    const wholePicture = [[0, 0, Math.max(h, w)], contrast];
    const shown = digitalObject(contrast, w, h);
    let box = objectBox(shown, w, h);
    if (!box) return wholePicture;
    const side = Math.max(box[1] - box[0], box[3] - box[2]);
    // Spanning 26-28 of the view's 28 pixels: the whole picture's, unless a whole file's thin margins were added (its
    // faint pixels reach none of its edges, and it is no 28x28 picture enlarged).
    if (h === w && side >= C.MARGIN_SPAN * h) {
      const faint = objectBox(Uint8Array.from(contrast, (v) => (v > C.FAINT ? 1 : 0)), w, h) || box;
      const margined = faint[0] > 0 && faint[2] > 0 && faint[1] < h && faint[3] < w;
      if (!(whole && h !== SIDE && margined && !enlarged(contrast, h))) return wholePicture;
    }
    if (h === w && h >= C.GRID_FACTOR * SIDE && side * SIDE >= C.GRID_SPAN * h && enlarged(contrast, h)) {
      return wholePicture;
    }
    const reduced = reduction(contrast, h, w, side);
    const own = reduced && objectBox(digitalObject(reduced[1], reduced[2], reduced[2]), reduced[2], reduced[2]);
    if (own) { // cut at the picture's own pixels, sampled on the enlargement's
      const [scale, samples, grid] = reduced;
      const [t, l, c] = centred(faintBox(samples, grid, grid, own));
      return [[t * scale, l * scale, c * scale], contrast];
    }
    let lifted = null;
    if (Math.min(h, w) >= C.GRID_FACTOR * SIDE && (lifted = shadows.withoutShadow(contrast, shown, w, h, LINEAR))) {
      contrast = lifted;
      box = objectBox(digitalObject(contrast, w, h), w, h) || box;
    }
    return [centred(faintBox(contrast, w, h, box)), contrast];
  }

  // The box of a digital picture's object at its own pixels: `box`, or when its longer side spans 26 to 28 pixels,
  // the box of every pixel above FAINT if that spans 28 at most (_faint_box).
  function faintBox(contrast, w, h, box) {
    const [top, bottom, left, right] = box;
    const longer = Math.max(bottom - top, right - left);
    if (longer < SIDE * C.MARGIN_SPAN || longer > SIDE) return box;
    const lit = new Uint8Array(contrast.length);
    for (let i = 0; i < lit.length; i++) lit[i] = contrast[i] > C.FAINT ? 1 : 0;
    const faint = objectBox(lit, w, h);
    return faint && Math.max(faint[1] - faint[0], faint[3] - faint[2]) <= SIDE ? faint : box;
  }

  // [top, left, side] of the square round an object's box, centred as Fashion-MNIST centres (_centred).
  function centred([top, bottom, left, right]) {
    const side = Math.max(bottom - top, right - left, 1);
    const step = side / SIDE;
    const padTop = Math.floor((SIDE - rint((bottom - top) / step) + 1) / 2);
    const padLeft = Math.floor((SIDE - rint((right - left) / step) + 1) / 2);
    return [top - rint(padTop * step), left - rint(padLeft * step), side];
  }

  // 0/1: a digital picture's object, its pixels above DIGITAL_OBJECT; in a large picture, but for specks
  // (_digital_object).
  function digitalObject(contrast, w, h) {
    const shown = new Uint8Array(contrast.length);
    for (let i = 0; i < shown.length; i++) shown[i] = contrast[i] > C.DIGITAL_OBJECT ? 1 : 0;
    if (Math.min(h, w) < C.GRID_FACTOR * SIDE) return shown;
    // A speck (under SPECK pixels, 8-connected) is a photo's sensor noise, not the object.
    const { labels, sizes } = segmentation.pieces(shown, w, h, segmentation.SQUARE(1));
    for (let i = 0; i < shown.length; i++) shown[i] = labels[i] && sizes[labels[i] - 1] >= C.SPECK ? 1 : 0;
    return shown;
  }

  // [scale, the samples at its own pixels, their side] of a square picture that is a smaller one with margins enlarged
  // by a whole factor (its object spanning about 26-30 of its pixels), or null (_reduction).
  function reduction(contrast, h, w, side) {
    if (h !== w) return null;
    for (let scale = Math.max(2, Math.floor(side / (SIDE + 1))); scale <= Math.floor(side / (SIDE - 2)); scale++) {
      const grid = h / scale;
      if (h % scale || grid <= SIDE) continue;
      if (enlarged(contrast, h, grid)) return [scale, sampled(contrast, h, h, [0, 0, h], grid), grid];
    }
    return null;
  }

  // Whether a square picture's contrast (size x size) is a grid x grid picture enlarged (_enlarged): rebuilt from its
  // samples at the grid's centres by nearest neighbour or by Keys' cubic convolution (a = -0.5, clamped at the
  // edges), the closer within GRID_ERROR of it in units of the sum of its mean absolute steps across and down.
  function enlarged(contrast, size, grid = SIDE) {
    const samples = sampled(contrast, size, size, [0, 0, size], grid);
    const step = size / grid;
    const nearest = new Int32Array(size), base = new Int32Array(size), weights = new Float64Array(size * 4);
    for (let p = 0; p < size; p++) {
      nearest[p] = Math.min(Math.max(Math.floor((p + 0.5) / step), 0), grid - 1);
      const centre = (p + 0.5) / step - 0.5;
      base[p] = Math.floor(centre);
      for (let k = 0; k < 4; k++) weights[p * 4 + k] = keys(centre - (base[p] + k - 1));
    }
    const tap = (p, k) => Math.min(Math.max(base[p] + k - 1, 0), grid - 1);
    // The cubic rebuild, columns first: rows of the grid spread across the picture's columns, then down its rows.
    const across = new Float64Array(grid * size);
    for (let i = 0; i < grid; i++) {
      for (let c = 0; c < size; c++) {
        let sum = 0;
        for (let k = 0; k < 4; k++) sum += weights[c * 4 + k] * samples[i * grid + tap(c, k)];
        across[i * size + c] = sum;
      }
    }
    let nearError = 0, cubicError = 0;
    for (let r = 0; r < size; r++) {
      for (let c = 0; c < size; c++) {
        let cubic = 0;
        for (let k = 0; k < 4; k++) cubic += weights[r * 4 + k] * across[tap(r, k) * size + c];
        const value = contrast[r * size + c];
        cubicError += Math.abs(Math.max(cubic, 0) - value);
        nearError += Math.abs(samples[nearest[r] * grid + nearest[c]] - value);
      }
    }
    let down = 0, right = 0;
    for (let r = 0; r < size; r++) {
      for (let c = 0; c < size; c++) {
        if (r + 1 < size) down += Math.abs(contrast[(r + 1) * size + c] - contrast[r * size + c]);
        if (c + 1 < size) right += Math.abs(contrast[r * size + c + 1] - contrast[r * size + c]);
      }
    }
    const steps = (down + right) / ((size - 1) * size);
    return Math.min(nearError, cubicError) / (size * size) <= C.GRID_ERROR * steps;
  }

  function keys(offset, a = -0.5) { // Keys' cubic convolution kernel
    const x = Math.abs(offset);
    if (x <= 1) return ((a + 2) * x - (a + 3)) * x * x + 1;
    return x < 2 ? ((a * x - 5 * a) * x + 8 * a) * x - 4 * a : 0;
  }

  // The crop sampled bilinearly at the centres of a grid x grid grid (28x28 by default), 0 outside the picture
  // (_sampled: scipy.ndimage.map_coordinates, order 1, mode "constant").
  function sampled(contrast, w, h, [top, left, side], grid = SIDE) {
    const step = side / grid;
    const out = new Float32Array(grid * grid);
    const at = (r, c) => contrast[r * w + c];
    for (let i = 0; i < grid; i++) {
      const y = top + ((i + 0.5) * step - 0.5);
      for (let j = 0; j < grid; j++) {
        const x = left + ((j + 0.5) * step - 0.5);
        if (y < 0 || x < 0 || y > h - 1 || x > w - 1) continue;
        const y0 = Math.floor(y), x0 = Math.floor(x);
        const y1 = Math.min(y0 + 1, h - 1), x1 = Math.min(x0 + 1, w - 1);
        const ty = y - y0, tx = x - x0;
        const top_ = at(y0, x0) * (1 - tx) + at(y0, x1) * tx;
        const bottom = at(y1, x0) * (1 - tx) + at(y1, x1) * tx;
        out[i * grid + j] = top_ * (1 - ty) + bottom * ty;
      }
    }
    return out;
  }

  // The framed 28x28 image and the cues measured on the way (frame_with_cues; step 1: 8-bit levels). `colour`
  // gives the picture's colour planes ({planes, w, h}), asked for only when the object lies on a texture.
  function frameWithCues(grayIn, alpha, w, h, colourOf) {
    let planes = null;
    const colour = colourOf && (() => planes || (planes = colourOf())); // read once at most
    let gray = grayIn, borderFit = 1.0, noise = 0.0, textured = false, onSurfaceFound = false, contrast, smooth, mask;
    if (alpha && minOf(alpha) < 0.5) {
      contrast = cutoutContrast(gray, alpha);
      smooth = smoothed(contrast, w, h);
      mask = smoothed(alpha, w, h).map((v) => (v > 0.5 ? 1 : 0));
    } else {
      if (alpha) gray = gray.map((g, i) => f32(f32(g * alpha[i]) + f32(255 * f32(1 - alpha[i]))));
      let lit;
      ({ gray, smooth: lit } = withoutLightEdges(gray, w, h, colour));
      const { stretched, levels } = stretch(gray, lit);
      let pieces, offSurface;
      ({ contrast, noise, borderFit, pieces, offSurface } = backgroundContrast(stretched, levels, w, h));
      textured = onTexture(borderFit, noise, pieces, offSurface);
      smooth = smoothed(contrast, w, h);
      const t = threshold(smooth, noise);
      mask = standingOut(contrast, smooth, t);
      // On a textured surface an object may stand out by its colour or texture alone, below the surface's noise
      // in brightness (a dark shoe on grass): it is looked for there before the picture is called empty.
      let found = null;
      if (textured) {
        const planesOf = colour || (() => ({ planes: [gray], w, h }));
        found = segmentation.objectMask(planesOf(), w, h, LINEAR);
      }
      let lifted = null;
      if (found) [contrast, mask, smooth, onSurfaceFound] = [onSurface(contrast, found), found, null, true];
      else if (maxOf(smooth) <= noiseFloor(noise)) mask.fill(0);
      else if ((lifted = shadows.withoutShadow(contrast, mask, w, h, LINEAR))) { // a drop shadow is no part of it
        contrast = lifted;
        smooth = smoothed(contrast, w, h);
        mask = standingOut(contrast, smooth, t);
      }
    }
    const judged = oneOfAPair(mask, w, h); // the cues judge what was found, its caption too; the view is the object's
    mask = withoutThinParts(withoutCaption(judged, w, h), w, h);
    const box = objectBox(mask, w, h);
    const empty = { image: new Uint8Array(SIDE * SIDE), cues: cuesOf(borderFit, noise, 0, 0, 0, textured) };
    if (!box) return empty;
    const cues = objectCues(judged, w, h, objectBox(judged, w, h) || box, borderFit, noise, textured);
    const [top, bottom, left, right] = box;
    let crop = { data: cropOf(contrast, w, box), w: right - left, h: bottom - top };
    const turned = upright(crop, { data: cropOf(mask, w, box), w: crop.w, h: crop.h }, onSurfaceFound);
    if (turned) [crop, smooth] = [turned, null];
    // The object's strongest contrast becomes 255, as in Fashion-MNIST (smoothed, before resizing).
    const peak = maxOf(smooth ? cropOf(smooth, w, box) : smoothed(crop.data, crop.w, crop.h));
    if (peak <= 0) return empty;
    const scale = f32(255 / peak);
    let framed = fit(crop.data, crop.w, crop.h).map((v) => f32(v * scale));
    // Resizing may leave the brightest pixel under FULL_PEAK: the view then gets the full range.
    const strongest = maxOf(framed);
    if (strongest > 0 && strongest < C.FULL_PEAK) framed = framed.map((v) => f32(v * f32(255 / strongest)));
    const image = Uint8Array.from(framed, (v) => Math.min(255, Math.max(0, rint(v))));
    return { image: facingLeft(image), cues };
  }

  // The 28x28 view mirrored, its box kept where it was, when its top half's intensity centroid lies FACING of the box's
  // width or more left of its middle: a shoe facing right, where Fashion-MNIST's face left (_facing_left).
  function facingLeft(view) {
    let top = SIDE, bottom = -1, left = SIDE, right = -1;
    for (let y = 0; y < SIDE; y++) {
      for (let x = 0; x < SIDE; x++) {
        if (view[y * SIDE + x] <= C.FACING_LEVEL) continue;
        [top, bottom, left, right] = [Math.min(top, y), Math.max(bottom, y), Math.min(left, x), Math.max(right, x)];
      }
    }
    if (bottom < 0) return view;
    right += 1;
    let mass = 0, moment = 0;
    for (let y = top; y < Math.floor((top + bottom + 1) / 2); y++) {
      for (let x = left; x < right; x++) {
        mass += view[y * SIDE + x];
        moment += view[y * SIDE + x] * (x - left + 0.5);
      }
    }
    if (mass <= 0 || moment / mass / (right - left) - 0.5 > -C.FACING) return view;
    const shift = left - (SIDE - right), out = new Uint8Array(view.length);
    for (let y = 0; y < SIDE; y++) {
      for (let x = 0; x < SIDE; x++) out[y * SIDE + ((SIDE - 1 - x + shift + SIDE) % SIDE)] = view[y * SIDE + x];
    }
    return out;
  }

  // `gray` with up to shading's EDGES straight edges of light taken out, one after the other, and its box mean
  // (_without_light_edges); `colour` as frameWithCues's.
  function withoutLightEdges(grayIn, w, h, colour) {
    const border = borderCoordinates(h, w);
    let gray = grayIn, smooth = smoothed(gray, w, h);
    for (let k = 0; k < shading.CONSTANTS.EDGES; k++) {
      const lifted = shading.withoutLightEdge(gray, smooth, w, h, border, LINEAR, colour);
      if (!lifted) break;
      [gray, smooth] = [lifted, smoothed(lifted, w, h)];
    }
    return { gray, smooth };
  }

  // The mask, or its larger 8-connected piece when it shows a pair side by side (_one_of_a_pair): two pieces holding
  // PAIR_SHARE of its pixels, the smaller PAIR_BALANCE of the larger, no column shared, rows shared over PAIR_OVERLAP of
  // the shorter's height, each PAIR_ASPECT as wide as tall; of two of one size, the first in raster order.
  function oneOfAPair(mask, w, h) {
    const { labels, sizes } = segmentation.pieces(mask, w, h, segmentation.SQUARE(1));
    if (sizes.length < 2) return mask;
    let first = 0, second = -1;
    sizes.forEach((size, i) => { if (size > sizes[first]) first = i; });
    sizes.forEach((size, i) => { if (i !== first && (second < 0 || size > sizes[second])) second = i; });
    const total = sizes.reduce((a, v) => a + v, 0);
    if (sizes[first] + sizes[second] < C.PAIR_SHARE * total || sizes[second] < C.PAIR_BALANCE * sizes[first]) {
      return mask;
    }
    const boxes = [first, second].map(() => [h, 0, w, 0]); // top, bottom, left, right (exclusive ends)
    for (let i = 0; i < labels.length; i++) {
      const k = labels[i] - 1 === first ? 0 : labels[i] - 1 === second ? 1 : -1;
      if (k < 0) continue;
      const y = Math.floor(i / w), x = i % w, b = boxes[k];
      [b[0], b[1], b[2], b[3]] = [Math.min(b[0], y), Math.max(b[1], y + 1), Math.min(b[2], x), Math.max(b[3], x + 1)];
    }
    const [[ta, ba, la, ra], [tb, bb, lb, rb]] = boxes;
    const sideBySide = ra <= lb || rb <= la;
    const level = Math.min(ba, bb) - Math.max(ta, tb) >= C.PAIR_OVERLAP * Math.min(ba - ta, bb - tb);
    const wide = boxes.every(([t, b, l, r]) => r - l >= C.PAIR_ASPECT * (b - t));
    return sideBySide && level && wide ? Uint8Array.from(labels, (l) => (l - 1 === first ? 1 : 0)) : mask;
  }

  // The mask cut to the box of what survives its opening (an erosion, then a dilation) by a square of side 2r+1,
  // r = floor(THIN_PART x its box's longer side / 2), outside the box counted as background; the top and the sides of
  // the box move only when the opening moves them by more than 2r; the mask as it is when r < 1 or when the opening
  // keeps less than THIN_KEEP of its pixels (_without_thin_parts).
  function withoutThinParts(mask, w, h) {
    const box = objectBox(mask, w, h);
    if (!box) return mask;
    const [top, bottom, left, right] = box;
    const reach = Math.floor((Math.max(bottom - top, right - left) * C.THIN_PART) / 2);
    if (reach < 1) return mask;
    const bw = right - left, bh = bottom - top;
    let opened = Uint8Array.from(cropOf(mask, w, box));
    const before = opened.reduce((a, v) => a + v, 0);
    // Each pass: the minimum (erosion) or maximum (dilation) over 2r+1 pixels along one axis, zero beyond the box.
    const pass = (values, keep, alongRows) => {
      const out = new Uint8Array(values.length);
      const [n, m] = alongRows ? [bh, bw] : [bw, bh]; // n lines of m pixels
      for (let line = 0; line < n; line++) {
        for (let i = 0; i < m; i++) {
          let v = keep === "min" ? 1 : 0;
          for (let j = i - reach; j <= i + reach; j++) {
            const inside = j >= 0 && j < m ? values[alongRows ? line * bw + j : j * bw + line] : 0;
            v = keep === "min" ? Math.min(v, inside) : Math.max(v, inside);
          }
          out[alongRows ? line * bw + i : i * bw + line] = v;
        }
      }
      return out;
    };
    for (const keep of ["min", "max"]) for (const alongRows of [false, true]) opened = pass(opened, keep, alongRows);
    const after = opened.reduce((a, v) => a + v, 0);
    if (after < C.THIN_KEEP * before) return mask;
    const core = objectBox(opened, bw, bh); // never null: the opening kept half of the pixels or more
    // The top and the two sides move in only when the opening moves them by more than 2r (a ragged rim or a narrowing
    // tip is no part); the bottom stays.
    const found = [0, bh, 0, bw];
    const sides = core.map((kept, i) => (i !== 1 && Math.abs(kept - found[i]) > 2 * reach ? kept : found[i]));
    if (sides.every((v, i) => v === found[i])) return mask;
    const cut = new Uint8Array(mask.length);
    for (let y = top + sides[0]; y < top + sides[1]; y++) {
      for (let x = left + sides[2]; x < left + sides[3]; x++) cut[y * w + x] = mask[y * w + x];
    }
    return cut;
  }

  // The mask without its lines of caption (_without_caption): the bands of rows holding something at its bottom (then
  // at its top), each at most CAPTION_HEIGHT of the tallest band and made of CAPTION_PIECES 8-connected marks or more,
  // apart from the band beyond them by empty rows, CAPTION_GAP or more and at least half as many as the nearest one's.
  function withoutCaption(mask, w, h) {
    const bands = [];
    let start = -1;
    for (let y = 0; y <= h; y++) {
      const any = y < h && mask.subarray(y * w, (y + 1) * w).some((v) => v);
      if (any && start < 0) start = y;
      if (!any && start >= 0) {
        bands.push([start, y]);
        start = -1;
      }
    }
    if (bands.length < 2) return mask;
    const tallest = Math.max(...bands.map(([top, bottom]) => bottom - top));
    const lettered = ([top, bottom]) => bottom - top <= C.CAPTION_HEIGHT * tallest
      && segmentation.pieces(mask.subarray(top * w, bottom * w), w, bottom - top, segmentation.SQUARE(1)).sizes.length
        >= C.CAPTION_PIECES;
    const kept = mask.slice();
    for (const ends of [bands.slice().reverse(), bands]) {
      let run = 0;
      while (run < ends.length - 1 && lettered(ends[run])) run++;
      if (run === 0) continue;
      const [[top, bottom], [beyondTop, beyondBottom]] = [ends[run - 1], ends[run]];
      const gap = top > beyondTop ? top - beyondBottom : beyondTop - bottom;
      if (gap >= Math.max(C.CAPTION_GAP, (bottom - top) / 2)) {
        for (const [t, b] of ends.slice(0, run)) kept.fill(0, t * w, b * w);
      }
    }
    return kept;
  }

  // 0/1: the object's pixels, the smoothed contrast above `t` and the pixel's own above t / 2 (_standing_out).
  function standingOut(contrast, smooth, t) {
    const mask = new Uint8Array(smooth.length);
    for (let i = 0; i < mask.length; i++) mask[i] = smooth[i] > t && contrast[i] > t / 2 ? 1 : 0;
    return mask;
  }

  function cropOf(plane, w, [top, bottom, left, right]) {
    const out = new Float32Array((bottom - top) * (right - left));
    for (let y = top; y < bottom; y++) {
      for (let x = left; x < right; x++) out[(y - top) * (right - left) + x - left] = plane[y * w + x];
    }
    return out;
  }

  // Whether the surface is textured or shaded, from the plain method's fit: the border's share on the surface,
  // its noise, the pieces the rest falls into and how far that rest lies from the surface (on_texture).
  function onTexture(borderFit, noise, pieces, offSurface) {
    if (borderFit >= C.SURFACE_FIT) return noise > C.SURFACE_NOISE;
    return noise >= C.SURFACE_MIN_NOISE || pieces >= C.SURFACE_PIECES
      || (noise >= C.SHADED_NOISE && offSurface < C.SHADING);
  }

  // The contrast of an object found on a texture: its polarity from its own pixels, zero off it (_on_surface).
  function onSurface(contrast, found) {
    let sum = 0, count = 0;
    for (let i = 0; i < found.length; i++) if (found[i]) { sum += contrast[i]; count++; }
    const sign = sum / count >= 0 ? 1 : -1;
    return contrast.map((v, i) => (found[i] ? sign * v : 0));
  }

  // The object's contrast (cut to its box) turned upright by segmentation.tilt of its mask (told whether it was
  // separated from a textured surface) and cut to its new box, or null when it stands upright already (_upright).
  function upright(contrast, mask, onTexturedSurface) {
    const angle = segmentation.tilt(mask.data, mask.w, mask.h, LINEAR, onTexturedSurface);
    if (angle === 0) return null;
    const [turned, turnedMask] = [contrast, mask].map((plane) => rotated(plane, angle));
    const box = objectBox(turnedMask.data.map((v) => (v > 0.5 ? 1 : 0)), turnedMask.w, turnedMask.h);
    if (!box) return null;
    return { data: cropOf(turned.data, turned.w, box), w: box[3] - box[2], h: box[1] - box[0] };
  }

  // Pillow's Image.rotate(angle, BILINEAR, expand=True) of a float32 plane: the inverse affine map of each
  // output pixel's centre, sampled bilinearly (Geometry.c bilinear_filter32F), 0 outside the picture.
  function rotated({ data, w, h }, degrees) {
    const angle = -(((degrees % 360) + 360) % 360) * (Math.PI / 180);
    const round15 = (v) => Number(v.toFixed(15));
    const m = [round15(Math.cos(angle)), round15(Math.sin(angle)), 0, round15(-Math.sin(angle)), round15(Math.cos(angle)), 0];
    const apply = (x, y) => [m[0] * x + m[1] * y + m[2], m[3] * x + m[4] * y + m[5]];
    [m[2], m[5]] = apply(-w / 2, -h / 2);
    m[2] += w / 2;
    m[5] += h / 2;
    const corners = [[0, 0], [w, 0], [w, h], [0, h]].map(([x, y]) => apply(x, y));
    const nw = Math.ceil(Math.max(...corners.map((c) => c[0]))) - Math.floor(Math.min(...corners.map((c) => c[0])));
    const nh = Math.ceil(Math.max(...corners.map((c) => c[1]))) - Math.floor(Math.min(...corners.map((c) => c[1])));
    [m[2], m[5]] = apply(-(nw - w) / 2, -(nh - h) / 2);
    const out = new Float32Array(nw * nh);
    const at = (x, y) => data[Math.min(Math.max(y, 0), h - 1) * w + Math.min(Math.max(x, 0), w - 1)];
    for (let y = 0; y < nh; y++) {
      for (let x = 0; x < nw; x++) {
        let xin = m[0] * (x + 0.5) + m[1] * (y + 0.5) + m[2];
        let yin = m[3] * (x + 0.5) + m[4] * (y + 0.5) + m[5];
        if (xin < 0 || xin >= w || yin < 0 || yin >= h) continue;
        xin -= 0.5;
        yin -= 0.5;
        const x0 = Math.floor(xin), y0 = Math.floor(yin), dx = xin - x0, dy = yin - y0;
        const v1 = at(x0, y0) + (at(x0 + 1, y0) - at(x0, y0)) * dx;
        const v2 = y0 + 1 >= 0 && y0 + 1 < h ? at(x0, y0 + 1) + (at(x0 + 1, y0 + 1) - at(x0, y0 + 1)) * dx : v1;
        out[y * nw + x] = v1 + (v2 - v1) * dy;
      }
    }
    return { data: out, w: nw, h: nh };
  }

  // The picture's colour planes for segmentation.js, at most SEGMENT_SIDE pixels on its longer side (_colour):
  // its RGB planes resized as Pillow resizes "RGB", or, for a file without colour (a grey PNG or JPEG, Pillow's
  // "L" and "LA"), the working grey plane.
  function colourPlanes({ data, width, height, colourless }, gray, w, h) {
    const n = width * height;
    if (colourless) return { planes: [gray], w, h };
    const scale = Math.min(1, segmentation.CONSTANTS.SEGMENT_SIDE / Math.max(width, height));
    const sw = Math.max(1, rint(width * scale)), sh = Math.max(1, rint(height * scale));
    const planes = [0, 1, 2].map((c) => {
      const channel = new Uint8Array(n);
      for (let i = 0; i < n; i++) channel[i] = data[4 * i + c];
      return Float32Array.from(resize(channel, width, height, sw, sh, false));
    });
    return { planes, w: sw, h: sh };
  }

  function cuesOf(borderFit, noise, coverage, fill, largest, textured) {
    return { border_fit: borderFit, noise, coverage, fill, largest_part: largest, textured };
  }

  function objectCues(mask, w, h, [top, bottom, left, right], borderFit, noise, textured) {
    const bw = right - left, bh = bottom - top;
    const inside = new Uint8Array(bw * bh);
    let pixels = 0;
    for (let y = 0; y < bh; y++) {
      for (let x = 0; x < bw; x++) {
        inside[y * bw + x] = mask[(y + top) * w + x + left];
        pixels += inside[y * bw + x];
      }
    }
    const largest = largestPiece(inside, bw, bh);
    return cuesOf(borderFit, noise, (bh * bw) / (w * h), pixels / inside.length, largest / Math.max(pixels, 1),
      textured);
  }

  // The largest 4-connected piece of a mask, in pixels (scipy.ndimage.label's default structure).
  function largestPiece(mask, w, h) {
    const seen = new Uint8Array(mask.length);
    const stack = new Int32Array(mask.length);
    let largest = 0;
    for (let start = 0; start < mask.length; start++) {
      if (!mask[start] || seen[start]) continue;
      let size = 0, top = 0;
      stack[top++] = start;
      seen[start] = 1;
      while (top) {
        const i = stack[--top];
        size++;
        const x = i % w;
        for (const j of [x > 0 ? i - 1 : -1, x < w - 1 ? i + 1 : -1, i - w, i + w]) {
          if (j >= 0 && j < mask.length && mask[j] && !seen[j]) {
            seen[j] = 1;
            stack[top++] = j;
          }
        }
      }
      largest = Math.max(largest, size);
    }
    return largest;
  }

  // The digital view of a picture on a transparent background composited over black, when its opaque part's own
  // levels fade toward black at its edge (its rim darker than FADE of its inside on average, its alpha aside: a dataset
  // image with its black made transparent), or null (_on_black).
  function onBlack(gray, alpha, w, h) {
    let anyOut = false;
    for (let i = 0; i < alpha.length; i++) if (alpha[i] < 0.5) { anyOut = true; break; }
    if (!anyOut) return null;
    const inside = (y, x) => y < 0 || x < 0 || y >= h || x >= w || alpha[y * w + x] >= 0.5; // outside the picture: in
    let rimSum = 0, rimCount = 0, coreSum = 0, coreCount = 0;
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        if (!inside(y, x)) continue;
        const rim = !inside(y - 1, x) || !inside(y + 1, x) || !inside(y, x - 1) || !inside(y, x + 1);
        if (rim) { rimSum += gray[y * w + x]; rimCount++; } else { coreSum += gray[y * w + x]; coreCount++; }
      }
    }
    if (!coreCount || rimSum / rimCount >= C.FADE * (coreSum / coreCount)) return null;
    return digitalView(gray.map((g, i) => f32(g * alpha[i])), null, w, h, true);
  }

  // The digital view of a picture in white or black whose levels are all in its alpha, composited over black when
  // white, else over white; or null: its luminance flat (DIGITAL_NOISE) near white or black where it shows, at least
  // GRADED of those pixels neither transparent nor opaque, its opacity reaching FULL_PEAK (_in_alpha).
  function inAlpha(gray, alpha, w, h) {
    let low = Infinity, high = -Infinity, sum = 0, shown = 0, graded = 0;
    for (let i = 0; i < alpha.length; i++) {
      if (alpha[i] <= 0.05) continue;
      low = Math.min(low, gray[i]);
      high = Math.max(high, gray[i]);
      sum += gray[i];
      shown++;
      if (alpha[i] < 0.95) graded++;
    }
    if (!shown) return null;
    const level = sum / shown;
    if (high - low > C.DIGITAL_NOISE || (C.BACKGROUND_BAND < level && level < 255 - C.BACKGROUND_BAND)) return null;
    if (graded / shown < C.GRADED || maxOf(alpha) < C.FULL_PEAK / 255) return null;
    const far = level > 127 ? 0 : 255;
    return digitalView(gray.map((g, i) => f32(f32(g * alpha[i]) + f32(far * f32(1 - alpha[i])))), null, w, h, true);
  }

  // Contrast of a cut-out on transparency, alpha as the object mask (_cutout_contrast).
  function cutoutContrast(gray, alpha) {
    const negatedInside = [];
    for (let i = 0; i < gray.length; i++) if (alpha[i] >= 0.5) negatedInside.push(f32(255 - gray[i]));
    if (!negatedInside.length) return new Float32Array(gray.length);
    const strongest = Math.max(quantile(negatedInside, 0.99), 1.0);
    const floor = f32(C.SILHOUETTE_FLOOR * strongest);
    return gray.map((g, i) => f32(Math.max(f32(255 - g), floor) * alpha[i]));
  }

  // `gray` stretched so that its smoothed range spans 0..255, the gain at most 0.99 MIN_CONTRAST (_stretch, step 1);
  // and the levels of black and white and one level of the format on the new scale (Levels).
  function stretch(gray, smooth) {
    const low = minOf(smooth), high = maxOf(smooth);
    const gain = f32(Math.max(Math.min(255 / Math.max(high - low, 1e-12), C.MIN_CONTRAST * 0.99), 1.0));
    const lowF = f32(low);
    const out = new Float32Array(gray.length);
    for (let i = 0; i < gray.length; i++) out[i] = f32(gray[i] - lowF) * gain;
    return { stretched: out, levels: [-low * gain, (255 - low) * gain, gain] };
  }

  // Contrast with the background surface (object positive), its noise, the border's fit and the pieces off it
  // (_background_contrast).
  function backgroundContrast(gray, levels, w, h) {
    const smooth = smoothed(gray, w, h);
    const { surface, noise, borderFit, pieces, offSurface } = backgroundSurface(smooth, levels, w, h);
    const difference = new Float32Array(smooth.length);
    for (let i = 0; i < smooth.length; i++) difference[i] = smooth[i] - surface[i];
    const t = threshold(difference, noise);
    let sum = 0;
    for (const d of difference) if (Math.abs(d) > t) sum += d;
    const sign = sum < 0 ? -1 : 1;
    const contrast = new Float32Array(gray.length);
    for (let i = 0; i < gray.length; i++) contrast[i] = sign * f32(gray[i] - surface[i]);
    return { contrast, noise, borderFit, pieces, offSurface };
  }

  // The background: a quadratic surface fitted to the border pixels on it (borderSurface), clipped to the
  // format's black and white where the fit took clipped light as censored (_background_surface); the border's
  // noise on it, and the median distance of the border pixels off it.
  function backgroundSurface(smooth, levels, w, h) {
    const { coef, residual, inliers, free, censored } = borderSurface(smooth, levels, w, h);
    const inRange = [], off = [];
    residual.forEach((r, i) => {
      if (inliers[i] && !free[i]) inRange.push(Math.abs(r));
      if (!inliers[i]) off.push(Math.abs(r));
    });
    const noise = inRange.length ? 1.4826 * median(inRange) : 0.0;
    const offSurface = off.length ? median(off) : 0.0;
    const kept = inliers.reduce((sum, v) => sum + v, 0);
    const surface = new Float32Array(w * h);
    const gx = Float32Array.from({ length: w }, (_, i) => f32(f32(i / Math.max(w - 1, 1)) - 0.5));
    const gy = Float32Array.from({ length: h }, (_, i) => f32(f32(i / Math.max(h - 1, 1)) - 0.5));
    const [low, high] = censored ? levels : [-Infinity, Infinity];
    for (let y = 0; y < h; y++) {
      const yy = gy[y], y2 = f32(yy * yy), rowBase = coef[0] + coef[2] * yy + coef[4] * y2;
      for (let x = 0; x < w; x++) {
        const xx = gx[x];
        const level = rowBase + coef[1] * xx + coef[3] * f32(xx * xx) + coef[5] * f32(xx * yy);
        surface[y * w + x] = Math.min(Math.max(level, low), high);
      }
    }
    const borderFit = residual.length ? kept / residual.length : 0.0;
    return { surface, noise, borderFit, pieces: borderPieces(inliers), offSurface };
  }

  // Runs of PIECE_RUN or more border pixels off the surface, going round the border; 1 when none is on it
  // (_border_pieces).
  function borderPieces(inliers) {
    const n = inliers.length, first = inliers.indexOf(1);
    if (n === 0) return 0;
    if (first < 0) return 1;
    let pieces = 0, run = 0;
    for (let k = 1; k <= n; k++) { // from the pixel after an inlier round to it, so no run wraps
      if (inliers[(first + k) % n]) {
        if (run >= C.PIECE_RUN) pieces++;
        run = 0;
      } else run++;
    }
    return pieces;
  }

  // The background's quadratic surface fitted to the border, grown from the most common border level; where light
  // clipped, a censored fit too, taken when it puts CENSORED_GAIN more of the border on the surface: its
  // coefficients, and per border pixel its level, residual and whether it lies on it (_border_surface).
  function borderSurface(smooth, levels, w, h) {
    const [ys, xs] = borderCoordinates(h, w);
    const n = ys.length;
    const values = new Float32Array(n);
    const design = Array.from({ length: 6 }, () => new Float64Array(n)); // columns: 1, x, y, x^2, y^2, xy
    for (let i = 0; i < n; i++) {
      values[i] = smooth[ys[i] * w + xs[i]];
      const x = xs[i] / Math.max(w - 1, 1) - 0.5, y = ys[i] / Math.max(h - 1, 1) - 0.5;
      [1, x, y, x * x, y * y, x * y].forEach((term, j) => { design[j][i] = term; });
    }
    const start = [modeLevel(values), 0, 0, 0, 0, 0];
    const steps = new Float32Array(Math.max(n - 1, 0));
    for (let i = 1; i < n; i++) steps[i - 1] = Math.abs(f32(values[i] - values[i - 1]));
    const tolerance = Math.max(steps.length ? 4 * 1.4826 * median(steps) : 0, 4.0);
    const plain = grown(values, design, start, tolerance, -Infinity, Infinity, C.PLAIN_ROUNDS, 0.0);
    const band = C.CLIPPED_BAND * levels[2];
    const darkBelow = levels[0] + band, brightAbove = levels[1] - band;
    const off = plain.inliers.reduce((sum, v) => sum + 1 - v, 0);
    // Nothing clipped, or too little off the plain surface for the censored fit to gain.
    if (!values.some((v) => v <= darkBelow || v >= brightAbove) || off / n < C.CENSORED_GAIN) return plain;
    // The first levels in range beyond the clipped band must be within reach of a fit at its limit.
    const censored = grown(values, design, start, Math.max(tolerance, 2 * band), darkBelow, brightAbove,
      C.FIT_ROUNDS, C.SETTLED);
    const share = (fit) => fit.inliers.reduce((sum, v) => sum + v, 0) / n;
    return share(censored) >= share(plain) + C.CENSORED_GAIN ? censored : plain;
  }

  // Least squares of the border's values on the design over the pixels within `tolerance` of the fit, grown from
  // `start`; pixels at or below `darkBelow` or above `brightAbove` beyond the fit are imputed at its level with
  // the small weight CLIPPED_WEIGHT; solved about the starting level (_grown).
  function grown(values, design, start, tolerance, darkBelow, brightAbove, rounds, settled) {
    const n = values.length;
    let coef = start;
    const offset = start[0];
    const fittedOf = (c) => Float64Array.from(values, (_, i) => { // design @ c, in float64
      let fitted = 0;
      for (let j = 0; j < 6; j++) fitted += design[j][i] * c[j];
      return fitted;
    });
    const freeOf = (fitted) => Uint8Array.from(values, (v, i) =>
      (v >= brightAbove && fitted[i] >= v) || (v <= darkBelow && fitted[i] <= v) ? 1 : 0);
    const lightly = Math.sqrt(C.CLIPPED_WEIGHT);
    let fitted = fittedOf(coef);
    for (let round = 0; round < rounds; round++) {
      const free = freeOf(fitted);
      const inliers = [];
      for (let i = 0; i < n; i++) if (free[i] || Math.abs(values[i] - fitted[i]) <= tolerance) inliers.push(i);
      if (inliers.length < 3) break;
      const weight = Float64Array.from(inliers, (i) => (free[i] ? lightly : 1.0));
      const pick = (array) => Float64Array.from(inliers, (i, k) => array[i] * weight[k]);
      const seen = Float64Array.from(values, (v, i) => (free[i] ? fitted[i] : v) - offset);
      coef = leastSquares(...householder(design.map(pick), pick(seen)));
      coef[0] += offset;
      const before = fitted;
      fitted = fittedOf(coef);
      let moved = 0;
      for (let i = 0; i < n; i++) moved = Math.max(moved, Math.abs(fitted[i] - before[i]));
      if (moved < settled) break;
    }
    const free = freeOf(fitted);
    const residual = Float64Array.from(values, (v, i) => (free[i] ? 0.0 : v - fitted[i]));
    const inliers = Uint8Array.from(residual, (r) => (Math.abs(r) <= tolerance ? 1 : 0));
    return { coef, fitted, residual, inliers, free, censored: darkBelow > -Infinity };
  }

  function dot(a, b) {
    let s = 0;
    for (let i = 0; i < a.length; i++) s += a[i] * b[i];
    return s;
  }

  // Householder QR of the columns [m] of a design and its targets [m]: (the columns of R [k], Q^T targets [k]),
  // which have the least-squares solutions and singular values of the design, for a solve k x k in size.
  function householder(columns, targets) {
    const k = columns.length, m = targets.length;
    const a = columns.map((column) => Float64Array.from(column));
    const b = Float64Array.from(targets);
    for (let j = 0; j < Math.min(k, m); j++) {
      let norm = 0;
      for (let i = j; i < m; i++) norm += a[j][i] ** 2;
      norm = Math.sqrt(norm);
      if (norm === 0) continue;
      const alpha = a[j][j] > 0 ? -norm : norm;
      const v = new Float64Array(m - j);
      for (let i = j; i < m; i++) v[i - j] = a[j][i];
      v[0] -= alpha;
      const vv = dot(v, v);
      if (vv === 0) continue;
      for (const column of [...a.slice(j), b]) {
        let projection = 0;
        for (let i = j; i < m; i++) projection += v[i - j] * column[i];
        const scale = (2 * projection) / vv;
        for (let i = j; i < m; i++) column[i] -= scale * v[i - j];
      }
    }
    const size = Math.min(k, m);
    return [a.map((column) => column.slice(0, size)), b.slice(0, size), m];
  }

  // The minimum-norm least-squares solution (np.linalg.lstsq, rcond=None: singular values at most
  // eps * max(M, N) times the largest are dropped), by a one-sided Jacobi SVD of the design (Hestenes): the
  // border of a picture whose background shows on one side only leaves some terms undetermined, and the SVD of
  // the design itself, unlike the normal equations, tells those apart.
  function leastSquares(columns, targets, rows = targets.length) { // rows: of the design, for rcond
    const m = rows, k = columns.length;
    const a = columns.map((column) => Float64Array.from(column));
    const v = Array.from({ length: k }, (_, i) => Float64Array.from({ length: k }, (_, j) => (i === j ? 1 : 0)));
    for (let sweep = 0; sweep < 60; sweep++) {
      let rotated = false;
      for (let p = 0; p < k; p++) {
        for (let q = p + 1; q < k; q++) {
          const alpha = dot(a[p], a[p]), beta = dot(a[q], a[q]), gamma = dot(a[p], a[q]);
          if (Math.abs(gamma) <= 1e-15 * Math.sqrt(alpha * beta) || gamma === 0) continue;
          rotated = true;
          const zeta = (beta - alpha) / (2 * gamma);
          const t = Math.sign(zeta || 1) / (Math.abs(zeta) + Math.sqrt(1 + zeta * zeta));
          const c = 1 / Math.sqrt(1 + t * t), s = c * t;
          for (const columns of [a, v]) {
            const cp = columns[p], cq = columns[q];
            for (let r = 0; r < cp.length; r++) {
              const x = cp[r], y = cq[r];
              cp[r] = c * x - s * y;
              cq[r] = s * x + c * y;
            }
          }
        }
      }
      if (!rotated) break;
    }
    const singular = a.map((column) => Math.sqrt(dot(column, column)));
    const cutoff = 2.220446049250313e-16 * Math.max(m, k) * Math.max(...singular);
    const solution = new Array(k).fill(0);
    for (let j = 0; j < k; j++) {
      if (singular[j] <= cutoff) continue;
      const coefficient = dot(a[j], targets) / singular[j] ** 2; // (u_j . b) / s_j, u_j = a_j / s_j
      for (let i = 0; i < k; i++) solution[i] += v[j][i] * coefficient; // v[j]: the j-th right singular vector
    }
    return solution;
  }

  // The most common level, on a histogram smoothed over +-3 levels (_mode_level).
  function modeLevel(values) {
    const counts = new Float64Array(256);
    for (const v of values) counts[Math.min(255, Math.max(0, rint(v)))]++;
    let peak = 0, best = -1;
    for (let i = 0; i < 256; i++) {
      let s = 0;
      for (let j = Math.max(0, i - 3); j <= Math.min(255, i + 3); j++) s += counts[j];
      if (s > best) { best = s; peak = i; }
    }
    const near = [];
    for (const v of values) if (Math.abs(v - peak) <= 3) near.push(v);
    return near.length ? median(near) : peak;
  }

  function noiseFloor(noise) {
    return Math.max(C.NOISE_SIGMAS * noise, C.MIN_CONTRAST);
  }

  function threshold(contrast, noise) {
    const magnitudes = new Float64Array(contrast.length);
    for (let i = 0; i < contrast.length; i++) magnitudes[i] = Math.abs(contrast[i]);
    const peak = contrast.length ? quantile(magnitudes, 0.999, true) : 0;
    return Math.max(noiseFloor(noise), C.PEAK_FRACTION * peak);
  }

  // (top, bottom, left, right) of the set pixels of a 0/1 mask [h, w], or null (_object_box).
  function objectBox(mask, w, h) {
    let top = h, bottom = -1, left = w, right = -1;
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        if (!mask[y * w + x]) continue;
        if (y < top) top = y;
        if (y > bottom) bottom = y;
        if (x < left) left = x;
        if (x > right) right = x;
      }
    }
    return bottom < 0 ? null : [top, bottom + 1, left, right + 1];
  }

  // Box mean over (2r+1)^2 pixels, edges replicated, via an integral image in float64 (_smooth).
  function smoothed(values, w, h, radius = C.SMOOTH_RADIUS) {
    const size = 2 * radius + 1, pw = w + 2 * radius, ph = h + 2 * radius, stride = pw + 1;
    const column = Int32Array.from({ length: pw }, (_, x) => Math.min(Math.max(x - radius, 0), w - 1));
    const integral = new Float64Array(stride * (ph + 1));
    for (let y = 0; y < ph; y++) { // padded values summed down the columns first, as cumsum(0).cumsum(1)
      const row = Math.min(Math.max(y - radius, 0), h - 1) * w, above = y * stride + 1, here = above + stride;
      for (let x = 0; x < pw; x++) integral[here + x] = integral[above + x] + values[row + column[x]];
    }
    for (let y = 1; y <= ph; y++) {
      const here = y * stride;
      for (let x = 1; x <= pw; x++) integral[here + x] += integral[here + x - 1];
    }
    const out = new Float32Array(w * h);
    const area = size ** 2, down = size * stride;
    for (let y = 0; y < h; y++) {
      const top = y * stride;
      for (let x = 0; x < w; x++) {
        const a = top + x;
        out[y * w + x] = (integral[a + down + size] - integral[a + size] - integral[a + down] + integral[a]) / area;
      }
    }
    return out;
  }

  // Row and column indices of the outermost pixels, once each, going round the picture (_border_coordinates).
  function borderCoordinates(h, w) {
    const ys = [], xs = [];
    if (h < 3 || w < 3) {
      for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) { ys.push(y); xs.push(x); }
      return [ys, xs];
    }
    for (let x = 0; x < w; x++) { ys.push(0); xs.push(x); }
    for (let y = 1; y < h - 1; y++) { ys.push(y); xs.push(w - 1); }
    for (let x = w - 1; x >= 0; x--) { ys.push(h - 1); xs.push(x); }
    for (let y = h - 2; y >= 1; y--) { ys.push(y); xs.push(0); }
    return [ys, xs];
  }

  // Longer side to SIDE pixels, aspect kept, centred on SIDE x SIDE with an odd pixel above and left (_fit).
  function fit(crop, w, h) {
    const scale = SIDE / Math.max(h, w);
    const sw = Math.max(1, rint(w * scale)), sh = Math.max(1, rint(h * scale));
    const small = resize(crop, w, h, sw, sh, true);
    const framed = new Float32Array(SIDE * SIDE);
    const top = Math.floor((SIDE - sh + 1) / 2), left = Math.floor((SIDE - sw + 1) / 2);
    for (let y = 0; y < sh; y++) for (let x = 0; x < sw; x++) framed[(top + y) * SIDE + left + x] = small[y * sw + x];
    return framed;
  }

  // What segmentation.js, shadows.js and shading.js share of the arithmetic above.
  const LINEAR = {
    rint,
    quantile,
    householder,
    leastSquares,
    resampleBox: (plane, w, h, outW, outH) => resample(plane, w, h, outW, outH, [0, 0, w, h], true, BOX),
    objectBox,
    rotated,
  };

  return { CONSTANTS, CUE_NAMES, framePicture };
});
