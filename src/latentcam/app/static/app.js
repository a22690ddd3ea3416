// latentcam explorer: a thin page over the JSON API of latentcam.app.server.
// No framework, nothing from the network. window.__latencies holds the time from each
// slider input event to the new decoded image being shown (ms), for the benchmark.
// Every request goes through one queue (`run`): one at a time, in the order asked, so a
// reply can never be overtaken by the reply to an older request.
"use strict";

const $ = (id) => document.getElementById(id);
let info = null;
let shownUnits = "";
let shownDirections = null;
window.__latencies = [];
window.__updates = 0;

function showError(message) {
  const box = $("error");
  box.textContent = message;
  box.hidden = false;
}

function clearError() {
  $("error").hidden = true;
  $("error").textContent = "";
}

// The response to a request; throws the server's {"error": ...} message on a 4xx/5xx.
async function request(method, path, body, headers) {
  const options = { method: method, headers: headers || {} };
  if (body !== undefined) {
    if (body instanceof Blob || typeof body === "string") {
      options.body = body;
    } else {
      options.body = JSON.stringify(body);
      options.headers["Content-Type"] = "application/json";
    }
  }
  let response;
  try {
    response = await fetch(path, options);
  } catch (err) {
    throw new Error("the server cannot be reached (" + err.message + ")");
  }
  if (!response.ok) {
    let message = response.status + " " + response.statusText;
    try {
      const payload = await response.json();
      if (payload && payload.error) message = payload.error;
    } catch (err) {
      /* not JSON: keep the status line */
    }
    throw new Error(message);
  }
  return response;
}

async function api(method, path, body, headers) {
  const response = await request(method, path, body, headers);
  return response.json();
}

// "Save view" / "Save z": fetched (so that an error is shown, not saved as a file), then
// saved from a Blob through an object URL.
async function saveFile(path, filename) {
  const blob = await (await request("GET", path)).blob();
  const url = URL.createObjectURL(blob);
  const link = document.createElement("a");
  link.href = url;
  link.download = filename;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60000);
}

async function setImg(el, src) {
  if (!src) return;
  el.src = src;
  try {
    await el.decode();
  } catch (err) {
    /* a detached or replaced image: nothing to wait for */
  }
}

// ------------------------------------------------------------------ rendering

function renderInfo(next) {
  info = next;
  $("info").textContent = `${info.model} · K=${info.latent_dim} · ${info.image_size} px · ${info.run} · layer ${info.layer} · ${info.method}`;
  $("img-index").max = info.num_images - 1;
  $("add-unit").max = info.latent_dim - 1;
  $("ranking-note").textContent = "(top by KL)";
  const key = info.units.join(",");
  if (key !== shownUnits) buildSliders();
  for (const row of document.querySelectorAll(".slider")) {
    const unit = Number(row.dataset.unit);
    const input = row.querySelector("input");
    if (document.activeElement !== input || playing) input.value = info.offsets[unit];
    row.querySelector(".value").textContent = Number(input.value).toFixed(2);
    row.classList.toggle("chosen", unit === info.unit && info.direction === null);
  }
  const names = info.directions.map((d) => d.name);
  if (shownDirections === null || names.join("\n") !== shownDirections) buildDirectionSliders();
  for (const row of document.querySelectorAll(".dslider")) {
    const index = Number(row.dataset.index);
    const input = row.querySelector("input");
    if (document.activeElement !== input || playing) input.value = info.direction_steps[index];
    row.querySelector(".value").textContent = Number(input.value).toFixed(2);
    row.classList.toggle("chosen", names[index] === info.direction);
  }
  for (const fig of document.querySelectorAll(".gallery figure")) {
    fig.classList.toggle("chosen", Number(fig.dataset.unit) === info.unit && info.direction === null);
  }
  renderAttributes();
  renderSegClasses();
}

