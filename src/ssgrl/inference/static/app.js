// The ssgrl web page: pick or drop an image, POST it to /predict, draw one score bar per label
// (its threshold marked, predicted labels highlighted), and on a click POST it to
// /explain?classes=LABEL&format=png for that label's attention overlay. No external resources.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { file: null, predictToken: 0, explainToken: 0, explain: true, explainNote: "" };

function setStatus(el, text, isError) {
  el.textContent = text;
  el.classList.toggle("error", Boolean(isError));
}

async function loadModelInfo() {
  try {
    const response = await fetch("/classes");
    const info = await response.json();
    state.explain = info.explain;
    state.explainNote = info.explain_note || "";
    $("model-info").textContent =
      `${info.class_names.length} classes · thresholds: ${info.threshold_source} · ` +
      `input ${info.preprocessing.image_size} px · engine ${info.engine}`;
  } catch (err) {
    setStatus($("model-info"), `cannot reach the service: ${err}`, true);
  }
}

function imageForm() {
  const form = new FormData();
  form.append("files", state.file, state.file.name || "image");
  return form;
}

function pick(file) {
  if (!file) return;
  state.file = file;
  const preview = $("preview");
  if (preview.src) URL.revokeObjectURL(preview.src);
  preview.src = URL.createObjectURL(file);
  preview.hidden = false;
  $("drop-hint").hidden = true;
  $("file-name").textContent = `${file.name} (${file.size.toLocaleString()} bytes)`;
  $("overlay").hidden = true;
  $("overlay-label").textContent = "";
  predict();
}

async function predict() {
  const token = ++state.predictToken;
  const list = $("labels");
  list.replaceChildren();
  setStatus($("status"), "predicting…");
  let data;
  try {
    const response = await fetch("/predict", { method: "POST", body: imageForm() });
    data = await response.json();
    if (token !== state.predictToken) return;
    const result = data.results ? data.results[0] : null;
    if (!response.ok || !result || result.error) {
      setStatus($("status"), (result && result.error) || data.detail || response.statusText, true);
      return;
    }
    renderLabels(result);
    const n = result.predicted.length;
    setStatus($("status"), n ? `${n} label${n > 1 ? "s" : ""} predicted.` : "No label reaches its threshold.");
    explain(result.predicted[0] || result.labels[0].label);
  } catch (err) {
    if (token === state.predictToken) setStatus($("status"), `request failed: ${err}`, true);
  }
}

function renderLabels(result) {
  const list = $("labels");
  for (const entry of result.labels) {
    const item = document.createElement("li");
    const row = document.createElement("button");
    row.type = "button";
    row.className = "label-row" + (entry.predicted ? " predicted" : "");
    row.dataset.label = entry.label;
    row.title = `${entry.label}: score ${entry.score.toFixed(4)}, threshold ${entry.threshold.toFixed(4)}`;

    const name = document.createElement("span");
    name.className = "name";
    name.textContent = entry.label;

    const bar = document.createElement("span");
    bar.className = "bar";
    const fill = document.createElement("span");
    fill.className = "fill";
    fill.style.width = `${(100 * entry.score).toFixed(2)}%`;
    const mark = document.createElement("span");
    mark.className = "threshold";
    mark.style.left = `${(100 * entry.threshold).toFixed(2)}%`;
    bar.append(fill, mark);

    const score = document.createElement("span");
    score.className = "score";
    score.textContent = entry.score.toFixed(2);

    row.append(name, bar, score);
    row.addEventListener("click", () => explain(entry.label));
    item.append(row);
    list.append(item);
  }
}

async function explain(label) {
  for (const row of document.querySelectorAll(".label-row")) {
    row.classList.toggle("selected", row.dataset.label === label);
  }
  if (!state.file) return;
  if (!state.explain) {
    setStatus($("overlay-status"), `no attention maps from this service: ${state.explainNote}`, true);
    return;
  }
  const token = ++state.explainToken;
  $("overlay-label").textContent = ` of ${label}`;
  setStatus($("overlay-status"), "computing the attention…");
  try {
    const url = `/explain?format=png&classes=${encodeURIComponent(label)}`;
    const response = await fetch(url, { method: "POST", body: imageForm() });
    if (token !== state.explainToken) return;
    if (!response.ok) {
      const data = await response.json().catch(() => ({}));
      setStatus($("overlay-status"), data.detail || response.statusText, true);
      return;
    }
    const blob = await response.blob();
    if (token !== state.explainToken) return;
    const overlay = $("overlay");
    if (overlay.src) URL.revokeObjectURL(overlay.src);
    overlay.onload = () => {
      overlay.dataset.label = label;
      setStatus($("overlay-status"), "");
    };
    overlay.src = URL.createObjectURL(blob);
    overlay.alt = `attention of ${label}`;
    overlay.hidden = false;
  } catch (err) {
    if (token === state.explainToken) setStatus($("overlay-status"), `request failed: ${err}`, true);
  }
}

function setUp() {
  const zone = $("drop-zone");
  $("file").addEventListener("change", (event) => pick(event.target.files[0]));
  for (const kind of ["dragenter", "dragover"]) {
    zone.addEventListener(kind, (event) => {
      event.preventDefault();
      zone.classList.add("over");
    });
  }
  for (const kind of ["dragleave", "drop"]) {
    zone.addEventListener(kind, () => zone.classList.remove("over"));
  }
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    if (event.dataTransfer.files.length) pick(event.dataTransfer.files[0]);
  });
  loadModelInfo();
}

setUp();
