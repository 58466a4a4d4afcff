// steer dashboard: a view of the JSON API (/api/summary, /api/timeseries).
// Plain ES module; charts by uPlot (vendored, see scripts/build-dashboard.sh).
import uPlot from "./vendor/uPlot.esm.js";
import { int, compact, ms, usd, pct, dur, msAxis } from "./format.js";

const WINDOWS = ["15m", "1h", "6h", "24h", "7d", "30d"];
const REFRESH_MS = 5000;
// Okabe–Ito (colour-blind safe), plus a dash pattern per series so lines
// stay distinguishable without colour; every line is also labelled at its end.
const COLORS = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#999933", "#7f7f7f"];
const DASHES = [[], [8, 4], [2, 3], [12, 4, 2, 4], [4, 4], [1, 5], [16, 6], [6, 2, 2, 2], [3, 7]];

// State lives in the URL hash, so a view can be bookmarked or reloaded.
const state = { since: "1h", by: "model", tag: "", filters: [], sort: "cost", live: true };

// What the page shows, for tests and curious users.
const shown = { ready: false, refreshes: 0, charts: {}, markers: {}, groups: [], error: null };
window.steerDashboard = shown;

function readHash() {
  const p = new URLSearchParams(location.hash.slice(1));
  if (p.get("since")) state.since = p.get("since");
  const by = p.get("by");
  if (by) {
    if (by.startsWith("tag:")) { state.by = "tag"; state.tag = by.slice(4); } else state.by = by;
  }
  state.filters = p.getAll("filter");
  if (p.get("sort")) state.sort = p.get("sort");
  if (p.get("live")) state.live = p.get("live") !== "0";
}

function byParam() {
  return state.by === "tag" ? (state.tag ? "tag:" + state.tag : "") : state.by;
}

function writeHash() {
  const p = new URLSearchParams();
  p.set("since", state.since);
  if (byParam()) p.set("by", byParam());
  for (const f of state.filters) p.append("filter", f);
  if (state.sort !== "cost") p.set("sort", state.sort);
  if (!state.live) p.set("live", "0");
  history.replaceState(null, "", "#" + p.toString());
}

function apiUrl(path, extra) {
  const p = new URLSearchParams({ since: state.since, ...extra });
  for (const f of state.filters) p.append("filter", f);
  return path + "?" + p.toString();
}

async function getJson(url) {
  const r = await fetch(url, { cache: "no-store" });
  const body = await r.json().catch(() => ({ error: r.statusText }));
  if (!r.ok) throw new Error(body.error || r.statusText);
  return body;
}

// ---------------------------------------------------------------- charts

const CHARTS = [
  { id: "calls", title: "Calls", unit: "calls / step", fmt: compact },
  { id: "errors", title: "Errors by class", unit: "errors / step", fmt: compact },
  { id: "latency", title: "Latency p50 / p95 / p99, all selected calls", unit: "ms", fmt: ms, axis: msAxis },
  { id: "latency_by", title: "Latency p95", unit: "ms", fmt: ms, axis: msAxis },
  { id: "ttft", title: "Time to first token p50 / p95 (streamed calls)", unit: "ms", fmt: ms, axis: msAxis },
  { id: "tokens", title: "Tokens: input, output, cached, reasoning", unit: "tokens / step", fmt: compact },
  { id: "cost", title: "Cost", unit: "USD / step", fmt: usd },
];

const plots = {};

function card(c) {
  const el = document.createElement("section");
  el.className = "card chart";
  el.id = "chart-" + c.id;
  el.innerHTML = `<h2></h2><div class="plot"></div>`;
  document.getElementById("charts").append(el);
  return el;
}

// Label each line at its last point (readable without colour or legend).
function endLabels(fmt) {
  return {
    hooks: {
      draw: [
        (u) => {
          const ctx = u.ctx;
          const labels = [];
          u.series.forEach((s, i) => {
            if (i === 0 || !s.show) return;
            const ys = u.data[i];
            let j = ys.length - 1;
            while (j >= 0 && ys[j] == null) j--;
            if (j < 0) return;
            labels.push({ text: s.label, color: s._stroke || "#333", y: u.valToPos(ys[j], "y", true), x: u.valToPos(u.data[0][j], "x", true) });
          });
          labels.sort((a, b) => a.y - b.y);
          const gap = 13 * devicePixelRatio;
          const bottom = u.bbox.top + u.bbox.height;
          for (let k = 1; k < labels.length; k++) labels[k].y = Math.max(labels[k].y, labels[k - 1].y + gap);
          if (labels.length && labels[labels.length - 1].y > bottom) labels[labels.length - 1].y = bottom;
          for (let k = labels.length - 2; k >= 0; k--) labels[k].y = Math.min(labels[k].y, labels[k + 1].y - gap);
          ctx.save();
          ctx.font = `${11 * devicePixelRatio}px system-ui, sans-serif`;
          ctx.textBaseline = "middle";
          // uPlot leaves the alignment of its last axis (right-aligned
          // values): labels start after the point, in the right margin.
          ctx.textAlign = "left";
          for (const l of labels) {
            ctx.fillStyle = l.color;
            ctx.fillText(l.text, Math.min(l.x + 8 * devicePixelRatio, u.bbox.left + u.bbox.width + 8 * devicePixelRatio), l.y);
          }
          ctx.restore();
        },
      ],
    },
  };
}