function buildSliders() {
  const box = $("sliders");
  box.replaceChildren();
  for (const unit of info.units) {
    const row = document.createElement("div");
    row.className = "slider";
    row.dataset.unit = unit;
    const label = document.createElement("label");
    label.textContent = `z${unit}`;
    label.title = `KL ${info.kl[unit]} nats; click to choose`;
    label.addEventListener("click", () => chooseUnit(unit));
    const input = document.createElement("input");
    input.type = "range";
    input.min = -3;
    input.max = 3;
    input.step = 0.05;
    input.value = info.offsets[unit];
    input.id = `slider-${unit}`;
    input.setAttribute("aria-label", `offset of unit ${unit}`);
    input.addEventListener("input", () => onSlider(unit, Number(input.value)));
    const value = document.createElement("span");
    value.className = "value";
    row.append(label, input, value);
    box.append(row);
  }
  shownUnits = info.units.join(",");
}

// One slider per direction, in data standard deviations along it. Names come from a file
// or the finders: they are only ever set as text, never as markup.
function buildDirectionSliders() {
  const box = $("dir-sliders");
  box.replaceChildren();
  info.directions.forEach((d, index) => {
    const row = document.createElement("div");
    row.className = "dslider";
    row.dataset.index = index;
    const label = document.createElement("label");
    label.textContent = d.name;
    const score = d.auroc === null || d.auroc === undefined ? "" : `; held-out AUROC ${d.auroc.toFixed(2)}`;
    const parts = d.parts.length ? `; parts ${d.parts.join(", ")}` : "";
    label.title = `${d.kind} direction; 1 sd of mu . w = ${d.scale.toPrecision(3)}${score}${parts}; click to choose`;
    label.addEventListener("click", () => chooseDirection(d.name));
    const input = document.createElement("input");
    input.type = "range";
    input.min = -3;
    input.max = 3;
    input.step = 0.05;
    input.value = info.direction_steps[index];
    input.id = `dslider-${index}`;
    input.setAttribute("aria-label", `steps along direction ${d.name}`);
    input.addEventListener("input", () => onDirection(d.name, Number(input.value)));
    const value = document.createElement("span");
    value.className = "value";
    row.append(label, input, value);
    box.append(row);
  });
  $("dir-panel").hidden = info.directions.length === 0;
  shownDirections = info.directions.map((d) => d.name).join("\n");
}

function renderAttributes() {
  const panel = $("attr-panel");
  if (!info.attributes.length) {
    panel.hidden = true;
    return;
  }
  panel.hidden = false;
  const box = $("attrs");
  if (!box.children.length) {
    info.attributes.forEach((name) => {
      const label = document.createElement("label");
      const input = document.createElement("input");
      input.type = "checkbox";
      input.id = `attr-${name}`;
      input.dataset.attr = name;
      input.addEventListener("change", () => toggleAttribute(name, input.checked));
      label.append(input, " " + name.replace(/_/g, " "));
      box.append(label);
    });
  }
  info.attributes.forEach((name, i) => {
    $(`attr-${name}`).checked = info.cond[i] > 0.5;
  });
}

function renderSegClasses() {
  const has = info.seg_classes.length > 0;
  $("seg-cam-fig").hidden = !has;
  $("seg-overlay-fig").hidden = !has;
  if (!has) return;
  const select = $("seg-class");
  if (select.options.length !== info.seg_classes.length) {
    select.replaceChildren();
    info.seg_classes.forEach((name, i) => select.append(new Option(name, i)));
  }
  select.value = info.seg_class;
}

async function renderImage(image) {
  $("source").textContent = image.source;
  const gallery = $("gallery");
  gallery.replaceChildren();
  for (const tile of image.gallery) {
    const fig = document.createElement("figure");
    fig.dataset.unit = tile.unit;
    fig.classList.toggle("chosen", info && tile.unit === info.unit);
    const img = document.createElement("img");
    img.src = tile.png;
    img.alt = `Grad-CAM of unit ${tile.unit}`;
    const cap = document.createElement("figcaption");
    cap.textContent = `z${tile.unit} · KL ${info ? info.kl[tile.unit].toFixed(2) : ""}`;
    fig.append(img, cap);
    fig.addEventListener("click", () => chooseUnit(tile.unit));
    gallery.append(fig);
  }
  await Promise.all([
    setImg($("img-input"), image.input),
    setImg($("img-recon"), image.recon),
    setImg($("img-mean"), image.mean_cam),
    setImg($("img-segcam"), image.seg_cam),
  ]);
}

