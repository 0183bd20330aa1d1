// The tensorgate playground: plain JavaScript over the gateway's public API (GET /v1/models,
// POST /v1/classify/{name}); nothing is loaded from anywhere else.
// ?api=http://host:8000 points the page at another gateway (that gateway needs cors.allow_origins).
"use strict";

const VARIANT = /_(dynamic|fp16|int8|onnx|trt)$/;
const KEY_STORE = "tensorgate.playground.apiKey";
const TOP = 5;

const params = new URLSearchParams(location.search);
const apiBase = new URL(params.get("api") || "..", location.href);
const $ = (selector) => document.querySelector(selector);

const state = {
  models: [],
  source: "canvas", // or "file"
  file: null,
  drawn: false,
};

function apiUrl(path) {
  return new URL(path.replace(/^\//, ""), apiBase.href.endsWith("/") ? apiBase : apiBase.href + "/");
}

function headers() {
  const key = $("#api-key").value.trim();
  return key ? { "x-api-key": key } : {};
}

// The API's own error text: {"error": "..."} bodies as they are, anything else as text.
async function errorText(response) {
  const body = await response.text();
  try {
    const parsed = JSON.parse(body);
    if (parsed && typeof parsed.error === "string") return parsed.error;
  } catch (_) { /* not JSON */ }
  return body || response.statusText;
}

function showError(element, status, message) {
  element.hidden = false;
  element.textContent = status ? `HTTP ${status}: ${message}` : message;
  element.dataset.status = status || "";
  element.dataset.message = message;
}

// ---- models ---------------------------------------------------------------------------------

function group(model) {
  if (model.kind === "ensemble") return "Ensembles";
  if (model.kind === "route") return "Routes";
  return VARIANT.test(model.name) ? "Variants" : "Models";
}

function describe(model) {
  if (model.kind === "ensemble") return `${model.voting} vote of ${model.members.join(", ")}`;
  if (model.kind === "route") {
    const split = Object.entries(model.split).map(([name, weight]) => `${name} ${weight}`).join(", ");
    return `split ${split}` + (model.shadow ? `, shadow ${model.shadow}` : "");
  }
  const versions = (model.versions || []).map((v) => `v${v.version} ${v.state}`).join(", ");
  return versions || model.error || "no version";
}

async function loadModels() {
  const error = $("#models-error");
  error.hidden = true;
  const key = $("#api-key").value.trim();
  sessionStorage.setItem(KEY_STORE, key);
  let response;
  try {
    response = await fetch(apiUrl("/v1/models"), { headers: headers() });
  } catch (failure) {
    showError(error, 0, `Could not reach ${apiBase.origin}: ${failure.message}`);
    return;
  }
  if (!response.ok) {
    showError(error, response.status, await errorText(response));
    return;
  }
  state.models = (await response.json()).models;
  renderModels();
}

function renderModels() {
  const container = $("#models");
  container.replaceChildren();
  const groups = new Map();
  for (const model of state.models) {
    const name = group(model);
    if (!groups.has(name)) groups.set(name, []);
    groups.get(name).push(model);
  }
  for (const name of ["Models", "Variants", "Routes", "Ensembles"]) {
    if (!groups.has(name)) continue;
    const fieldset = document.createElement("fieldset");
    const legend = document.createElement("legend");
    legend.textContent = name;
    fieldset.append(legend);
    for (const model of groups.get(name)) {
      const label = document.createElement("label");
      const box = document.createElement("input");
      box.type = "checkbox";
      box.name = "servable";
      box.value = model.name;
      box.dataset.kind = model.kind;
      box.checked = model.name === "cnn";
      const info = document.createElement("span");
      info.className = "state";
      info.textContent = describe(model);
      label.append(box, document.createTextNode(model.name), info);
      fieldset.append(label);
    }
    container.append(fieldset);
  }
  if (!state.models.length) container.textContent = "The gateway lists no servables.";
  $("#classify").disabled = false;
}

// ---- image sources --------------------------------------------------------------------------

const canvas = $("#canvas");
const pen = canvas.getContext("2d");

function clearCanvas() {
  pen.fillStyle = "#000";
  pen.fillRect(0, 0, canvas.width, canvas.height);
  state.drawn = false;
}

function point(event) {
  const box = canvas.getBoundingClientRect();
  return [(event.clientX - box.left) * (canvas.width / box.width), (event.clientY - box.top) * (canvas.height / box.height)];
}

function useSource(source) {
  state.source = source;
  $("#source").textContent = source === "file" && state.file ? state.file.name : "the drawing";
}

let drawing = false;
canvas.addEventListener("pointerdown", (event) => {
  drawing = true;
  canvas.setPointerCapture(event.pointerId);
  pen.strokeStyle = "#fff";
  pen.lineWidth = 24;
  pen.lineCap = "round";
  pen.lineJoin = "round";
  pen.beginPath();
  pen.moveTo(...point(event));
  useSource("canvas");
});
canvas.addEventListener("pointermove", (event) => {
  if (!drawing) return;
  pen.lineTo(...point(event));
  pen.stroke();
  state.drawn = true;
});
for (const name of ["pointerup", "pointercancel"]) canvas.addEventListener(name, () => { drawing = false; });

$("#clear").addEventListener("click", () => { clearCanvas(); useSource("canvas"); });
$("#file").addEventListener("change", () => {
  const file = $("#file").files[0];
  if (!file) return;
  state.file = file;
  const preview = $("#preview");
  preview.src = URL.createObjectURL(file);
  preview.hidden = false;
  useSource("file");
});

function imageBlob() {
  if (state.source === "file" && state.file) return Promise.resolve(state.file);
  return new Promise((resolve) => canvas.toBlob(resolve, "image/png"));
}

// ---- classify -------------------------------------------------------------------------------

function bars(prediction) {
  const rows = Object.entries(prediction.probabilities).sort((a, b) => b[1] - a[1]).slice(0, TOP);
  return rows.map(([label, probability], index) => {
    const row = document.createElement("div");
    row.className = index === 0 ? "bar-row top" : "bar-row";
    row.dataset.label = label;
    const name = document.createElement("span");
    name.textContent = label;
    const track = document.createElement("div");
    track.className = "bar-track";
    const bar = document.createElement("div");
    bar.className = "bar";
    bar.style.width = `${(probability * 100).toFixed(1)}%`;
    track.append(bar);
    const value = document.createElement("span");
    value.textContent = `${(probability * 100).toFixed(1)}%`;
    row.append(name, track, value);
    return row;
  });
}

function memberItems(members) {
  return members.map((member) => {
    const item = document.createElement("li");
    item.className = member.error ? "member failed" : "member";
    item.dataset.servable = member.servable;
    item.textContent = member.error
      ? `${member.servable}: ${member.error}`
      : `${member.servable} v${member.version} voted ${member.labels.join(", ")}`;
    return item;
  });
}

async function classifyOne(model, blob, card) {
  const form = new FormData();
  form.append("file", blob, blob.name || "drawing.png");
  const started = performance.now();
  let response;
  try {
    response = await fetch(apiUrl(`/v1/classify/${encodeURIComponent(model.name)}`), {
      method: "POST",
      headers: headers(),
      body: form,
    });
  } catch (failure) {
    showError(card.querySelector(".error"), 0, `Could not reach ${apiBase.origin}: ${failure.message}`);
    return;
  }
  const body = response.ok ? await response.json() : null;
  const latency = performance.now() - started;
  card.querySelector(".latency").textContent = latency.toFixed(1);
  const timing = response.headers.get("server-timing");
  card.querySelector(".server-timing").textContent = timing ? ` · server: ${timing}` : "";
  if (!response.ok) {
    card.dataset.status = String(response.status);
    showError(card.querySelector(".error"), response.status, await errorText(response));
    return;
  }
  const prediction = body.predictions[0];
  card.dataset.status = "200";
  card.dataset.classId = String(prediction.class_id);
  card.dataset.label = prediction.label;
  card.querySelector(".label").textContent = `${prediction.label} (${(prediction.score * 100).toFixed(1)}%)`;
  const version = body.version || response.headers.get("x-model-version") || "";
  card.querySelector(".version").textContent = version || "-";
  card.querySelector(".bars").replaceChildren(...bars(prediction));
  if (body.members) card.querySelector(".members").replaceChildren(...memberItems(body.members));
  if (body.degraded) card.querySelector(".kind").textContent += " (degraded)";
}

async function classify() {
  const picked = [...document.querySelectorAll("input[name=servable]:checked")].map((box) =>
    state.models.find((model) => model.name === box.value));
  const results = $("#results");
  results.replaceChildren();
  if (!picked.length) {
    results.textContent = "Pick at least one servable.";
    return;
  }
  const blob = await imageBlob();
  const template = $("#result-template");
  const pending = picked.map((model) => {
    const card = template.content.firstElementChild.cloneNode(true);
    card.dataset.servable = model.name;
    card.querySelector(".name").textContent = model.name;
    card.querySelector(".kind").textContent = model.kind;
    results.append(card);
    return classifyOne(model, blob, card);
  });
  await Promise.all(pending);
  results.dataset.done = String(Date.now());
}

$("#connect").addEventListener("click", loadModels);
$("#api-key").addEventListener("keydown", (event) => { if (event.key === "Enter") loadModels(); });
$("#classify").addEventListener("click", classify);

clearCanvas();
$("#api-key").value = sessionStorage.getItem(KEY_STORE) || "";
$("#api-base").textContent = `Gateway: ${apiBase.origin}${apiBase.pathname}`;
loadModels();