/** Indices of the values of series `si` whose neighbours are both missing. */
function isolatedPoints(u, si) {
  const d = u.data[si];
  const out = [];
  for (let i = 0; i < d.length; i++) {
    if (d[i] != null && (i === 0 || d[i - 1] == null) && (i === d.length - 1 || d[i + 1] == null)) out.push(i);
  }
  return out.length ? out : null;
}

// Where the markers of values without neighbours were drawn (canvas pixels)
// and in which colour: what the page shows, for whoever inspects it.
function reportMarkers(id) {
  return {
    hooks: {
      draw: [
        (u) => {
          const out = [];
          u.series.forEach((s, i) => {
            if (i === 0 || !s.show) return;
            for (const j of isolatedPoints(u, i) || []) {
              out.push({
                series: s.label,
                x: u.valToPos(u.data[0][j], "x", true),
                y: u.valToPos(u.data[i][j], "y", true),
                color: COLORS[(i - 1) % COLORS.length],
              });
            }
          });
          shown.markers[id] = out;
        },
      ],
    },
  };
}

function makeOpts(c, el, names, step) {
  const width = Math.max(320, el.querySelector(".plot").clientWidth);
  return {
    width,
    height: 230,
    padding: [12, 110, 0, 0],
    legend: { live: false },
    cursor: { drag: { x: false, y: false } },
    scales: { x: { time: true }, y: { range: (u, lo, hi) => [0, hi > 0 ? hi * 1.08 : 1] } },
    axes: [
      { grid: { stroke: "#e6e6e6" } },
      {
        label: c.unit.replace("step", dur(step)),
        labelSize: 18,
        size: 64,
        grid: { stroke: "#e6e6e6" },
        values: (u, vals) => vals.map((v) => (c.axis || c.fmt)(v)),
      },
    ],
    series: [
      { label: "time" },
      ...names.map((n, i) => ({
        label: n,
        stroke: COLORS[i % COLORS.length],
        dash: DASHES[i % DASHES.length],
        width: 2,
        spanGaps: false,
        // No markers on lines, but a value with no neighbour (a burst within
        // one step, a window holding a single step) has no line to draw: mark it.
        points: { show: false, size: 7, fill: COLORS[i % COLORS.length], filter: isolatedPoints },
        value: (u, v) => c.fmt(v),
      })),
    ],
    plugins: [endLabels(c.fmt), reportMarkers(c.id)],
  };
}

function draw(c, names, data, step, split) {
  const el = document.getElementById("chart-" + c.id);
  el.querySelector("h2").textContent = c.title + (split ? " by " + split : "");
  const key = names.join("\u0001") + "|" + step;
  const prev = plots[c.id];
  if (prev && prev.key === key) {
    prev.plot.setData(data);
  } else {
    if (prev) prev.plot.destroy();
    const plot = new uPlot(makeOpts(c, el, names, step), data, el.querySelector(".plot"));
    plots[c.id] = { plot, key };
  }
  el.dataset.series = names.join("|");
  el.dataset.points = String(data[0].length);
  shown.charts[c.id] = { series: names, points: data[0].length, unit: c.unit.replace("step", dur(step)) };
}

const zeroIfEmpty = (s, f) => f(s);
const pctl = (s, dist, p) => (s[dist] ? s[dist][p] : null);