async function renderLive(live) {
  const target = live.target || `z${live.unit}`;
  const move = live.direction === null ? live.offset : live.step;
  const sd = live.direction === null ? "" : " sd";
  $("cap-decoded").textContent = `decoded: ${target} ${move >= 0 ? "+" : ""}${move.toFixed(2)}${sd}`;
  const where = info && info.unit_cam_on === "input" ? "on the input" : "re-encoded";
  $("cap-unitcam").textContent = `Grad-CAM ${target} (${where})`;
  $("cap-effect").textContent = `effect ${target} ±${info ? info.delta : ""}${sd} (max ${live.effect_max.toFixed(3)})`;
  await Promise.all([
    setImg($("img-decoded"), live.decoded),
    setImg($("img-unitcam"), live.unit_cam),
    setImg($("img-effect"), live.effect),
    setImg($("img-seg-overlay"), live.seg_overlay),
  ]);
  window.__updates += 1;
}

async function renderState(state) {
  renderInfo(state.info);
  await renderImage(state.image);
  await renderLive(state.live);
}

// ------------------------------------------------------------------ the request queue

let tail = Promise.resolve();

// Run `action` (which makes requests and renders their replies) after every action asked
// before it has finished; its error is shown. Resolves when it is done.
function run(action) {
  const done = tail.then(async () => {
    try {
      clearError();
      await action();
    } catch (err) {
      showError(err.message);
    }
  });
  tail = done;
  return done;
}

// ------------------------------------------------------------------ slider moves
// A move made while the queue is busy replaces the move of the same slider still waiting
// in it (if any); moves of other sliders wait their turn, in the order made.

const pendingMoves = new Map();
let playing = false;

function queueMove(key, path, body) {
  const waiting = pendingMoves.size > 0;
  pendingMoves.set(key, { path: path, body: body, t0: performance.now() });
  if (waiting) return;
  run(async () => {
    while (pendingMoves.size > 0) {
      const [first, move] = pendingMoves.entries().next().value;
      pendingMoves.delete(first);
      await sendMove(move);
    }
  });
}

function onSlider(unit, value) {
  queueMove(`unit ${unit}`, "/api/offset", { unit: unit, value: value });
}

function onDirection(name, value) {
  queueMove(`direction ${name}`, "/api/direction", { name: name, value: value });
}

async function sendMove(move) {
  const result = await api("POST", move.path, move.body);
  renderInfo(result.info);
  await renderLive(result.live);
  const ms = performance.now() - move.t0;
  window.__latencies.push(ms);
  $("latency").textContent = `last update ${ms.toFixed(0)} ms (server ${result.live.server_ms.toFixed(0)} ms)`;
}

function chooseUnit(unit) {
  return run(async () => {
    const result = await api("POST", "/api/unit", { unit: unit });
    renderInfo(result.info);
    await renderLive(result.live);
  });
}

function chooseDirection(name) {
  return run(async () => {
    const result = await api("POST", "/api/direction", { name: name });
    renderInfo(result.info);
    await renderLive(result.live);
  });
}

function toggleAttribute(name, on) {
  return run(async () => {
    const result = await api("POST", "/api/attribute", { name: name, value: on ? 1 : 0 });
    renderInfo(result.info);
    await renderLive(result.live);
  });
}

