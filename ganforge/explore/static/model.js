// Model page: controls -> /api/render query -> image. At most one request in flight: changes made while it
// renders only mark the view dirty, and the newest settings are sent when it returns (dragging never queues).

const ids = ["model", "model-info", "seed", "seed-range", "psi", "psi-range", "cutoff", "cutoff-out", "noise",
  "class", "class-row", "grid", "walk-on", "walk-seed", "walk-seed-range", "walk", "walk-out", "space", "mix-on",
  "mix-seed", "mix-seed-range", "mix-from", "mix-from-out", "mix-to", "mix-to-out", "save", "view", "meta", "saved",
  "walk-panel", "mix-panel", "dirs-panel", "dirs-info", "dirs", "dirs-hint", "dirs-reset", "move-panel", "tx",
  "tx-out", "ty", "ty-out", "rotate", "rotate-out", "move-reset"];
const ui = Object.fromEntries(ids.map((id) => [id, document.getElementById(id)]));
const view = { inflight: false, dirty: false, blobUrl: null };
let info = null;

// A range slider and a number box showing one value; the box may go past the slider's end (seeds up to 2^32-1).
function pair(range, box) {
  range.addEventListener("input", () => { box.value = range.value; changed(); });
  box.addEventListener("input", () => { range.value = box.value; changed(); });
}

function setPair(box, range, value) {
  box.value = value;
  range.value = value;
}

function layerName(i) {
  return info && info.layers[i] ? `${i} (${info.layers[i]})` : `${i}`;
}

function updateOutputs() {
  const numWs = info ? info.num_ws : 0;
  ui["cutoff-out"].textContent = +ui.cutoff.value >= numWs ? "all" : `first ${ui.cutoff.value}`;
  ui["walk-out"].textContent = (+ui.walk.value).toFixed(2);
  ui["mix-from-out"].textContent = layerName(+ui["mix-from"].value);
  ui["mix-to-out"].textContent = layerName(+ui["mix-to"].value);
  ui["tx-out"].textContent = (+ui.tx.value).toFixed(3);
  ui["ty-out"].textContent = (+ui.ty.value).toFixed(3);
  ui["rotate-out"].textContent = `${+ui.rotate.value}°`;
  for (const box of dirSliders()) box.nextElementSibling.textContent = (+box.value).toFixed(2);
}

function dirSliders() {
  return Array.from(ui.dirs.querySelectorAll("input[type=range]"));
}

// Strengths of the direction sliders, trailing zeros dropped ("" when every slider is at 0).
function dirsValue() {
  const values = dirSliders().map((box) => +box.value);
  while (values.length && values[values.length - 1] === 0) values.pop();
  return values.join(",");
}

function query() {
  const p = new URLSearchParams();
  p.set("model", ui.model.value);
  p.set("seed", ui.seed.value);
  if (info.stylegan) {
    p.set("psi", ui.psi.value);
    if (+ui.cutoff.value < info.num_ws) p.set("cutoff", ui.cutoff.value);
    p.set("noise", ui.noise.value);
  }
  if (info.c_dim > 0) p.set("class", ui.class.value);
  if (+ui.grid.value > 1) p.set("grid", ui.grid.value);
  if (info.stylegan && ui["walk-on"].checked) {
    p.set("walk_seed", ui["walk-seed"].value);
    p.set("walk", ui.walk.value);
    p.set("space", ui.space.value);
  }
  if (info.stylegan && ui["mix-on"].checked) {
    p.set("mix_seed", ui["mix-seed"].value);
    p.set("mix_from", ui["mix-from"].value);
    p.set("mix_to", ui["mix-to"].value);
  }
  if (info.stylegan && dirsValue()) p.set("dirs", dirsValue());
  if (info.sg3) for (const k of ["tx", "ty", "rotate"]) if (+ui[k].value !== 0) p.set(k, ui[k].value);
  return p.toString();
}

function changed() {
  updateOutputs();
  if (!info) return;
  view.dirty = true;
  if (!view.inflight) pump();
}

