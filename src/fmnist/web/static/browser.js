"use strict";
// The page's in-browser back end (fmnist export --web): the model runs in onnxruntime-web's WebAssembly build,
// a picture is framed by framing.js as fmnist.images frames it, and the answer is built as fmnist.answer builds
// it: the graph's calibrated probabilities, and the not-a-garment verdict from the conformal p-values of the
// detector's cues (the model's energy, the 28x28 view's shape, residual and coarse layout, the picture's framing
// cues) against the reference values in the sidecar, as fmnist.trust scores them (ood.calibrated; ood.combined
// for a detector without held-out calibration).
//
// window.fmnist.classify(source, {input}) takes an image URL, a Blob (a File) or an ImageBitmap and resolves to
// one prediction with the fields of an element of POST /predict's `predictions` (and `input`, the 28x28 view
// as a PNG data URL, when asked); classifyMany(sources) answers a list in one run of the model.
(function () {
  const framing = window.fmnistFraming;
  const SIDE = framing.CONSTANTS.SIDE;
  const TOP_K = 5; // classes listed per prediction, as the server lists them (serve/limits.py)
  // Which end of each cue is unusual (fmnist.trust.ood.UNUSUAL).
  const UNUSUAL = {
    energy: "low", span: "low", ink: "both", stroke: "both", flat: "both", sharpness: "low", residual: "high",
    coarse: "high",
    ...Object.fromEntries(framing.CUE_NAMES.map((name) => [name, "both"])),
  };
  const SECOND_ONLY = ["sharpness"]; // ood.SECOND_ONLY: never a picture's first unusual cue, only its second
  const SURFACE_CUES = ["border_fit", "noise"]; // ood.SURFACE_CUES: not weighed for a picture on a textured surface
  const TIE_BREAK = 1e-6; // ood.TIE_BREAK: the product of the p-values orders pictures whose smallest ones tie
  const INK_LEVEL = 50, FULL_LEVEL = 200; // ood.view_cues' levels of ink and of ink at full strength
  const COARSE_BLOCK = 4; // ood.COARSE_BLOCK: the coarse cue pools blocks of 4x4 pixels

  ort.env.wasm.numThreads = 1; // threads need a cross-origin-isolated page, which a plain static server does not give
  ort.env.wasm.wasmPaths = new URL("static/ort/", document.baseURI).href;

  const loaded = (async () => {
    const response = await fetch("model.json");
    if (!response.ok) throw new Error(`model.json: the server answered ${response.status}`);
    const facts = await response.json();
    const trust = facts.trust || {};
    for (const cue of [...Object.keys(trust.references || {}), ...Object.keys(trust.plain || {})]) {
      if (!(cue in UNUSUAL)) throw new Error(`model.json: the detector weighs "${cue}", which this page does not compute`);
    }
    const graph = await ort.InferenceSession.create("model.onnx", { executionProviders: ["wasm"] });
    return { facts, graph };
  })();

  // Whether a file has no colour planes (Pillow opens it as "L" or "LA"): a PNG of colour type 0 or 4, a JPEG
  // with one component. framing.js then segments its grey plane, as Python does.
  function colourless(bytes) {
    if (bytes[0] === 0x89 && bytes[1] === 0x50) return bytes[25] === 0 || bytes[25] === 4; // IHDR colour type
    if (bytes[0] !== 0xff || bytes[1] !== 0xd8) return false;
    for (let at = 2; at + 9 < bytes.length;) { // JPEG markers up to the start of frame
      if (bytes[at] !== 0xff) return false;
      const marker = bytes[at + 1];
      if (marker >= 0xc0 && marker <= 0xcf && ![0xc4, 0xc8, 0xcc].includes(marker)) return bytes[at + 9] === 1;
      at += 2 + ((bytes[at + 2] << 8) | bytes[at + 3]);
    }
    return false;
  }

  async function pixelsOf(source, name) {
    let bitmap = source, grey = false;
    if (!(typeof ImageBitmap !== "undefined" && source instanceof ImageBitmap)) {
      let blob = source;
      if (!(source instanceof Blob)) {
        const response = await fetch(source);
        if (!response.ok) throw new Error(`${name}: the server answered ${response.status}`);
        blob = await response.blob();
      }
      grey = colourless(new Uint8Array(await blob.arrayBuffer()));
      try {
        // Upright per the EXIF orientation, and the file's own values: no colour management, no premultiplying.
        bitmap = await createImageBitmap(blob, {
          imageOrientation: "from-image", premultiplyAlpha: "none", colorSpaceConversion: "none",
        });
      } catch {
        throw new Error(`${name}: not an image file this browser can read`);
      }
    }
    const canvas = new OffscreenCanvas(bitmap.width, bitmap.height);
    const context = canvas.getContext("2d", { willReadFrequently: true });
    context.drawImage(bitmap, 0, 0);
    const { data, width, height } = context.getImageData(0, 0, bitmap.width, bitmap.height);
    return { data, width, height, colourless: grey };
  }

  function nameOf(source, index) {
    if (typeof source === "string") return source;
    return source instanceof File ? source.name : `image ${index}`;
  }

  // Conformal p-value (fmnist.trust.ood.p_values): the share of references at least as unusual; NaN gives 1.
  function pValue(value, reference, unusual) {
    if (value === undefined || Number.isNaN(value)) return 1;
    const m = reference.length;
    let below = 0, atOrBelow = 0;
    for (const r of reference) {
      if (r < value) below++;
      if (r <= value) atOrBelow++;
    }
    const low = (1 + atOrBelow) / (1 + m), high = (1 + m - below) / (1 + m);
    return { low, high, both: Math.min(1, 2 * Math.min(low, high)) }[unusual];
  }

  // The smallest p-value over the cues with references but SECOND_ONLY's, ties broken by the product of all, then
  // for a detector with a gate times min(1, second smallest of all / gate) (ood.unusualness).
  function unusualness(cues, references, gate) {
    const entries = Object.entries(references);
    const ps = entries.map(([cue, reference]) => pValue(cues[cue], reference, UNUSUAL[cue]));
    const product = ps.reduce((a, p) => a * p);
    const first = ps.filter((p, i) => !SECOND_ONLY.includes(entries[i][0]));
    const unusual = Math.min(...first) + TIE_BREAK * product;
    if (!gate || ps.length < 2) return unusual;
    const second = [...ps].sort((a, b) => a - b)[1];
    return unusual * Math.min(1, second / gate);
  }

  // The in-distribution score of one picture (trust.Trust.scores): a photo is ranked among held-out garment
  // photos, one on a textured surface among them judged without their surface cues, a plain 28x28 image among
  // plain ones (ood.calibrated); a detector without held-out values takes the smallest p-value (ood.combined).
  function score(trust, cues, photo) {
    const heldOut = trust.held_out || {};
    if (!Object.keys(heldOut).length) {
      return Math.min(...Object.entries(trust.references).map(([cue, r]) => pValue(cues[cue], r, UNUSUAL[cue])));
    }
    const references = photo ? trust.references : trust.plain;
    const textured = photo && heldOut.textured && Number.isNaN(cues[SURFACE_CUES[0]]);
    const unusual = unusualness(cues, references, trust.gate || 0); // gate 0: a detector stored before the gate
    return pValue(unusual, heldOut[textured ? "textured" : photo ? "photo" : "plain"], "low");
  }

  // The energy logsumexp(logits) in float64 (fmnist.trust.energies).
  function energy(logits) {
    const top = Math.max(...logits);
    let sum = 0;
    for (const l of logits) sum += Math.exp(l - top);
    return top + Math.log(sum);
  }

  // The 28x28 view's shape (fmnist.trust.ood.view_cues): the span of its ink, the ink's share, the share of ink
  // inside a filled region (all eight neighbours ink), the share of ink at full strength, and its sharpness: the
  // squared steps between neighbouring pixels over the squared deviations from the mean, from sums of integers
  // (exact in doubles, so the one division gives Python's bits).
  function viewCues(view) {
    const ink = (y, x) => y >= 0 && y < SIDE && x >= 0 && x < SIDE && view[y * SIDE + x] > INK_LEVEL;
    let count = 0, interior = 0, full = 0, top = SIDE, bottom = -1, left = SIDE, right = -1;
    let steps = 0, total = 0, squares = 0;
    for (let y = 0; y < SIDE; y++) {
      for (let x = 0; x < SIDE; x++) {
        const v = view[y * SIDE + x];
        total += v;
        squares += v * v;
        if (x + 1 < SIDE) steps += (view[y * SIDE + x + 1] - v) ** 2;
        if (y + 1 < SIDE) steps += (view[(y + 1) * SIDE + x] - v) ** 2;
        if (!ink(y, x)) continue;
        count++;
        full += view[y * SIDE + x] > FULL_LEVEL ? 1 : 0;
        [top, bottom, left, right] = [Math.min(top, y), Math.max(bottom, y), Math.min(left, x), Math.max(right, x)];
        let filled = true;
        for (let dy = -1; dy <= 1 && filled; dy++) for (let dx = -1; dx <= 1; dx++) filled = filled && ink(y + dy, x + dx);
        interior += filled ? 1 : 0;
      }
    }
    const span = Math.max(bottom - top + 1, right - left + 1, 0);
    const pixels = SIDE * SIDE, spread = pixels * squares - total * total;
    return {
      span, ink: count / pixels, stroke: interior / Math.max(count, 1), flat: full / Math.max(count, 1),
      sharpness: spread > 0 ? (pixels * steps) / spread : 0,
    };
  }

  function viewUrl(image) {
    const canvas = document.createElement("canvas");
    canvas.width = canvas.height = SIDE;
    const context = canvas.getContext("2d");
    const view = context.createImageData(SIDE, SIDE);
    image.forEach((v, i) => view.data.set([v, v, v, 255], 4 * i));
    context.putImageData(view, 0, 0);
    return canvas.toDataURL("image/png");
  }

  // The squared distance of the view (0..1) from the garment views' principal subspace: `basis` holds their
  // mean, then the directions (fmnist.trust.ood.residual).
  function residual(view, basis) {
    const x = Float64Array.from(view, (v, i) => v / 255 - basis[0][i]);
    const reconstructed = new Float64Array(x.length);
    for (const direction of basis.slice(1)) {
      let coefficient = 0;
      for (let i = 0; i < x.length; i++) coefficient += x[i] * direction[i];
      for (let i = 0; i < x.length; i++) reconstructed[i] += coefficient * direction[i];
    }
    let sum = 0;
    for (let i = 0; i < x.length; i++) sum += (x[i] - reconstructed[i]) ** 2;
    return sum;
  }

  // The smallest squared Mahalanobis distance of the view's pooled blocks (each one's mean, the exact sum / 16,
  // then each one's maximum, scaled to 0..1) to a class's Gaussian: `gaussians` holds each class's mean, then its
  // precision matrix (fmnist.trust.ood.coarse).
  function coarse(view, gaussians) {
    const blocks = SIDE / COARSE_BLOCK;
    const means = [], maxima = [];
    for (let r = 0; r < blocks; r++) {
      for (let c = 0; c < blocks; c++) {
        let sum = 0, peak = 0;
        for (let y = r * COARSE_BLOCK; y < (r + 1) * COARSE_BLOCK; y++) {
          for (let x = c * COARSE_BLOCK; x < (c + 1) * COARSE_BLOCK; x++) {
            sum += view[y * SIDE + x];
            peak = Math.max(peak, view[y * SIDE + x]);
          }
        }
        means.push(sum / (COARSE_BLOCK * COARSE_BLOCK) / 255);
        maxima.push(peak / 255);
      }
    }
    const pools = [...means, ...maxima];
    let nearest = Infinity;
    for (const [mean, ...precision] of gaussians) {
      const diff = pools.map((v, i) => v - mean[i]);
      let distance = 0;
      for (let i = 0; i < diff.length; i++) {
        let weighted = 0;
        for (let j = 0; j < diff.length; j++) weighted += diff[j] * precision[j][i];
        distance += weighted * diff[i];
      }
      nearest = Math.min(nearest, distance);
    }
    return nearest;
  }

  // The framing cues; those of the surface missing (NaN) for a picture on a textured one (ood.picture_cues), when
  // the detector has a kind for such pictures (trust.Trust.scores: one fitted before judges the surface too).
  function pictureCues(found, trust) {
    const byObject = (trust.held_out || {}).textured && found && found.textured;
    if (!byObject) return found || {};
    return { ...found, ...Object.fromEntries(SURFACE_CUES.map((name) => [name, NaN])) };
  }

  function answer({ facts }, logits, probabilities, framed, withInput) {
    const order = [...probabilities.keys()].sort((a, b) => probabilities[b] - probabilities[a]);
    const detector = Object.keys(facts.trust.references).length > 0;
    const cues = { energy: energy(logits), ...viewCues(framed.image), ...pictureCues(framed.cues, facts.trust) };
    if (facts.trust.basis) cues.residual = residual(framed.image, facts.trust.basis);
    if (facts.trust.gaussians) cues.coarse = coarse(framed.image, facts.trust.gaussians);
    const found = detector ? score(facts.trust, cues, framed.cues !== null) : null;
    const prediction = {
      class_index: order[0],
      class_name: facts.classes[order[0]],
      probability: probabilities[order[0]],
      top: order.slice(0, TOP_K).map((k) => [facts.classes[k], probabilities[k]]),
      garment: found === null || found >= facts.trust.threshold,
      in_distribution_score: found,
      ood_threshold: detector ? facts.trust.threshold : null,
      calibrated: facts.trust.temperature !== null,
    };
    if (withInput) prediction.input = viewUrl(framed.image);
    return prediction;
  }

  async function classifyMany(sources, { input = false } = {}) {
    const model = await loaded;
    // Fetched and decoded all at once (the browser overlaps the requests and the decoding), framed in turn.
    const decoded = sources.map((source, index) => pixelsOf(source, nameOf(source, index)));
    decoded.forEach((pending) => pending.catch(() => {})); // rejections are reported in order, below
    const framed = [];
    for (const [index, pending] of decoded.entries()) {
      const name = nameOf(sources[index], index);
      try {
        framed.push(framing.framePicture(await pending));
      } catch (err) {
        throw err.message.startsWith(name) ? err : new Error(`${name}: ${err.message}`);
      }
    }
    const pixels = new Uint8Array(framed.length * SIDE * SIDE);
    framed.forEach((f, i) => pixels.set(f.image, i * SIDE * SIDE));
    const feeds = { pixels: new ort.Tensor("uint8", pixels, [framed.length, SIDE, SIDE]) };
    const outputs = await model.graph.run(feeds, ["logits", "probabilities"]);
    const classes = model.facts.classes.length;
    const row = (tensor, i) => Array.from(tensor.data.subarray(i * classes, (i + 1) * classes));
    return framed.map((f, i) =>
      answer(model, row(outputs.logits, i), row(outputs.probabilities, i), f, input));
  }

  function describe({ facts }) {
    const config = facts.source.config || {};
    return {
      kind: `${config.model || "model"} ${facts.precision}`,
      file: "model.onnx",
      sha256: facts.onnx_sha256.slice(0, 12),
      device: `this browser (onnxruntime-web ${ort.env.versions.web}, WebAssembly)`,
    };
  }

  window.fmnist = {
    ready: loaded.then(describe),
    classify: async (source, options) => (await classifyMany([source], options))[0],
    classifyMany,
  };
})();
