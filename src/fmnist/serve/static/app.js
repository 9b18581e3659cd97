"use strict";
// The page of `fmnist serve` and of `fmnist export --web`: a photo (dropped, picked, pasted or taken) or a drawing
// is classified, and the answer (or "doesn't look like clothing"), the 28x28 view the model saw and the top classes
// are shown. One page, two back ends: the server's POST /predict, or, in an exported page, window.fmnist
// (browser.js), which runs the model in this browser.

const $ = (selector) => document.querySelector(selector);
const percent = (p) => (p * 100).toFixed(p >= 0.995 || p < 0.01 ? 0 : 1) + "%";

let last = null;  // the image shown, classified again when the explanation is switched on or off

const inBrowser = Boolean(window.fmnist);

async function predict(blob, name) {
  if (inBrowser) return window.fmnist.classify(new File([blob], name, { type: blob.type }), { input: true });
  const form = new FormData();
  form.append("file", blob, name);
  const url = $("#explain").checked ? "/predict?input=1&explain=1" : "/predict?input=1";
  const response = await fetch(url, { method: "POST", body: form });
  const body = await response.json().catch(() => ({ error: `server answered ${response.status}` }));
  if (!response.ok) throw new Error(body.error || `server answered ${response.status}`);
  return body.predictions[0];
}

async function classify(blob, name) {
  last = { blob, name };
  $("#busy").hidden = false;
  $("#error").hidden = true;
  try {
    show(await predict(blob, name));
  } catch (err) {
    $("#error").textContent = err.message === "Failed to fetch" ? "The server cannot be reached." : err.message;
    $("#error").hidden = false;
  } finally {
    $("#busy").hidden = true;
  }
}

function show(prediction) {
  $("#empty").hidden = true;
  $("#result").hidden = false;
  // Not a garment: the verdict is the answer, the best guess only small print (docs/TRUST.md).
  const garment = prediction.garment !== false;
  $("#result").classList.toggle("not-garment", !garment);
  $("#eyebrow").textContent = garment ? "It looks like" : "Hmm";
  $("#answer").textContent = garment ? prediction.class_name : "This doesn't look like clothing";
  $("#confidence").innerHTML = "";
  const strong = document.createElement("strong");
  strong.textContent = percent(prediction.probability);
  const uncalibrated = prediction.calibrated === false ? " (uncalibrated)" : "";
  if (garment) {
    $("#confidence").append(strong, " confident" + uncalibrated);
  } else {
    const guess = document.createElement("small");
    guess.id = "best-guess";
    guess.textContent = `None of the ten classes fits this picture. Best guess: ${prediction.class_name} ` +
      `(${percent(prediction.probability)}${uncalibrated}).`;
    $("#confidence").append(guess);
  }
  $("#input-view").src = prediction.input;
  $("#why").hidden = !prediction.explanation;
  if (prediction.explanation) {
    $("#heatmap-view").src = prediction.explanation.heatmap;
    $("#heatmap-view").title = `Computed by ${prediction.explanation.method}`;
  }
  const bars = $("#bars");
  bars.replaceChildren(...prediction.top.map(([name, p]) => {
    const item = document.createElement("li");
    item.className = "bar";
    item.innerHTML = '<div class="bar-label"><span class="name"></span><span class="p"></span></div>' +
      '<div class="bar-track"><div class="bar-fill"></div></div>';
    item.querySelector(".name").textContent = name;
    item.querySelector(".p").textContent = percent(p);
    item.querySelector(".bar-fill").style.width = Math.max(p * 100, 0.5) + "%";
    return item;
  }));
}

$("#explain").addEventListener("change", () => { if (last) classify(last.blob, last.name); });

// Photo: pick, drop, paste or take one with the camera (below).
function usePhoto(file) {
  if (!file) return;
  const preview = $("#photo-preview");
  if (preview.src) URL.revokeObjectURL(preview.src);
  preview.src = URL.createObjectURL(file);
  preview.hidden = false;
  $("#drop-hint").hidden = true;
  selectTab("tab-photo");
  classify(file, file.name || "pasted image");
}

$("#pick").addEventListener("click", () => $("#file-input").click());
$("#file-input").addEventListener("change", (event) => {
  usePhoto(event.target.files[0]);
  event.target.value = "";  // picking the same file again still fires "change"
});
const dropZone = $("#drop-zone");
["dragenter", "dragover"].forEach((type) => dropZone.addEventListener(type, (event) => {
  event.preventDefault();
  dropZone.classList.add("dragging");
}));
["dragleave", "drop"].forEach((type) => dropZone.addEventListener(type, () => dropZone.classList.remove("dragging")));
dropZone.addEventListener("drop", (event) => {
  event.preventDefault();
  usePhoto(event.dataTransfer.files[0]);
});
window.addEventListener("dragover", (event) => event.preventDefault());  // a miss must not navigate away
window.addEventListener("drop", (event) => event.preventDefault());
document.addEventListener("paste", (event) => {
  const item = [...event.clipboardData.items].find((entry) => entry.type.startsWith("image/"));
  if (item) usePhoto(item.getAsFile());
});