// The single render loop: send the newest settings, show the reply, repeat while something changed meanwhile.
async function pump() {
  view.inflight = true;
  ui.view.dataset.pending = "1";
  while (view.dirty) {
    view.dirty = false;
    const q = query();
    history.replaceState(null, "", "?" + q);
    try {
      const r = await fetch("/api/render?" + q, { cache: "no-store" });
      if (r.status === 409) { view.dirty = true; await sleep(30); continue; } // Another tab's request won.
      if (!r.ok) { showError((await r.json().catch(() => ({}))).error || r.statusText); continue; }
      const blob = await r.blob();
      const url = URL.createObjectURL(blob);
      ui.view.src = url;
      await ui.view.decode().catch(() => {});
      if (view.blobUrl) URL.revokeObjectURL(view.blobUrl);
      view.blobUrl = url;
      ui.view.dataset.digest = r.headers.get("X-Image-Digest") || "";
      ui.view.dataset.query = q;
      ui.meta.textContent = `${ui.view.naturalWidth}×${ui.view.naturalHeight} · ${r.headers.get("X-Render-Ms")} ms ` +
        `· render #${r.headers.get("X-Render-Count")} · pixels ${ui.view.dataset.digest}`;
      showError("");
    } catch (e) {
      showError(`request failed: ${e.message}`);
    }
  }
  view.inflight = false;
  ui.view.dataset.pending = "0";
}

function clampSeed(v) {
  return Math.min(Math.max(Math.round(v), 0), 4294967295);
}

function onKey(ev) {
  const t = ev.target;
  if (t && (t.tagName === "SELECT" || (t.tagName === "INPUT" && t.type !== "checkbox"))) return;
  const big = ev.shiftKey ? 5 : 1;
  if (ev.key === "ArrowLeft" || ev.key === "ArrowRight") {
    if (!ui["walk-on"].checked) ui["walk-on"].checked = true;
    const v = Math.min(Math.max(+ui.walk.value + (ev.key === "ArrowRight" ? 0.02 : -0.02) * big, -1), 1);
    ui.walk.value = v.toFixed(2);
  } else if (ev.key === "ArrowUp" || ev.key === "ArrowDown") {
    setPair(ui.seed, ui["seed-range"], clampSeed(+ui.seed.value + (ev.key === "ArrowUp" ? big : -big)));
  } else if (ev.key === "PageUp" || ev.key === "PageDown") {
    setPair(ui["walk-seed"], ui["walk-seed-range"],
      clampSeed(+ui["walk-seed"].value + (ev.key === "PageUp" ? 1 : -1)));
  } else {
    return;
  }
  ev.preventDefault();
  changed();
}

async function save() {
  ui.saved.textContent = "saving…";
  try {
    const { data } = await getJSON("/api/save?" + query(), { method: "POST" });
    ui.saved.textContent = `saved ${data.png} and ${data.json}` +
      (data.command ? ` — regenerate: ${data.command}` : ` — regenerate: ${data.reproduce_command}`);
    ui.saved.dataset.json = data.json;
  } catch (e) {
    ui.saved.textContent = "";
    showError(e.message);
  }
}

// Controls that depend on the model: class list, layer range, cutoff range, grid sizes.
function applyModel(m) {
  info = m;
  const [c, h, w] = m.img_shape;
  ui["model-info"].textContent = `${m.checkpoint} · ${w}×${h}×${c} · num_ws ${m.num_ws} · ${m.device}`;
  ui["class-row"].hidden = m.c_dim === 0;
  ui.class.replaceChildren(...Array.from({ length: m.c_dim }, (_, i) => el("option", { value: i, text: i })));
  ui.cutoff.max = m.num_ws;
  ui.cutoff.value = m.num_ws; // All ws truncated, as `ganforge generate` without --trunc-cutoff.
  for (const id of ["mix-from", "mix-to"]) ui[id].max = Math.max(m.num_ws - 1, 0);
  const sizes = [1, 4, 9, 16, 25, 36].filter((n) => n <= m.max_grid && n * h * w <= m.max_pixels);
  ui.grid.replaceChildren(...sizes.map((n) => el("option", { value: n, text: n })));
  for (const id of ["psi", "psi-range", "cutoff", "noise"]) ui[id].disabled = !m.stylegan;
  ui["walk-panel"].hidden = ui["mix-panel"].hidden = !m.stylegan;
  ui["move-panel"].hidden = !m.sg3; // Only a StyleGAN3 generator has a Fourier input to move.
  applyDirections(m.directions);
}

