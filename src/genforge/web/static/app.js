// The genforge demo page: reads /api/models, shows the controls the model's family declares,
// and calls the JSON API. Served by genforge itself; fetches nothing from elsewhere.
"use strict";

const $ = (id) => document.getElementById(id);
let models = [];
let limits = {};

function current() {
  return models.find((m) => m.name === $("model").value);
}

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = !message;
}

function setBusy(busy, text) {
  for (const b of document.querySelectorAll("button")) b.disabled = busy;
  $("status").textContent = text || "";
}

function integer(id, name, low, high) {
  const text = $(id).value.trim();
  const value = Number(text);
  if (text === "" || !Number.isInteger(value) || value < low || value > high) {
    throw new Error(`${name} must be a whole number from ${low} to ${high}`);
  }
  return value;
}

function optionalNumber(id, name, low, high) {
  const text = $(id).value.trim();
  if (text === "") return null;
  const value = Number(text);
  if (!Number.isFinite(value) || value <= low || value > high) {
    throw new Error(`${name} must be a number above ${low} and at most ${high}, or empty for off`);
  }
  return value;
}

function common(model) {
  const body = { model: model.name };
  if (model.num_classes) body.label = Number($("label").value);
  if (model.controls.includes("truncation")) body.truncation = optionalNumber("truncation", "Truncation", 0, 4);
  return body;
}

async function call(url, options) {
  const response = await fetch(url, options);
  let payload = null;
  try { payload = await response.json(); } catch (e) { payload = null; }
  if (!response.ok) throw new Error((payload && payload.error) || `the server answered ${response.status}`);
  return payload;
}

function show(pngs, extraClass) {
  const results = $("results");
  results.replaceChildren();
  for (const [i, data] of pngs.entries()) {
    const img = document.createElement("img");
    img.src = data;
    img.alt = `result ${i + 1}`;
    if (extraClass) img.className = extraClass;
    results.append(img);
  }
}

function offerDownload(dataUrl, fileName, text) {
  const link = $("download");
  link.href = dataUrl;
  link.download = fileName;
  link.textContent = text;
  link.hidden = false;
}

async function run(action) {
  showError("");
  $("download").hidden = true;
  setBusy(true, "working...");
  try {
    await action();
    setBusy(false, "");
  } catch (err) {
    setBusy(false, "");
    showError(err.message);
  }
}

async function generate() {
  const model = current();
  const body = { ...common(model), seed: integer("seed", "Seed", 0, 2147483647), n: integer("n", "Images", 1, limits.max_images) };
  const out = await call("/api/sample", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
  show(out.images.map((b64) => `data:image/png;base64,${b64}`));
  offerDownload(`data:image/png;base64,${out.grid}`, `${model.name}-seed${out.seed}.png`, `Download the ${out.n} images (PNG)`);
}

async function interpolate() {
  const model = current();
  const body = { ...common(model), seed_a: integer("seed-a", "From seed", 0, 2147483647),
                 seed_b: integer("seed-b", "To seed", 0, 2147483647), frames: integer("frames", "Frames", 2, limits.max_frames) };
  const out = await call("/api/interpolate", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
  const url = `data:image/gif;base64,${out.gif}`;
  show([url], "animation");
  offerDownload(url, `${model.name}-walk-${body.seed_a}-${body.seed_b}.gif`, "Download the animation (GIF)");
}

async function translate() {
  const model = current();
  const file = $("upload").files[0];
  if (!file) throw new Error("choose an image file first");
  if (file.size > limits.max_upload_bytes) throw new Error(`the image is ${file.size} bytes; at most ${limits.max_upload_bytes}`);
  const out = await call(`/api/translate?model=${encodeURIComponent(model.name)}`, { method: "POST", body: file });
  show([`data:image/png;base64,${out.input}`, ...out.images.map((b64) => `data:image/png;base64,${b64}`)]);
  offerDownload(`data:image/png;base64,${out.images[0]}`, `${model.name}-translated.png`, "Download the translation (PNG)");
}

function configure() {
  const model = current();
  const has = (control) => model.controls.includes(control);
  $("about").textContent = `${model.model} (${model.family}), ${model.image_size}x${model.image_size}, step ${model.step}`;
  $("sample-controls").hidden = !has("seed");
  $("interpolate-controls").hidden = !has("interpolate");
  $("image-controls").hidden = !has("image");
  for (const el of document.querySelectorAll("[data-control=truncation]")) el.hidden = !has("truncation");
  for (const el of document.querySelectorAll("[data-control=class]")) el.hidden = !model.num_classes;
  $("label").replaceChildren(...Array.from({ length: model.num_classes }, (_, k) => new Option(String(k), String(k))));
  $("n").max = limits.max_images;
  $("frames").max = limits.max_frames;
  $("results").replaceChildren();
  $("download").hidden = true;
  showError("");
}

async function start() {
  try {
    const info = await call("/api/models");
    models = info.models;
    limits = info.limits;
  } catch (err) {
    showError(`cannot reach the genforge server: ${err.message}`);
    return;
  }
  $("model").replaceChildren(...models.map((m) => new Option(`${m.name} (${m.family})`, m.name)));
  $("model").addEventListener("change", configure);
  $("generate").addEventListener("click", () => run(generate));
  $("interpolate").addEventListener("click", () => run(interpolate));
  $("translate").addEventListener("click", () => run(translate));
  configure();
  document.body.dataset.ready = "true";
}

start();
