// Runs page: the run list, curves from stats.jsonl (fetched by byte offset, so polling sends only new lines),
// sample grids over time, schedules and config. Polls every few seconds while the page is open.

const { lineChart, formatNumber } = window.GanforgeChart;
const POLL_MS = 3000;
const COMBINED = [
  ["G and D loss", ["Loss/G/loss", "Loss/D/loss"]],
  ["D scores: real, fake", ["Loss/scores/real", "Loss/scores/fake"]],
  ["ADA p (Augment/p)", ["Augment/p"]],
];
const run = { id: null, info: null, etag: null, records: [], offset: 0, followLatest: true, skipped: 0, skipReason: null,
  statsProblem: null };

const num = (v) => (typeof v === "number" ? v : Number(v)); // "nan"/"inf" strings -> NaN/Infinity: line gaps.
const fileUrl = (path, version = "") =>
  `/api/run/file?id=${encodeURIComponent(run.id)}&path=${encodeURIComponent(path)}&v=${version}`;

async function loadRuns() {
  const { data } = await getJSON("/api/runs");
  const box = $("#runs");
  if (!data.runs.length) {
    box.replaceChildren(el("span", { class: "hint", text: "no runs (folders with stats.jsonl or checkpoints)" }));
    return data.runs;
  }
  box.replaceChildren(...data.runs.map((r) => {
    const link = el("a", { href: `/runs?id=${encodeURIComponent(r.id)}`, class: r.id === run.id ? "here" : "" },
      r.id, el("br"), el("small", { text: `${r.preset || ""} · ${r.snapshots} grids · ${r.checkpoints} ckpts` }));
    if (r.broken) { // Listed like the others, so the reason is one click away; the rest of the list is unaffected.
      link.classList.add("broken");
      link.title = r.broken;
      link.append(el("br"), el("small", { class: "reason", text: `broken: ${r.broken}` }));
    }
    link.addEventListener("click", (ev) => { ev.preventDefault(); selectRun(r.id); });
    return link;
  }));
  return data.runs;
}

function selectRun(id) {
  Object.assign(run, { id, info: null, etag: null, records: [], offset: 0, followLatest: true, skipped: 0,
    skipReason: null, statsProblem: null });
  history.replaceState(null, "", `/runs?id=${encodeURIComponent(id)}`);
  for (const a of document.querySelectorAll("#runs a")) {
    a.classList.toggle("here", a.getAttribute("href") === `/runs?id=${encodeURIComponent(id)}`);
  }
  $("#run-title").textContent = id;
  $("#charts").replaceChildren();
  refresh();
}

async function loadInfo() {
  const headers = run.etag ? { "If-None-Match": run.etag } : {};
  const reply = await getJSON(`/api/run?id=${encodeURIComponent(run.id)}`, { headers });
  if (reply.notModified) return false;
  run.info = reply.data;
  run.etag = reply.etag;
  return true;
}

async function loadStats() {
  let changed = false;
  for (;;) { // Pages through a long stats.jsonl; afterwards each poll brings only the new lines.
    const { data } = await getJSON(`/api/run/stats?id=${encodeURIComponent(run.id)}&since=${run.offset}`);
    if (data.reset) Object.assign(run, { records: [], skipped: 0, skipReason: null });
    run.records.push(...data.records);
    run.skipped += data.skipped || 0;
    run.skipReason = run.skipReason || data.skip_reason;
    run.statsProblem = data.problem;
    run.offset = data.offset;
    changed = changed || data.records.length > 0 || data.reset;
    if (!data.more || !data.records.length) return changed;
  }
}

function lastKimg() {
  const last = run.records[run.records.length - 1];
  return last ? num(last.kimg) : 0;
}

function drawCharts() {
  const keys = new Set();
  for (const r of run.records) for (const [k, v] of Object.entries(r)) {
    if (k !== "kimg" && k !== "timestamp" && !k.startsWith("Schedule/") && (typeof v === "number" || typeof v === "string")) keys.add(k);
  }
  const series = (k) => ({ name: k, points: run.records.filter((r) => k in r).map((r) => [num(r.kimg), num(r[k])]) });
  const figures = [];
  const used = new Set();
  for (const [title, names] of COMBINED) {
    const present = names.filter((k) => keys.has(k));
    if (!present.length) continue;
    present.forEach((k) => used.add(k));
    figures.push(lineChart({ title, series: present.map(series) }));
  }
  for (const k of [...keys].filter((k) => !used.has(k)).sort()) figures.push(lineChart({ title: k, series: [series(k)] }));
  for (const [k, points] of Object.entries(run.info ? run.info.metrics : {})) {
    figures.push(lineChart({ title: `metric: ${k}`, series: [{ name: k, points }] }));
  }
  if (!figures.length) figures.push(el("span", { class: "hint", text: "no stats.jsonl records yet" }));
  $("#charts").replaceChildren(...figures);
}

// The newest value of a stat (not every tick reports every name).
function latest(key) {
  for (let i = run.records.length - 1; i >= 0; i--) if (key in run.records[i]) return formatNumber(num(run.records[i][key]));
  return "—";
}