function renderCharts(ts, errs) {
  const x = ts.buckets;
  const step = ts.step_seconds;
  const groups = Object.keys(ts.groups).sort((a, b) => total(ts.groups[b]) - total(ts.groups[a]));
  const per = (f) => groups.map((g) => ts.groups[g].map(f));
  const byChart = (id) => CHARTS.find((c) => c.id === id);

  if (groups.length) {
    const split = state.by === "tag" ? "tag " + state.tag : state.by.replace("_", " ");
    draw(byChart("calls"), groups, [x, ...per((s) => s.count)], step, split);
    draw(byChart("latency_by"), groups, [x, ...per((s) => pctl(s, "latency_ms", "p95"))], step, split);
    draw(byChart("cost"), groups, [x, ...per((s) => s.cost_usd)], step, split);
  } else {
    draw(byChart("calls"), ["all calls"], [x, ts.total.map((s) => s.count)], step);
    draw(byChart("latency_by"), ["p95"], [x, ts.total.map((s) => pctl(s, "latency_ms", "p95"))], step);
    draw(byChart("cost"), ["all calls"], [x, ts.total.map((s) => s.cost_usd)], step);
  }
  const classes = Object.keys(errs.groups).filter((k) => k !== "none").sort((a, b) => total(errs.groups[b]) - total(errs.groups[a]));
  draw(byChart("errors"), classes.length ? classes : ["no errors"],
    [errs.buckets, ...(classes.length ? classes.map((k) => errs.groups[k].map((s) => s.count)) : [errs.total.map(() => 0)])], errs.step_seconds);
  draw(byChart("latency"), ["p50", "p95", "p99"], [x, ...["p50", "p95", "p99"].map((p) => ts.total.map((s) => pctl(s, "latency_ms", p)))], step);
  draw(byChart("ttft"), ["p50", "p95"], [x, ...["p50", "p95"].map((p) => ts.total.map((s) => pctl(s, "ttft_ms", p)))], step);
  draw(byChart("tokens"), ["input", "output", "cached", "reasoning"],
    [x, ...["input_tokens", "output_tokens", "cached_tokens", "reasoning_tokens"].map((k) => ts.total.map((s) => s[k] || 0))], step);
}

function total(points) {
  return points.reduce((a, s) => a + s.count, 0);
}

// ---------------------------------------------------------------- KPIs and table

function renderKpis(sum) {
  const t = sum.total;
  const items = [
    ["calls", int(t.count)],
    ["errors", `${int(t.errors)} (${pct(t.error_rate)})`],
    ["latency p95", ms(t.latency_ms && t.latency_ms.p95)],
    ["TTFT p95", ms(t.ttft_ms && t.ttft_ms.p95)],
    ["tokens in / out", `${compact(t.input_tokens)} / ${compact(t.output_tokens)}`],
    ["cost", usd(t.cost_usd) + (t.unpriced ? ` (+${int(t.unpriced)} unpriced)` : "")],
  ];
  document.getElementById("kpis").innerHTML = "";
  for (const [k, v] of items) {
    const d = document.createElement("div");
    d.className = "kpi";
    d.innerHTML = `<div class="v"></div><div class="k"></div>`;
    d.querySelector(".v").textContent = v;
    d.querySelector(".k").textContent = k;
    document.getElementById("kpis").append(d);
  }
}

const COLUMNS = [
  ["group", null, (n) => n],
  ["calls", "calls", (n, s) => int(s.count)],
  ["errors", null, (n, s) => int(s.errors)],
  ["error rate", "error_rate", (n, s) => pct(s.error_rate)],
  ["p50", null, (n, s) => ms(s.latency_ms && s.latency_ms.p50)],
  ["p95", "p95", (n, s) => ms(s.latency_ms && s.latency_ms.p95)],
  ["p99", null, (n, s) => ms(s.latency_ms && s.latency_ms.p99)],
  ["TTFT p95", null, (n, s) => ms(s.ttft_ms && s.ttft_ms.p95)],
  ["retries", null, (n, s) => int(s.retries)],
  ["tokens in", null, (n, s) => compact(s.input_tokens)],
  ["tokens out", null, (n, s) => compact(s.output_tokens)],
  ["cost", "cost", (n, s) => (s.count > 0 && s.cost_unknown === s.count ? "–" : usd(s.cost_usd))],
];
const SORTS = {
  calls: (s) => s.count,
  error_rate: (s) => s.error_rate,
  p95: (s) => (s.latency_ms ? s.latency_ms.p95 : -1),
  cost: (s) => s.cost_usd,
};

