// moodwire live dashboard: polls /api/v1 and draws inline SVG (no libraries, no network beyond this server).
// Query string: ?span=60m (timeline length), window=15m (now-vs-baseline window), every=5 (seconds).
"use strict";

const opts = new URLSearchParams(location.search);
const SPAN = opts.get("span") || "60m";
const WINDOW = opts.get("window") || "15m";
const EVERY_S = Math.max(2, Number(opts.get("every")) || 5);
const SVG = "http://www.w3.org/2000/svg";
const $ = (sel) => document.querySelector(sel);

document.querySelectorAll(".span-label").forEach((el) => (el.textContent = SPAN));
document.querySelectorAll(".window-label").forEach((el) => (el.textContent = WINDOW));
$("#every").textContent = String(EVERY_S);

class HttpError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

async function api(path) {
  const headers = {};
  const token = localStorage.getItem("moodwire-token");
  if (token) headers.Authorization = "Bearer " + token;
  const res = await fetch("/api/v1/" + path, { headers, cache: "no-store" });
  const body = await res.json().catch(() => ({}));
  if (!res.ok) throw new HttpError(res.status, body.error || res.statusText);
  return body;
}

function el(tag, attrs = {}, text) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

function svgEl(tag, attrs = {}, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  if (text !== undefined) node.textContent = text;
  return node;
}

const pct = (x) => (x === null || x === undefined ? "-" : (100 * x).toFixed(1) + "%");
const hhmm = (iso) => new Date(iso).toISOString().slice(11, 16);

// One small multiple: negative share line (0-100 %), baseline as a dashed line, volume as bars.
function chart(series, times, baseline) {
  const W = 360, H = 150, L = 34, R = 30, T = 8, B = 22;
  const iw = W - L - R, ih = H - T - B;
  const n = times.length;
  const x = (i) => L + (n <= 1 ? 0 : (i * iw) / (n - 1));
  const y = (share) => T + ih - share * ih;
  const maxVol = Math.max(1, ...series.events);
  const svg = svgEl("svg", { viewBox: `0 0 ${W} ${H}`, role: "img",
    "aria-label": `negative share of ${series.value} over time` });
  for (const tick of [0, 0.5, 1]) {
    svg.append(svgEl("line", { class: "grid-line", x1: L, x2: L + iw, y1: y(tick), y2: y(tick) }));
    svg.append(svgEl("text", { x: L - 4, y: y(tick) + 3, "text-anchor": "end" }, `${tick * 100}%`));
  }
  svg.append(svgEl("text", { x: L + iw + 4, y: T + 8 }, String(maxVol)));
  svg.append(svgEl("text", { x: L + iw + 4, y: T + 18 }, "/min"));
  const bw = Math.max(1, iw / Math.max(n, 1) - 1);
  series.events.forEach((v, i) => {
    if (!v) return;
    const h = (v / maxVol) * ih * 0.45;
    svg.append(svgEl("rect", { class: "volume", x: x(i) - bw / 2, y: T + ih - h, width: bw, height: h }));
  });
  if (baseline !== null && baseline !== undefined) {
    svg.append(svgEl("path", { class: "baseline", d: `M${L},${y(baseline)}L${L + iw},${y(baseline)}` }));
  }
  let d = "", pen = false;
  series.negative_share.forEach((s, i) => {
    if (s === null) { pen = false; return; }
    d += `${pen ? "L" : "M"}${x(i).toFixed(1)},${y(s).toFixed(1)}`;
    pen = true;
  });
  if (d) svg.append(svgEl("path", { class: "share", d }));
  // Dots too: a minute with events between two empty minutes has no line segment to show.
  series.negative_share.forEach((s, i) => {
    if (s !== null) svg.append(svgEl("circle", { class: "point", cx: x(i).toFixed(1), cy: y(s).toFixed(1), r: 2 }));
  });
  if (n) {
    svg.append(svgEl("text", { x: x(0), y: H - 6, "text-anchor": "start" }, hhmm(times[0])));
    svg.append(svgEl("text", { x: x(n - 1), y: H - 6, "text-anchor": "end" }, hhmm(times[n - 1])));
  }
  svg.append(svgEl("text", { x: L + iw / 2, y: H - 6, "text-anchor": "middle" }, "time (UTC), 1 min steps"));
  return svg;
}