async function play() {
  if (playing) return;
  playing = true;
  $("play").disabled = true;
  // the chosen unit over the paper's steps, or the chosen direction over -2 ... 2 sd
  const unit = info.unit;
  const direction = info.direction;
  const index = info.directions.findIndex((d) => d.name === direction);
  const steps = direction === null ? info.steps : info.direction_play;
  try {
    for (const step of steps) {
      let failed = false;
      await run(async () => {
        const slider = direction === null ? $(`slider-${unit}`) : $(`dslider-${index}`);
        if (slider) slider.value = step;
        const move =
          direction === null
            ? { path: "/api/offset", body: { unit: unit, value: step } }
            : { path: "/api/direction", body: { name: direction, value: step } };
        try {
          await sendMove({ ...move, t0: performance.now() });
        } catch (err) {
          failed = true;
          throw err;
        }
      });
      if (failed) break;
      await new Promise((resolve) => setTimeout(resolve, 150));
    }
  } finally {
    playing = false;
    $("play").disabled = false;
  }
}

// A file input fires "change" only when the chosen file changes: clear it after each use,
// so that choosing the same file again works.
function readFileInput(id, action) {
  const input = $(id);
  input.addEventListener("change", () => {
    const file = input.files[0];
    input.value = "";
    if (file) run(() => action(file));
  });
}

// ------------------------------------------------------------------ wiring

$("img-show").addEventListener("click", () =>
  run(async () => renderState(await api("POST", "/api/image", { index: Number($("img-index").value) })))
);
$("img-random").addEventListener("click", () =>
  run(async () => {
    const state = await api("POST", "/api/image", { random: true });
    $("img-index").value = state.image.source.replace(/^dataset #/, "");
    await renderState(state);
  })
);
readFileInput("upload", async (file) => {
  const limit = info ? info.max_upload_bytes : Infinity;
  if (file.size > limit) {
    throw new Error(`the upload '${file.name}' has ${(file.size / 1048576).toFixed(1)} MB; the limit is ${limit / 1048576} MB: upload a smaller image`);
  }
  const path = "/api/upload?name=" + encodeURIComponent(file.name);
  await renderState(await api("POST", path, file, { "Content-Type": "application/octet-stream" }));
});
$("add-unit-btn").addEventListener("click", () => chooseUnit(Number($("add-unit").value)));
$("play").addEventListener("click", play);
$("reset").addEventListener("click", () => run(async () => renderState(await api("POST", "/api/reset"))));
$("seg-class").addEventListener("change", () =>
  run(async () => {
    const result = await api("POST", "/api/seg_class", { cls: Number($("seg-class").value) });
    renderInfo(result.info);
    await renderImage(result.image);
  })
);
readFileInput("load-z", async (file) => {
  let record;
  try {
    record = JSON.parse(await file.text());
  } catch (err) {
    throw new Error(`${file.name} is not JSON: ${err.message}`);
  }
  await renderState(await api("POST", "/api/z", record));
});
$("save-view").addEventListener("click", () => run(() => saveFile("/api/view.png", "latentcam_view.png")));
$("save-z").addEventListener("click", () => run(() => saveFile("/api/z", "latent.json")));
// The runs the page may load (GET /api/runs): offered as the path box's suggestions.
async function listRuns() {
  const listing = await api("GET", "/api/runs");
  const options = listing.runs.map((entry) => {
    const option = document.createElement("option");
    option.value = entry.path;
    option.label = `${entry.path} (${entry.kind})`;
    return option;
  });
  $("runs-list").replaceChildren(...options);
  const more = listing.truncated ? "+" : "";
  $("runs-note").textContent = `${listing.runs.length}${more} under ${listing.root}`;
  $("ckpt-path").placeholder = `a run under ${listing.root}`;
}

$("ckpt-form").addEventListener("submit", (event) => {
  event.preventDefault();
  run(async () => {
    $("ckpt-load").disabled = true;
    try {
      const state = await api("POST", "/api/checkpoint", { path: $("ckpt-path").value });
      shownUnits = "";
      shownDirections = null;
      $("attrs").replaceChildren();
      await renderState(state);
    } finally {
      $("ckpt-load").disabled = false;
    }
  });
});

run(async () => {
  await renderState(await api("GET", "/api/state"));
  await listRuns();
});