// One slider per direction of --directions (the strongest few), or the reason this model has none.
function applyDirections(d) {
  ui["dirs-panel"].hidden = !d;
  ui.dirs.replaceChildren();
  if (!d) return;
  ui["dirs-info"].textContent = `${d.method} · ${d.file || ""}`;
  ui["dirs-hint"].textContent = d.problem || `Strength in ${d.unit}, added to ws ${d.layers_text}.`;
  for (let k = 0; k < d.count; k++) {
    const box = el("input", { id: `dir-${k}`, type: "range", min: -d.range, max: d.range, step: 0.05, value: 0 });
    box.addEventListener("input", changed);
    ui.dirs.append(el("label", { class: "row" }, `dir ${k}`, box, el("output", { text: "0.00" })));
  }
  ui["dirs-reset"].hidden = d.count === 0;
}

// Settings from the address bar (?seed=…&psi=…), so a view can be bookmarked or shared.
function restore(params) {
  const set = (box, range, v) => { if (v !== null) { box.value = v; if (range) range.value = v; } };
  set(ui.seed, ui["seed-range"], params.get("seed"));
  set(ui.psi, ui["psi-range"], params.get("psi"));
  if (params.get("cutoff") !== null) ui.cutoff.value = params.get("cutoff");
  for (const k of ["noise", "class", "grid", "space"]) if (params.get(k) !== null) ui[k].value = params.get(k);
  if (params.get("walk_seed") !== null) {
    ui["walk-on"].checked = true;
    set(ui["walk-seed"], ui["walk-seed-range"], params.get("walk_seed"));
    set(ui.walk, null, params.get("walk") || "0");
  }
  for (const k of ["tx", "ty", "rotate"]) if (params.get(k) !== null) ui[k].value = params.get(k);
  (params.get("dirs") || "").split(",").forEach((v, k) => {
    const box = document.getElementById(`dir-${k}`);
    if (box && v !== "") box.value = v;
  });
  if (params.get("mix_seed") !== null) {
    ui["mix-on"].checked = true;
    set(ui["mix-seed"], ui["mix-seed-range"], params.get("mix_seed"));
    set(ui["mix-from"], null, params.get("mix_from") || "0");
    set(ui["mix-to"], null, params.get("mix_to") || "0");
  }
}

async function loadModel(key) {
  info = null;
  try {
    const { data } = await getJSON("/api/model?model=" + encodeURIComponent(key));
    applyModel(data);
    changed();
  } catch (e) {
    showError(e.message);
  }
}

async function start() {
  pair(ui["seed-range"], ui.seed);
  pair(ui["psi-range"], ui.psi);
  pair(ui["walk-seed-range"], ui["walk-seed"]);
  pair(ui["mix-seed-range"], ui["mix-seed"]);
  for (const id of ["cutoff", "noise", "class", "grid", "walk-on", "walk", "space", "mix-on", "mix-from", "mix-to"]) {
    ui[id].addEventListener(ui[id].tagName === "SELECT" || ui[id].type === "checkbox" ? "change" : "input", changed);
  }
  for (const id of ["tx", "ty", "rotate"]) ui[id].addEventListener("input", changed);
  ui["move-reset"].addEventListener("click", () => { for (const k of ["tx", "ty", "rotate"]) ui[k].value = 0; changed(); });
  ui["dirs-reset"].addEventListener("click", () => { for (const box of dirSliders()) box.value = 0; changed(); });
  ui.model.addEventListener("change", () => loadModel(ui.model.value));
  ui.save.addEventListener("click", save);
  document.addEventListener("keydown", onKey);
  const params = new URLSearchParams(location.search);
  try {
    const { data } = await getJSON("/api/models");
    ui.model.replaceChildren(...data.models.map((m) => el("option", { value: m.key, text: m.label })));
    const want = params.get("model");
    ui.model.value = data.models.some((m) => m.key === want) ? want : data.default;
    if (!data.models.length) { showError("no model: start with --checkpoint, or --runs with a checkpoint"); return; }
    const { data: m } = await getJSON("/api/model?model=" + encodeURIComponent(ui.model.value));
    applyModel(m);
    restore(params);
    changed();
  } catch (e) {
    showError(e.message);
  }
}

start();
