// Helpers shared by both pages.

const $ = (sel, root = document) => root.querySelector(sel);

// JSON from the API; a 4xx/5xx reply becomes an Error carrying the server's sentence.
async function getJSON(url, options = {}) {
  const r = await fetch(url, { cache: "no-store", ...options });
  if (r.status === 304) return { notModified: true, etag: r.headers.get("ETag") };
  const body = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error(body.error || `${r.status} ${r.statusText}`);
  return { data: body, etag: r.headers.get("ETag") };
}

function showError(message) {
  const box = $("#error");
  if (!box) return;
  box.textContent = message || "";
  box.hidden = !message;
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c);
  return node;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