// Camera: where the browser allows it (a secure context: TLS or localhost), a live view and a shutter.
const cameraButton = $("#camera");
const cameraView = $("#camera-view");
let stream = null;

function stopCamera() {
  if (stream) stream.getTracks().forEach((track) => track.stop());
  stream = null;
  cameraView.hidden = true;
  cameraButton.textContent = "Use the camera";
}

if (navigator.mediaDevices && navigator.mediaDevices.getUserMedia) {
  cameraButton.hidden = false;
  cameraButton.addEventListener("click", async () => {
    if (!stream) {
      try {
        stream = await navigator.mediaDevices.getUserMedia({ video: { facingMode: "environment" } });
      } catch (err) {
        $("#error").textContent = `The camera is not available: ${err.message}`;
        $("#error").hidden = false;
        return;
      }
      cameraView.srcObject = stream;
      cameraView.hidden = false;
      $("#photo-preview").hidden = true;
      $("#drop-hint").hidden = true;
      cameraButton.textContent = "Take the photo";
      return;
    }
    const still = document.createElement("canvas");
    still.width = cameraView.videoWidth;
    still.height = cameraView.videoHeight;
    still.getContext("2d").drawImage(cameraView, 0, 0);
    stopCamera();
    still.toBlob((blob) => usePhoto(new File([blob], "camera.jpg", { type: "image/jpeg" })), "image/jpeg", 0.92);
  });
}

// Tabs.
function selectTab(id) {
  document.querySelectorAll(".tab").forEach((tab) => {
    const active = tab.id === id;
    tab.classList.toggle("active", active);
    tab.setAttribute("aria-selected", String(active));
    $("#" + tab.dataset.panel).hidden = !active;
  });
}
document.querySelectorAll(".tab").forEach((tab) => tab.addEventListener("click", () => selectTab(tab.id)));

// Drawing: dark strokes on white, like a pen on paper; the server's conversion handles the polarity.
const canvas = $("#canvas");
const pen = canvas.getContext("2d");
let drawing = false;
let drawn = false;

function clearCanvas() {
  pen.fillStyle = "#fff";
  pen.fillRect(0, 0, canvas.width, canvas.height);
  drawn = false;
}

function point(event) {
  const box = canvas.getBoundingClientRect();
  return [(event.clientX - box.left) * canvas.width / box.width, (event.clientY - box.top) * canvas.height / box.height];
}

canvas.addEventListener("pointerdown", (event) => {
  drawing = true;
  canvas.setPointerCapture(event.pointerId);
  pen.lineWidth = 22;
  pen.lineCap = pen.lineJoin = "round";
  pen.strokeStyle = "#111";
  pen.beginPath();
  pen.moveTo(...point(event));
  pen.lineTo(...point(event));
  pen.stroke();
  drawn = true;
});
canvas.addEventListener("pointermove", (event) => {
  if (!drawing) return;
  pen.lineTo(...point(event));
  pen.stroke();
});
canvas.addEventListener("pointerup", () => { drawing = false; });
$("#clear").addEventListener("click", clearCanvas);
$("#classify-drawing").addEventListener("click", () => {
  if (!drawn) {
    $("#error").textContent = "Draw something first.";
    $("#error").hidden = false;
    return;
  }
  canvas.toBlob((blob) => classify(blob, "drawing.png"), "image/png");
});
clearCanvas();

// Which model answers. In the browser there is no server to explain the answer or to serve an API.
function describeModel(model, device) {
  $("#model-info").textContent = `${model.kind} · ${model.file} · sha256 ${model.sha256} · ${device}`;
}
if (inBrowser) {
  document.querySelector(".explain-toggle").hidden = true;
  $("#footer").textContent = "Runs in this browser: the picture never leaves it.";
  window.fmnist.ready.then((model) => describeModel(model, model.device)).catch((err) => {
    $("#model-info").textContent = "the model could not be loaded";
    $("#error").textContent = err.message;
    $("#error").hidden = false;
  });
} else {
  fetch("/healthz").then((r) => r.json()).then((health) => describeModel(health.model, health.device))
    .catch(() => { $("#model-info").textContent = "server unreachable"; });
}