function renderTimelines(ts, summary) {
  const box = $("#timelines");
  const withData = ts.series.filter((s) => s.events.some((v) => v > 0));
  if (!withData.length) { box.replaceChildren(el("p", { class: "empty" }, `No events in the last ${SPAN}.`)); return; }
  const base = Object.fromEntries(summary.values.map((v) => [v.value, v.baseline_share]));
  box.replaceChildren(...withData.map((s) => {
    const fig = el("figure", { class: "chart", "data-topic": s.value });
    const total = s.events.reduce((a, b) => a + b, 0), neg = s.negative.reduce((a, b) => a + b, 0);
    fig.append(el("h3", {}, `${s.value} - ${total} events, ${pct(total ? neg / total : null)} negative`));
    fig.append(chart(s, ts.t, base[s.value]));
    return fig;
  }));
}

function renderCompare(summary) {
  const body = $("#compare tbody");
  const rows = summary.values.filter((v) => v.events > 0 || v.baseline_events > 0);
  if (!rows.length) {
    body.replaceChildren(el("tr", {}, "")); body.firstChild.append(el("td", { colspan: 5, class: "empty" }, "No events in this window."));
    return;
  }
  body.replaceChildren(...rows.map((v) => {
    const tr = el("tr", { "data-topic": v.value });
    const change = v.negative_share !== null && v.baseline_share !== null ? v.negative_share - v.baseline_share : null;
    const cls = change === null ? "" : change > 0.05 ? "up" : change < -0.05 ? "down" : "";
    const arrow = change === null ? "-" : `${change > 0 ? "▲ +" : change < 0 ? "▼ " : ""}${(100 * change).toFixed(1)} pts`;
    tr.append(el("td", {}, v.value), el("td", {}, String(v.events)), el("td", {}, pct(v.negative_share)),
      el("td", {}, pct(v.baseline_share)), el("td", { class: cls }, arrow));
    return tr;
  }));
}

function renderAlerts(data) {
  const list = $("#alerts");
  if (!data.alerts.length) { list.replaceChildren(el("li", { class: "empty" }, "No alert is firing.")); return; }
  list.replaceChildren(...data.alerts.map((a) => {
    const li = el("li", { class: "firing", "data-rule": a.rule_id });
    li.append(el("span", { class: "sev" }, a.severity + " "),
      el("strong", {}, `${a.dim} = ${a.value}`),
      document.createTextNode(`: ${pct(a.negative_share)} negative of ${a.volume} events (baseline ${pct(a.baseline_share)})`),
      el("div", { class: "meta" }, `rule ${a.rule_id} · firing since ${hhmm(a.first_seen)} UTC · last seen ${hhmm(a.last_seen)} UTC`));
    return li;
  }));
}

function renderHeadlines(data) {
  const list = $("#headlines");
  if (!data.events.length) { list.replaceChildren(el("li", { class: "empty" }, `No negative events in the last ${SPAN}.`)); return; }
  list.replaceChildren(...data.events.map((e) => {
    const li = el("li", { "data-id": e.id });
    const text = e.title || e.text;
    if (e.url && /^https?:\/\//.test(e.url)) li.append(el("a", { href: e.url, rel: "noopener noreferrer" }, text));
    else li.append(document.createTextNode(text));
    li.append(el("div", { class: "meta" },
      `${hhmm(e.ts)} UTC · ${e.source} · ${e.topic} · ${pct(e.sentiment_scores.negative)} negative`));
    return li;
  }));
}

async function refresh() {
  const status = $("#status");
  try {
    const [ts, summary, alerts, negative] = await Promise.all([
      api(`timeseries?from=now-${SPAN}&to=now&step=1m&dim=topic`),
      api(`summary?window=${WINDOW}&dim=topic`),
      api("alerts?state=firing&limit=20"),
      api(`events?sentiment=negative&since=now-${SPAN}&limit=10`),
    ]);
    renderTimelines(ts, summary);
    renderCompare(summary);
    renderAlerts(alerts);
    renderHeadlines(negative);
    status.className = "";
    status.textContent = `updated ${new Date().toISOString().slice(11, 19)} UTC · ${summary.totals.events} events in the last ${WINDOW}`;
    $("#token-form").hidden = true;
  } catch (err) {
    status.className = "error";
    if (err instanceof HttpError && err.status === 401) {
      $("#token-form").hidden = false;
      status.textContent = "API token required";
    } else {
      status.textContent = `cannot load data: ${err.message}`;
    }
  }
}

$("#token-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  localStorage.setItem("moodwire-token", $("#token").value.trim());
  refresh();
});

refresh();
setInterval(refresh, EVERY_S * 1000);
