// The dashboard's charts, drawn as inline SVG from the node's own data (no library, nothing
// from another origin):
// - overview: tasks finished per minute (succeeded, failed, other) and latency percentiles
//   (p50/p90/p99) over the last hour, GET /v1/stats/tasks (from the store: the same on every
//   replica); each pool's queue depth as a sparkline, GET /v1/stats/queues (sampled every
//   10 s in the answering replica's memory: empty after it restarts);
// - usage: cost or tokens per day over the last 30 days, stacked by tenant or by model,
//   GET /v1/stats/usage.
//
// Every text goes in through textContent (svg() and h() never parse markup), so names from the
// API cannot inject anything. Bars and points carry data-* attributes with the numbers they
// show (the browser test reads them).

import { api, session } from "./api.js";
import { $, fmtDuration, fmtInt, fmtUsd, h } from "./ui.js";

const SVG_NS = "http://www.w3.org/2000/svg";
const TASK_STATS_EVERY_MS = 15000;
const QUEUES_EVERY_MS = 10000;
/** Series drawn in their own colour on the usage chart; the rest are summed as "other". */
const MAX_SERIES = 8;

/** Creates an SVG element: svg("rect", {x: 1}, child...); text children become text nodes. */
export function svg(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    el.setAttribute(k, String(v));
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

/** A tooltip for an SVG element (plain text). */
const tip = (text) => svg("title", {}, text);

/** A "nice" upper bound for an axis: 1, 2 or 5 times a power of ten, at least `v`. */
export function niceMax(v) {
  if (!(v > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

const hhmm = (ms) => new Date(ms).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });

/** A chart's geometry: a `w`×`h` view box with room for the axis labels. */
function geometry(w, hgt) {
  const g = { w, h: hgt, left: 48, right: 8, top: 10, bottom: 22 };
  return { ...g, plotW: w - g.left - g.right, plotH: hgt - g.top - g.bottom };
}
/**
 * The geometry of a chart drawn in `container`, `columns` charts to a row (one on narrow
 * screens): the view box is about as wide as the chart is drawn, so labels keep their size.
 */
function fitted(container, columns, hgt) {
  const cols = window.matchMedia("(max-width: 900px)").matches ? 1 : columns;
  const w = Math.round(((container?.clientWidth || 1200) - 12 * (cols - 1)) / cols - 34);
  return geometry(Math.max(280, Math.min(1400, w)), hgt);
}

/** The chart's frame: y gridlines labelled with `fmt`, x labels from `xLabels` ([x, text]). */
function frame(G, max, fmt, xLabels) {
  const { plotH } = G;
  const g = svg("g", { class: "axis" });
  for (const f of [0, 0.5, 1]) {
    const y = G.top + plotH * (1 - f);
    g.append(svg("line", { x1: G.left, x2: G.w - G.right, y1: y, y2: y, class: "grid" }));
    g.append(svg("text", { x: G.left - 4, y: y + 4, "text-anchor": "end" }, fmt(max * f)));
  }
  for (const [x, text] of xLabels) g.append(svg("text", { x, y: G.h - 6, "text-anchor": "middle" }, text));
  return g;
}

function chartSvg(G, label, ...children) {
  return svg("svg", { viewBox: `0 0 ${G.w} ${G.h}`, class: "chart-svg", role: "img", "aria-label": label }, ...children);
}

/** Labels at about five evenly spaced bars. */
function everyFifth(n, at, text) {
  const step = Math.max(1, Math.ceil(n / 5));
  const out = [];
  for (let i = 0; i < n; i += step) out.push([at(i), text(i)]);
  return out;
}

function legend(items) {
  return h("ul", { class: "legend" }, items.map(([cls, text]) => h("li", {}, h("span", { class: `swatch ${cls}` }), text)));
}

// ---------------------------------------------------------------------------------------------
// Overview

/** Tasks finished per bucket, stacked: succeeded, failed, other (cancelled, timed out). */
export function throughputChart(stats, G = geometry(600, 180)) {
  const { plotW, plotH } = G;
  const buckets = stats.buckets ?? [];
  const other = (b) => (b.cancelled ?? 0) + (b.timed_out ?? 0);
  const max = niceMax(Math.max(0, ...buckets.map((b) => b.succeeded + b.failed + other(b))));
  const bw = plotW / Math.max(1, buckets.length);
  const y = (v) => (plotH * v) / max;
  const bars = buckets.map((b, i) => {
    const x = G.left + i * bw + bw * 0.1;
    const w = Math.max(1, bw * 0.8);
    let base = G.top + plotH;
    const seg = (v, cls) => {
      if (!v) return null;
      base -= y(v);
      return svg("rect", { x: x.toFixed(1), y: base.toFixed(1), width: w.toFixed(1), height: y(v).toFixed(1), class: cls });
    };
    const label = `${hhmm(b.start_ms)}: ${fmtInt(b.succeeded)} succeeded, ${fmtInt(b.failed)} failed, ${fmtInt(other(b))} other`;
    return svg(
      "g",
      { class: "bar", "data-start-ms": b.start_ms, "data-succeeded": b.succeeded, "data-failed": b.failed, "data-other": other(b) },
      tip(label),
      seg(b.succeeded, "c-succeeded"),
      seg(b.failed, "c-failed"),
      seg(other(b), "c-other"),
    );
  });
  const labels = everyFifth(buckets.length, (i) => G.left + (i + 0.5) * bw, (i) => hhmm(buckets[i].start_ms));
  return chartSvg(G, "Tasks finished per minute", frame(G, max, (v) => fmtInt(Math.round(v)), labels), bars);
}

/** Latency percentiles per bucket as three lines (gaps where nothing finished). */
export function latencyChart(stats, G = geometry(600, 180)) {
  const { plotW, plotH } = G;
  const buckets = stats.buckets ?? [];
  const max = niceMax(Math.max(0, ...buckets.map((b) => b.latency_ms?.p99 ?? 0)));
  const bw = plotW / Math.max(1, buckets.length);
  const at = (i, v) => [G.left + (i + 0.5) * bw, G.top + plotH - (plotH * v) / max];
  const lines = ["p50", "p90", "p99"].map((p) => {
    const runs = [];
    let run = [];
    buckets.forEach((b, i) => {
      if (b.latency_ms) run.push(at(i, b.latency_ms[p]));
      else if (run.length) {
        runs.push(run);
        run = [];
      }
    });
    if (run.length) runs.push(run);
    return svg(
      "g",
      { class: `line l-${p}` },
      runs.map((r) => (r.length > 1 ? svg("polyline", { points: r.map(([x, y]) => `${x.toFixed(1)},${y.toFixed(1)}`).join(" ") }) : null)),
    );
  });
  const points = buckets.map((b, i) => {
    if (!b.latency_ms) return null;
    const l = b.latency_ms;
    const [x, y] = at(i, l.p50);
    return svg(
      "circle",
      { cx: x.toFixed(1), cy: y.toFixed(1), r: 2.5, class: "pt", "data-start-ms": b.start_ms, "data-count": l.count, "data-p50": l.p50, "data-p90": l.p90, "data-p99": l.p99 },
      tip(`${hhmm(b.start_ms)}: p50 ${fmtDuration(l.p50)}, p90 ${fmtDuration(l.p90)}, p99 ${fmtDuration(l.p99)} (${fmtInt(l.count)} tasks)`),
    );
  });
  const labels = everyFifth(buckets.length, (i) => G.left + (i + 0.5) * bw, (i) => hhmm(buckets[i].start_ms));
  return chartSvg(G, "Latency percentiles", frame(G, max, (v) => fmtDuration(v), labels), lines, points);
}

/** A pool's queue depth over time, as a small line with its last value. */
export function sparkline(samples, w = 160, hgt = 28) {
  const max = Math.max(1, ...samples.map(([, d]) => d));
  const t0 = samples[0]?.[0] ?? 0;
  const span = Math.max(1, (samples.at(-1)?.[0] ?? 0) - t0);
  const pts = samples.map(([t, d]) => `${((w * (t - t0)) / span).toFixed(1)},${(hgt - 2 - ((hgt - 4) * d) / max).toFixed(1)}`);
  if (pts.length === 1) pts.push(`${w},${pts[0].split(",")[1]}`);
  return svg(
    "svg",
    { viewBox: `0 0 ${w} ${hgt}`, class: "spark", role: "img", "aria-label": "queue depth", preserveAspectRatio: "none" },
    svg("polyline", { points: pts.join(" ") }),
  );
}

function figure(id, title, body, dataset, note) {
  return h("figure", { class: "card chart", id, dataset }, h("figcaption", {}, h("h2", {}, title), note ? h("span", { class: "muted small" }, note) : null), body);
}

function renderTaskCharts(stats) {
  const sum = (k) => (stats.buckets ?? []).reduce((a, b) => a + (b[k] ?? 0), 0);
  const totals = { succeeded: sum("succeeded"), failed: sum("failed"), other: sum("cancelled") + sum("timed_out") };
  const scope = stats.tenant ? `tenant ${stats.tenant}` : "every tenant";
  const minutes = Math.round((stats.to_ms - stats.from_ms) / 60000);
  const thr = figure(
    "chart-throughput",
    "Tasks finished",
    [throughputChart(stats, fitted($("#charts-tasks"), 2, 180)), legend([["c-succeeded", `succeeded ${fmtInt(totals.succeeded)}`], ["c-failed", `failed ${fmtInt(totals.failed)}`], ["c-other", `cancelled or timed out ${fmtInt(totals.other)}`]])],
    { succeeded: totals.succeeded, failed: totals.failed, other: totals.other, buckets: (stats.buckets ?? []).length },
    `per ${stats.bucket_ms === 60000 ? "minute" : fmtDuration(stats.bucket_ms)}, last ${minutes} min, ${scope}`,
  );
  const measured = (stats.buckets ?? []).reduce((a, b) => a + (b.latency_ms?.count ?? 0), 0);
  const sampled = stats.latency_sample_every > 1 ? `, one task in ${fmtInt(stats.latency_sample_every)}` : "";
  const lat = figure(
    "chart-latency",
    "Latency",
    [latencyChart(stats, fitted($("#charts-tasks"), 2, 180)), legend([["l-p50", "p50"], ["l-p90", "p90"], ["l-p99", "p99"]])],
    { count: measured },
    `created to finished, succeeded and failed tasks${sampled}`,
  );
  $("#charts-tasks").replaceChildren(thr, lat);
}

function renderQueues(hist) {
  const rows = (hist.pools ?? []).map((p) => {
    const last = p.samples.at(-1)?.[1] ?? 0;
    const peak = Math.max(0, ...p.samples.map(([, d]) => d));
    return h(
      "li",
      { class: "spark-row", dataset: { queuePool: `${p.supervisor}/${p.worker_kind}`, last, peak, samples: p.samples.length } },
      h("span", { class: "mono spark-name" }, `${p.supervisor}/${p.worker_kind}`),
      sparkline(p.samples),
      h("span", { class: "num spark-last", title: `peak ${peak}` }, fmtInt(last)),
    );
  });
  const body = rows.length ? h("ul", { class: "sparks" }, rows) : h("p", { class: "muted" }, "No samples yet.");
  const note = `sampled every ${fmtDuration(hist.interval_ms)} by ${hist.node_id}; starts empty when it restarts`;
  $("#charts-queues").replaceChildren(figure("chart-queues", "Queue depth", body, { pools: rows.length }, note));
}

/** Starts the overview's charts (polling while the overview is open); returns a stop. */
export function openOverviewCharts() {
  let stopped = false;
  const timers = [];
  const loop = (every, read) => {
    const tick = async () => {
      await read();
      if (!stopped) timers.push(setTimeout(tick, every));
    };
    tick();
  };
  const failed = (where, e) => {
    if (e.status === 401 || stopped) return;
    where.replaceChildren(h("p", { class: "card empty" }, `Could not read the charts: ${e.message}`));
  };
  loop(TASK_STATS_EVERY_MS, async () => {
    try {
      const s = await api("GET", "/v1/stats/tasks?window_minutes=60&bucket_seconds=60");
      if (!stopped) renderTaskCharts(s);
    } catch (e) {
      failed($("#charts-tasks"), e);
    }
  });
  if (session.can("status")) {
    loop(QUEUES_EVERY_MS, async () => {
      try {
        const q = await api("GET", "/v1/stats/queues");
        if (!stopped) renderQueues(q);
      } catch (e) {
        failed($("#charts-queues"), e);
      }
    });
  } else {
    $("#charts-queues").replaceChildren();
  }
  return () => {
    stopped = true;
    timers.forEach(clearTimeout);
  };
}

// ---------------------------------------------------------------------------------------------
// Usage

/** Chart options, kept across visits. */
const usageOpts = { by: "tenant", measure: "cost" };

const measureOf = (r, m) => (m === "cost" ? r.cost_usd ?? 0 : (r.tokens_in ?? 0) + (r.tokens_out ?? 0));

/** The days from..to (inclusive, `YYYY-MM-DD`). */
function daysBetween(from, to) {
  const out = [];
  for (let t = Date.parse(`${from}T00:00:00Z`); out.length < 400; t += 86400000) {
    const d = new Date(t).toISOString().slice(0, 10);
    out.push(d);
    if (d >= to) break;
  }
  return out;
}

/** Stacked bars per day, one colour per tenant or model (the largest MAX_SERIES - 1, then "other"). */
export function usageChart(report, by, measure, G = geometry(1200, 240)) {
  const { plotW, plotH } = G;
  const days = daysBetween(report.from_day, report.to_day);
  const totals = new Map();
  for (const r of report.rows ?? []) totals.set(r[by], (totals.get(r[by]) ?? 0) + measureOf(r, measure));
  const ranked = [...totals].sort((a, b) => b[1] - a[1]).map(([k]) => k);
  const shown = ranked.length > MAX_SERIES ? ranked.slice(0, MAX_SERIES - 1) : ranked;
  const series = (k) => (shown.includes(k) ? k : "other");
  const keys = ranked.length > shown.length ? [...shown, "other"] : shown;
  const cells = new Map();
  for (const r of report.rows ?? []) {
    const key = `${r.day}\u0000${series(r[by])}`;
    const c = cells.get(key) ?? { cost: 0, tokens: 0 };
    c.cost += r.cost_usd ?? 0;
    c.tokens += (r.tokens_in ?? 0) + (r.tokens_out ?? 0);
    cells.set(key, c);
  }
  const dayTotal = (d) => keys.reduce((a, k) => a + (cells.get(`${d}\u0000${k}`)?.[measure] ?? 0), 0);
  const max = niceMax(Math.max(0, ...days.map(dayTotal)));
  const fmt = measure === "cost" ? fmtUsd : (v) => fmtInt(Math.round(v));
  const bw = plotW / days.length;
  const bars = days.map((d, i) => {
    let base = G.top + plotH;
    const x = G.left + i * bw + bw * 0.12;
    const segs = keys.map((k, j) => {
      const c = cells.get(`${d}\u0000${k}`);
      if (!c || !c[measure]) return null;
      const hgt = (plotH * c[measure]) / max;
      base -= hgt;
      return svg(
        "rect",
        { x: x.toFixed(1), y: base.toFixed(1), width: Math.max(1, bw * 0.76).toFixed(1), height: hgt.toFixed(1), class: `c${j} seg`, "data-key": k, "data-cost": c.cost, "data-tokens": c.tokens },
        tip(`${d} · ${k}: ${fmtUsd(c.cost)}, ${fmtInt(c.tokens)} tokens`),
      );
    });
    const c = keys.map((k) => cells.get(`${d}\u0000${k}`)).filter(Boolean);
    const cost = c.reduce((a, x) => a + x.cost, 0);
    const tokens = c.reduce((a, x) => a + x.tokens, 0);
    return svg("g", { class: "bar", "data-day": d, "data-cost": cost, "data-tokens": tokens }, segs);
  });
  const labels = everyFifth(days.length, (i) => G.left + (i + 0.5) * bw, (i) => days[i].slice(5));
  const chart = chartSvg(G, `${measure} per day by ${by}`, frame(G, max, fmt, labels), bars);
  return [chart, legend(keys.map((k, j) => [`c${j}`, k]))];
}

function renderUsageChart(report) {
  const el = $("#usage-chart");
  const picker = (name, value, options) =>
    h(
      "select",
      { "aria-label": name, id: `usage-chart-${name}`, onchange: (ev) => { usageOpts[name] = ev.target.value; renderUsageChart(report); } },
      options.map(([v, text]) => h("option", { value: v, selected: v === value }, text)),
    );
  const controls = h(
    "div",
    { class: "chart-controls" },
    picker("measure", usageOpts.measure, [["cost", "Cost (USD)"], ["tokens", "Tokens"]]),
    picker("by", usageOpts.by, [["tenant", "by tenant"], ["model", "by model"]]),
  );
  const note = `${report.from_day} to ${report.to_day} (UTC)${report.truncated ? ", truncated" : ""}`;
  el.replaceChildren(
    figure("chart-usage", "Last 30 days", [controls, ...usageChart(report, usageOpts.by, usageOpts.measure, fitted(el, 1, 240))], { rows: (report.rows ?? []).length }, note),
  );
}

/** Reads and draws the usage chart once (the usage view calls it on each refresh). */
export async function loadUsageChart() {
  const q = new URLSearchParams({ days: "30" });
  const tenant = $("#usage-tenant")?.value.trim();
  if (tenant && session.who?.role === "commander") q.set("tenant", tenant);
  try {
    renderUsageChart(await api("GET", `/v1/stats/usage?${q}`));
  } catch (e) {
    if (e.status !== 401) $("#usage-chart").replaceChildren(h("p", { class: "card empty" }, `Could not read usage per day: ${e.message}`));
  }
}
