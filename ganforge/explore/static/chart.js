// Small SVG line charts: lineChart({title, series: [{name, points: [[x, y], ...]}], xLabel, step, xMax}) -> <figure>.
// Non-finite values (stats.jsonl writes "nan"/"inf" as strings) break the line instead of bending it.

(() => {
const SVG_NS = "http://www.w3.org/2000/svg";
const COLORS = ["#2f6fde", "#e0663a", "#2e9d5b", "#9b59b6", "#c9a227", "#17a2b8", "#d6336c", "#6c757d"];

function svgEl(name, attrs = {}, text = null) {
  const node = document.createElementNS(SVG_NS, name);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== null) node.textContent = text;
  return node;
}

// About `count` round tick values covering [lo, hi] (1, 2, 5 × 10^k steps).
function niceTicks(lo, hi, count = 5) {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / count;
  const mag = Math.pow(10, Math.floor(Math.log10(raw)));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw) || 10 * mag;
  const ticks = [];
  for (let t = Math.ceil(lo / step) * step; t <= hi + step * 1e-9; t += step) ticks.push(+t.toPrecision(12));
  return ticks;
}

function formatNumber(v) {
  if (v === 0) return "0";
  const a = Math.abs(v);
  if (a >= 1e4 || a < 1e-3) return v.toExponential(1);
  return +v.toPrecision(3) + "";
}

function finite(v) {
  return typeof v === "number" && Number.isFinite(v);
}

// Domain of all finite points, padded so flat lines sit mid-chart.
function extent(series, xMax) {
  let x0 = Infinity, x1 = -Infinity, y0 = Infinity, y1 = -Infinity;
  for (const s of series) for (const [x, y] of s.points) {
    if (!finite(x) || !finite(y)) continue;
    x0 = Math.min(x0, x); x1 = Math.max(x1, x); y0 = Math.min(y0, y); y1 = Math.max(y1, y);
  }
  if (!Number.isFinite(x0)) return null;
  if (finite(xMax)) x1 = Math.max(x1, xMax);
  if (x1 === x0) x1 = x0 + 1;
  if (y1 === y0) { const pad = Math.abs(y0) * 0.1 || 1; y0 -= pad; y1 += pad; }
  const pad = (y1 - y0) * 0.05;
  return { x0, x1, y0: y0 - pad, y1: y1 + pad };
}

// SVG path data; `step` draws a staircase (a step schedule holds its value until the next point), and with
// `xEnd` the last value is held to that x (a schedule keeps its last value).
function pathData(points, sx, sy, step, xEnd) {
  let d = "", pen = false, last = null;
  for (const [x, y] of points) {
    if (!finite(x) || !finite(y)) { pen = false; continue; }
    const px = sx(x).toFixed(1), py = sy(y).toFixed(1);
    if (pen && step) d += `H${px}`;
    d += `${pen ? "L" : "M"}${px},${py}`;
    pen = true; last = py;
  }
  if (pen && finite(xEnd)) d += `H${sx(xEnd).toFixed(1)}`;
  return last === null ? "" : d;
}

function lineChart({ title, series, xLabel = "kimg", step = false, xMax = null, width = 360, height = 200 }) {
  const fig = document.createElement("figure");
  fig.className = "chart";
  const cap = document.createElement("figcaption");
  cap.textContent = title;
  fig.appendChild(cap);
  const svg = svgEl("svg", { viewBox: `0 0 ${width} ${height}`, width, height, role: "img", "aria-label": title });
  fig.appendChild(svg);
  const dom = extent(series, xMax);
  if (!dom) {
    svg.appendChild(svgEl("text", { x: width / 2, y: height / 2, "text-anchor": "middle", class: "empty" }, "no data"));
    return fig;
  }
  const m = { l: 52, r: 10, t: 8, b: 30 };
  const sx = (x) => m.l + ((x - dom.x0) / (dom.x1 - dom.x0)) * (width - m.l - m.r);
  const sy = (y) => height - m.b - ((y - dom.y0) / (dom.y1 - dom.y0)) * (height - m.t - m.b);
  const axes = svgEl("g", { class: "axes" });
  for (const t of niceTicks(dom.y0, dom.y1, 4)) {
    axes.appendChild(svgEl("line", { x1: m.l, x2: width - m.r, y1: sy(t), y2: sy(t), class: "grid" }));
    axes.appendChild(svgEl("text", { x: m.l - 4, y: sy(t) + 3, "text-anchor": "end" }, formatNumber(t)));
  }
  for (const t of niceTicks(dom.x0, dom.x1, 5)) {
    axes.appendChild(svgEl("line", { x1: sx(t), x2: sx(t), y1: height - m.b, y2: height - m.b + 4, class: "tick" }));
    axes.appendChild(svgEl("text", { x: sx(t), y: height - m.b + 14, "text-anchor": "middle" }, formatNumber(t)));
  }
  axes.appendChild(svgEl("text", { x: width - m.r, y: height - 2, "text-anchor": "end", class: "label" }, xLabel));
  axes.appendChild(svgEl("rect", { x: m.l, y: m.t, width: width - m.l - m.r, height: height - m.t - m.b,
    class: "frame" }));
  svg.appendChild(axes);
  series.forEach((s, i) => {
    const d = pathData(s.points, sx, sy, step, xMax);
    if (!d) return;
    const path = svgEl("path", { d, class: "line", stroke: COLORS[i % COLORS.length], "data-series": s.name });
    path.appendChild(svgEl("title", {}, s.name));
    svg.appendChild(path);
  });
  addReadout(svg, series, sx, sy, dom, m, height);
  if (series.length > 1) fig.appendChild(legend(series));
  return fig;
}

function legend(series) {
  const div = document.createElement("div");
  div.className = "legend";
  series.forEach((s, i) => {
    const item = document.createElement("span");
    item.innerHTML = `<i style="background:${COLORS[i % COLORS.length]}"></i>`;
    item.appendChild(document.createTextNode(s.name));
    div.appendChild(item);
  });
  return div;
}

// Hover: a vertical rule and the values of the point nearest in x, per series.
function addReadout(svg, series, sx, sy, dom, m, height) {
  const rule = svgEl("line", { y1: m.t, y2: height - m.b, class: "rule", visibility: "hidden" });
  const label = svgEl("text", { x: m.l + 4, y: m.t + 12, class: "readout" });
  svg.append(rule, label);
  svg.addEventListener("mousemove", (ev) => {
    const box = svg.getBoundingClientRect();
    const px = ((ev.clientX - box.left) / box.width) * svg.viewBox.baseVal.width;
    const x = dom.x0 + ((px - m.l) / (sx(dom.x1) - m.l)) * (dom.x1 - dom.x0);
    const parts = [];
    for (const s of series) {
      let best = null;
      for (const p of s.points) if (finite(p[1]) && (best === null || Math.abs(p[0] - x) < Math.abs(best[0] - x))) best = p;
      if (best) parts.push(`${s.name.split("/").pop()} ${formatNumber(best[1])}`);
    }
    rule.setAttribute("x1", px); rule.setAttribute("x2", px); rule.setAttribute("visibility", "visible");
    label.textContent = `${formatNumber(x)}: ${parts.join("  ")}`;
  });
  svg.addEventListener("mouseleave", () => { rule.setAttribute("visibility", "hidden"); label.textContent = ""; });
}

window.GanforgeChart = { lineChart, niceTicks, formatNumber };
})();
