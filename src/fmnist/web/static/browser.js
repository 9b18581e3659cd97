"use strict";
// The page's in-browser back end (fmnist export --web): the model runs in onnxruntime-web's WebAssembly build,
// a picture is framed by framing.js as fmnist.images frames it, and the answer is built as fmnist.answer builds
// it: the graph's calibrated probabilities, and the not-a-garment verdict from the conformal p-values of the
// model's energy and of the picture cues against the reference values in the sidecar (fmnist.trust.ood).
//
// window.fmnist.classify(source, {input}) takes an image URL, a Blob (a File) or an ImageBitmap and resolves to
// one prediction with the fields of an element of POST /predict's `predictions` (and `input`, the 28x28 view
// as a PNG data URL, when asked); classifyMany(sources) answers a list in one run of the model.
(function () {
  const framing = window.fmnistFraming;
  const SIDE = framing.CONSTANTS.SIDE;
  const TOP_K = 5; // classes listed per prediction, as the server lists them (serve/limits.py)
  // Which end of each cue is unusual (fmnist.trust.ood.UNUSUAL): low energy, either end of a picture cue.
  const UNUSUAL = { energy: "low", ...Object.fromEntries(framing.CUE_NAMES.map((name) => [name, "both"])) };

  ort.env.wasm.numThreads = 1; // threads need a cross-origin-isolated page, which a plain static server does not give
  ort.env.wasm.wasmPaths = new URL("static/ort/", document.baseURI).href;

  const loaded = (async () => {
    const response = await fetch("model.json");
    if (!response.ok) throw new Error(`model.json: the server answered ${response.status}`);
    const facts = await response.json();
    const session = await ort.InferenceSession.create("model.onnx", { executionProviders: ["wasm"] });
    const references = Object.fromEntries(
      Object.entries(facts.trust.references).map(([cue, values]) => [cue, Float64Array.from(values)]));
    return { facts, session, references };
  })();

  async function bitmapOf(source, name) {
    if (typeof ImageBitmap !== "undefined" && source instanceof ImageBitmap) return source;
    let blob = source;
    if (!(source instanceof Blob)) {
      const response = await fetch(source);
      if (!response.ok) throw new Error(`${name}: the server answered ${response.status}`);
      blob = await response.blob();
    }
    try {
      // Upright per the EXIF orientation, and the file's own values: no colour management, no premultiplication.
      return await createImageBitmap(blob, {
        imageOrientation: "from-image", premultiplyAlpha: "none", colorSpaceConversion: "none",
      });
    } catch {
      throw new Error(`${name}: not an image file this browser can read`);
    }
  }

  async function pixelsOf(source, name) {
    const bitmap = await bitmapOf(source, name);
    const canvas = new OffscreenCanvas(bitmap.width, bitmap.height);
    const context = canvas.getContext("2d", { willReadFrequently: true });
    context.drawImage(bitmap, 0, 0);
    return context.getImageData(0, 0, bitmap.width, bitmap.height);
  }

  function nameOf(source, index) {
    if (typeof source === "string") return source;
    return source instanceof File ? source.name : `image ${index}`;
  }

  // Conformal p-values (fmnist.trust.ood.p_values): the share of references at least as unusual; NaN gives 1.
  function pValue(value, reference, unusual) {
    if (Number.isNaN(value)) return 1;
    const m = reference.length;
    let below = 0, atOrBelow = 0;
    for (const r of reference) {
      if (r < value) below++;
      if (r <= value) atOrBelow++;
    }
    const low = (1 + atOrBelow) / (1 + m), high = (1 + m - below) / (1 + m);
    return { low, high, both: Math.min(1, 2 * Math.min(low, high)) }[unusual];
  }

  // T * logsumexp(logits / T) at T = 1 (fmnist.trust.ood.energy), rounded to float32 as torch computes it.
  function energy(logits) {
    const top = Math.max(...logits);
    let sum = 0;
    for (const l of logits) sum += Math.exp(l - top);
    return Math.fround(top + Math.log(sum));
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

  function answer({ facts, references }, logits, probabilities, framed, withInput) {
    const order = [...probabilities.keys()].sort((a, b) => probabilities[b] - probabilities[a]);
    const detector = Object.keys(references).length > 0;
    const cues = { energy: energy(logits), ...(framed.cues || {}) };
    let score = null;
    if (detector) {
      score = Math.min(...Object.entries(references).map(([cue, reference]) =>
        pValue(cue in cues ? cues[cue] : NaN, reference, UNUSUAL[cue])));
    }
    const prediction = {
      class_index: order[0],
      class_name: facts.classes[order[0]],
      probability: probabilities[order[0]],
      top: order.slice(0, TOP_K).map((k) => [facts.classes[k], probabilities[k]]),
      garment: score === null || score >= facts.trust.threshold,
      in_distribution_score: score,
      ood_threshold: detector ? facts.trust.threshold : null,
      calibrated: facts.trust.temperature !== null,
    };
    if (withInput) prediction.input = viewUrl(framed.image);
    return prediction;
  }

  async function classifyMany(sources, { input = false } = {}) {
    const model = await loaded;
    const framed = [];
    for (const [index, source] of sources.entries()) {
      const name = nameOf(source, index);
      try {
        framed.push(framing.framePicture(await pixelsOf(source, name)));
      } catch (err) {
        throw err.message.startsWith(name) ? err : new Error(`${name}: ${err.message}`);
      }
    }
    const pixels = new Uint8Array(framed.length * SIDE * SIDE);
    framed.forEach((f, i) => pixels.set(f.image, i * SIDE * SIDE));
    const feeds = { pixels: new ort.Tensor("uint8", pixels, [framed.length, SIDE, SIDE]) };
    const outputs = await model.session.run(feeds, ["logits", "probabilities"]);
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
