// The model calls of a task, on its page: GET /v1/llm-calls?task_id=ID (docs/HTTP_API.md), as
// a table with a small latency bar per call (time to first token, then the rest). A node
// without that endpoint (404) or a task without calls shows nothing.

import { api } from "./api.js";
import { fmtDuration, fmtInt, fmtUsd, h } from "./ui.js";
import { svg } from "./charts.js";

/** Pages of calls read at most (a page is what the node answers; the rest is left out). */
const MAX_PAGES = 5;

/** The latency bar of one call: first token, then the rest, scaled to the slowest call. */
function latencyBar(c, max) {
  const w = 120;
  const total = Math.max(0, c.total_ms ?? 0);
  const first = c.first_token_ms === null || c.first_token_ms === undefined ? null : Math.min(total, Math.max(0, c.first_token_ms));
  const tw = max > 0 ? (w * total) / max : 0;
  const fw = first !== null && max > 0 ? (w * first) / max : 0;
  return svg(
    "svg",
    { viewBox: `0 0 ${w} 10`, class: "call-bar", role: "img", "aria-label": `${fmtDuration(total)}`, "data-total-ms": total, "data-first-token-ms": first ?? "" },
    svg("title", {}, first !== null ? `first token after ${fmtDuration(first)}, done after ${fmtDuration(total)}` : `done after ${fmtDuration(total)}`),
    svg("rect", { x: 0, y: 1, width: Math.max(1, tw).toFixed(1), height: 8, class: "call-total" }),
    first !== null ? svg("rect", { x: 0, y: 1, width: Math.max(1, fw).toFixed(1), height: 8, class: "call-first" }) : null,
  );
}

function modelCell(c) {
  const used = c.model_used || c.model_requested || "";
  const parts = [h("span", { class: "mono" }, `${c.provider ? `${c.provider}/` : ""}${used}`)];
  if (c.model_requested && c.model_used && c.model_requested !== c.model_used) {
    parts.push(h("div", { class: "muted small" }, `asked for ${c.model_requested}`));
  }
  for (const f of c.fallbacks ?? []) {
    parts.push(h("div", { class: "muted small fallback", title: f.error ?? "" }, `fell back from ${f.provider ?? ""}/${f.model ?? ""}: ${f.error ?? ""}`));
  }
  return h("td", {}, parts);
}

function callRow(c, max) {
  return h(
    "tr",
    { class: "llm-call", dataset: { callId: c.id, attempt: c.attempt, totalMs: c.total_ms ?? 0, tokensIn: c.tokens_in ?? 0, tokensOut: c.tokens_out ?? 0 } },
    h("td", { class: "num" }, fmtInt(c.attempt)),
    modelCell(c),
    h("td", { class: "num" }, fmtInt(c.tokens_in)),
    h("td", { class: "num" }, fmtInt(c.tokens_out)),
    h("td", { class: "num" }, fmtUsd(c.cost_usd)),
    h("td", {}, latencyBar(c, max), h("div", { class: "muted small" }, fmtDuration(c.total_ms ?? 0))),
    h("td", {}, c.finish_reason ?? "", c.cache_hit ? h("span", { class: "badge" }, "cache") : null),
  );
}

/** The prompt and reply of the calls that kept them, folded. */
function texts(calls) {
  const kept = calls.filter((c) => c.prompt || c.reply);
  if (!kept.length) return null;
  return h(
    "details",
    { class: "call-texts" },
    h("summary", {}, "Prompts and replies"),
    kept.map((c) =>
      h(
        "div",
        { class: "call-text" },
        h("h3", { class: "small" }, `Attempt ${c.attempt} · ${c.model_used || c.model_requested || ""}`),
        c.prompt ? h("pre", { class: "json" }, typeof c.prompt === "string" ? c.prompt : JSON.stringify(c.prompt, null, 2)) : null,
        c.reply ? h("pre", { class: "json" }, typeof c.reply === "string" ? c.reply : JSON.stringify(c.reply, null, 2)) : null,
      ),
    ),
  );
}

/**
 * The "Model calls" panel of task `id`: {el, load(), stop()}. `el` stays empty and hidden until
 * calls are read; load() reads them again (after the task's terminal event).
 */
export function llmCallsPanel(id) {
  const el = h("section", { class: "card llm-calls", id: "llm-calls", hidden: true });
  let stopped = false;
  const load = async () => {
    const calls = [];
    let cursor = "";
    try {
      for (let page = 0; page < MAX_PAGES; page++) {
        const q = new URLSearchParams({ task_id: id });
        if (cursor) q.set("cursor", cursor);
        const r = await api("GET", `/v1/llm-calls?${q}`);
        calls.push(...(r?.calls ?? []));
        cursor = r?.next_cursor ?? "";
        if (!cursor) break;
      }
    } catch (e) {
      if (e.status === 404 || e.status === 403) {
        el.hidden = true;
        return;
      }
      if (e.status === 401 || stopped || !calls.length) return;
    }
    if (stopped) return;
    if (!calls.length) {
      el.hidden = true;
      el.replaceChildren();
      return;
    }
    const max = Math.max(1, ...calls.map((c) => c.total_ms ?? 0));
    el.replaceChildren(
      h("h2", {}, `Model calls (${fmtInt(calls.length)})`),
      h(
        "div",
        { class: "table-wrap" },
        h(
          "table",
          { class: "usage llm-table" },
          h("thead", {}, h("tr", {}, ["Try", "Model", "In", "Out", "Cost", "Latency", "Finish"].map((t, i) => h("th", { class: [0, 2, 3, 4].includes(i) ? "num" : undefined }, t)))),
          h("tbody", {}, calls.map((c) => callRow(c, max))),
        ),
      ),
    );
    const folded = texts(calls);
    if (folded) el.append(folded);
    el.hidden = false;
  };
  return {
    el,
    load,
    stop: () => {
      stopped = true;
    },
  };
}