function summaryTable(info) {
  const updated = info.summary.updated;
  const age = updated ? Date.now() / 1000 - updated : null;
  const rows = [
    ["progress", `${formatNumber(lastKimg())} / ${info.summary.target_kimg ?? "?"} kimg`],
    ["model", info.summary.model || "?"],
    ["ADA p", latest("Augment/p")],
    ["sec/kimg", latest("Timing/sec_per_kimg")],
    ["checkpoints", `${info.checkpoints.length}` + (info.checkpoints.length ? ` (latest ${info.checkpoints.at(-1).file})` : "")],
    ["stats updated", age === null ? "never" : `${Math.round(age)} s ago`],
  ];
  const table = el("table", { class: "kv" }, ...rows.map(([k, v]) => el("tr", {}, el("td", { text: k }), el("td", { text: v }))));
  const extra = [];
  if (age !== null && age < 120) extra.push(el("span", { class: "badge", text: "training" }));
  if (info.model_checkpoint) extra.push(" ", el("a", { href: `/?model=${encodeURIComponent(info.id)}`, text: `open ${info.model_checkpoint} in the model page` }));
  return [table, el("p", {}, ...extra)];
}

// What is wrong with this run (config, checkpoints, metric files) and which stats lines were left out.
function drawProblems(info) {
  const notes = [...(info.problems || [])];
  if (run.statsProblem) notes.push(run.statsProblem);
  if (run.skipped) notes.push(`stats.jsonl: ${run.skipped} line(s) skipped (the first: ${run.skipReason})`);
  const box = $("#problems");
  box.hidden = !notes.length;
  box.replaceChildren(...notes.map((n) => el("li", { text: n })));
}

// The values in force at each tick (Schedule/* in stats.jsonl: what the run really used, resumes included).
function loggedSchedule(name) {
  const key = `Schedule/${name}`;
  return run.records.filter((r) => key in r).map((r) => [num(r.kimg), num(r[key])]);
}

function drawSchedules(info) {
  const xMax = Math.max(num(info.summary.target_kimg) || 0, lastKimg(), ...info.schedules.flatMap((s) => (s.points || []).map((p) => p[0])));
  $("#schedules").replaceChildren(el("table", { class: "kv" }, ...info.schedules.map((s) =>
    el("tr", {}, el("td", { text: s.name }), el("td", { text: s.error ? `${s.text} (${s.error})` : s.text })))));
  const charts = [];
  for (const s of info.schedules) {
    const logged = loggedSchedule(s.name);
    const series = [];
    if (logged.length) series.push({ name: "in force", points: logged });
    if (s.points && (s.points.length > 1 || logged.length)) series.push({ name: "planned", points: s.points });
    if (series.length) charts.push(lineChart({ title: `${s.name}: ${s.text}`, series, step: s.mode === "step",
      xMax: xMax || null, height: 150 }));
  }
  const frozen = loggedSchedule("frozen_tensors");
  if (frozen.some((p) => p[1] > 0)) charts.push(lineChart({ title: "frozen tensors", series: [{ name: "frozen", points: frozen }], step: true, height: 150 }));
  $("#schedule-charts").replaceChildren(...charts);
  $("#config").textContent = JSON.stringify(info.config, null, 2);
}

function drawSamples(info) {
  const slider = $("#snap");
  const snaps = info.snapshots;
  slider.max = Math.max(snaps.length - 1, 0);
  slider.disabled = snaps.length < 2;
  if (run.followLatest || +slider.value > snaps.length - 1) slider.value = Math.max(snaps.length - 1, 0);
  showSnapshot();
  const version = snaps.length ? snaps.at(-1).nimg : "";
  $("#latest-img").src = info.latest ? fileUrl(info.latest, version) : "";
  $("#reals-img").src = info.reals ? fileUrl(info.reals) : "";
}

function showSnapshot() {
  const snaps = run.info ? run.info.snapshots : [];
  const snap = snaps[+$("#snap").value];
  $("#snap-out").textContent = snap ? `${formatNumber(snap.kimg)} kimg (${+$("#snap").value + 1}/${snaps.length})` : "none";
  if (snap) $("#snap-img").src = fileUrl(snap.file, snap.nimg);
}

async function refresh() {
  if (!run.id) return;
  const id = run.id;
  try {
    const [infoChanged, statsChanged] = await Promise.all([loadInfo(), loadStats()]);
    if (id !== run.id) return;
    if (infoChanged) drawSamples(run.info);
    if (infoChanged || statsChanged) drawSchedules(run.info);
    if (statsChanged || infoChanged) drawCharts();
    $("#summary").replaceChildren(...summaryTable(run.info));
    drawProblems(run.info);
    $("#live").textContent = `live · ${run.records.length} ticks · checked ${new Date().toLocaleTimeString()}`;
    showError("");
  } catch (e) {
    showError(e.message);
  }
}

async function start() {
  $("#snap").addEventListener("input", () => {
    run.followLatest = +$("#snap").value === +$("#snap").max;
    showSnapshot();
  });
  try {
    const runs = await loadRuns();
    const want = new URLSearchParams(location.search).get("id");
    const pick = runs.find((r) => r.id === want) || runs[0];
    if (pick) selectRun(pick.id);
  } catch (e) {
    showError(e.message);
  }
  setInterval(refresh, POLL_MS);
  setInterval(() => loadRuns().catch(() => {}), 5 * POLL_MS);
}

start();