function renderTable(sum) {
  const table = document.getElementById("groups");
  const head = document.createElement("tr");
  for (const [title, sort] of COLUMNS) {
    const th = document.createElement("th");
    th.textContent = title + (sort && sort === state.sort ? " ▼" : "");
    if (sort) {
      th.className = "sortable";
      th.tabIndex = 0;
      th.onclick = () => { state.sort = sort; writeHash(); renderTable(sum); };
    }
    head.append(th);
  }
  table.tHead.replaceChildren(head);
  const by = sum.by ? String(sum.by) : "";
  const rows = Object.entries(sum.groups).sort((a, b) => SORTS[state.sort](b[1]) - SORTS[state.sort](a[1]));
  shown.groups = rows.map(([n]) => n);
  const body = document.createElement("tbody");
  for (const [name, s] of rows) {
    const tr = document.createElement("tr");
    tr.dataset.group = name;
    const clickable = by && name !== "(other)";
    if (clickable) {
      tr.className = "clickable";
      tr.tabIndex = 0;
      tr.title = `show only ${by === "error_class" ? "error" : by} = ${name}`;
      const add = () => addFilter(`${by === "error_class" ? "error" : by}=${name}`);
      tr.onclick = add;
      tr.onkeydown = (e) => { if (e.key === "Enter") add(); };
    }
    for (const [, , f] of COLUMNS) {
      const td = document.createElement("td");
      td.textContent = f(name, s);
      tr.append(td);
    }
    body.append(tr);
  }
  table.tBodies[0].replaceWith(body);
}

// ---------------------------------------------------------------- controls

function addFilter(f) {
  if (!state.filters.includes(f)) state.filters.push(f);
  writeHash();
  refresh(true);
}

function renderFilters() {
  const box = document.getElementById("filters");
  box.replaceChildren();
  for (const f of state.filters) {
    const b = document.createElement("button");
    b.className = "chip";
    b.textContent = f.replace("=", " = ") + "  ✕";
    b.title = "remove this filter";
    b.dataset.filter = f;
    b.onclick = () => { state.filters = state.filters.filter((x) => x !== f); writeHash(); refresh(true); };
    box.append(b);
  }
}

function renderControls() {
  const w = document.getElementById("windows");
  w.replaceChildren();
  for (const s of WINDOWS) {
    const b = document.createElement("button");
    b.textContent = s;
    b.dataset.window = s;
    b.setAttribute("aria-pressed", String(s === state.since));
    b.onclick = () => { state.since = s; writeHash(); renderControls(); refresh(true); };
    w.append(b);
  }
  const by = document.getElementById("by");
  by.value = state.by;
  const tag = document.getElementById("tagkey");
  tag.hidden = state.by !== "tag";
  tag.value = state.tag;
  document.getElementById("live").checked = state.live;
}

function setupControls() {
  document.getElementById("by").onchange = (e) => {
    state.by = e.target.value;
    document.getElementById("tagkey").hidden = state.by !== "tag";
    if (state.by !== "tag" || state.tag) { writeHash(); refresh(true); }
  };
  document.getElementById("tagkey").onchange = (e) => { state.tag = e.target.value.trim(); writeHash(); refresh(true); };
  document.getElementById("live").onchange = (e) => { state.live = e.target.checked; writeHash(); };
  window.addEventListener("hashchange", () => { readHash(); renderControls(); refresh(true); });
  window.addEventListener("resize", () => {
    for (const p of Object.values(plots)) {
      const el = p.plot.root.parentElement;
      p.plot.setSize({ width: Math.max(320, el.clientWidth), height: 230 });
    }
  });
}

// ---------------------------------------------------------------- refresh

let inFlight = null;
async function refresh(force) {
  if (inFlight && !force) return;
  const my = {};
  inFlight = my;
  const status = document.getElementById("status");
  status.textContent = "loading…";
  renderFilters();
  try {
    const by = byParam();
    const [sum, ts, errs] = await Promise.all([
      getJson(apiUrl("/api/summary", by ? { by } : {})),
      getJson(apiUrl("/api/timeseries", by ? { by } : {})),
      getJson(apiUrl("/api/timeseries", { by: "error" })),
    ]);
    if (inFlight !== my) return; // a newer refresh started
    renderKpis(sum);
    renderCharts(ts, errs);
    renderTable(sum);
    shown.refreshes += 1;
    shown.ready = true;
    shown.error = null;
    document.body.dataset.refreshes = String(shown.refreshes);
    status.textContent = `updated ${new Date().toLocaleTimeString()} · step ${dur(ts.step_seconds)}` + (state.live ? " · live" : "");
  } catch (e) {
    shown.error = String(e.message || e);
    status.textContent = "error: " + shown.error;
  } finally {
    if (inFlight === my) inFlight = null;
  }
}

async function main() {
  for (const c of CHARTS) card(c).querySelector("h2").textContent = c.title;
  readHash();
  writeHash();
  renderControls();
  setupControls();
  try {
    const meta = await getJson("/api/meta");
    document.getElementById("store").textContent = `${meta.store} · steer ${meta.version} · read-only`;
  } catch (e) { /* shown by refresh */ }
  await refresh(true);
  setInterval(() => { if (state.live && !document.hidden) refresh(false); }, REFRESH_MS);
}

main();
