// The dashboard's DOM helpers, formats and chrome (banner, toasts, live indicator): what every
// view draws with. Plain ES module, no dependencies.
//
// Everything put into the page goes through h() or setText(), which set text nodes and
// attributes, never HTML, so no value from the API can inject markup.

// ---------------------------------------------------------------------------------------------
// Small DOM helpers

export const $ = (sel, root = document) => root.querySelector(sel);

/** Creates an element: h("a", {href: "#/", class: "x"}, "text", child...). */
export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") el.className = v;
    else if (k === "dataset") Object.assign(el.dataset, v);
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "text") el.textContent = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : String(c));
  }
  return el;
}

/** Sets textContent only when it changes, so polling does not disturb selection. */
export function setText(el, text) {
  const s = String(text);
  if (el.textContent !== s) el.textContent = s;
}

export function stateBadge(state) {
  return h("span", { class: `badge state-${(state || "unknown").toLowerCase()}` }, state || "?");
}

export function fmtTime(ms) {
  if (!ms) return "";
  const d = new Date(ms);
  const today = new Date();
  const sameDay = d.toDateString() === today.toDateString();
  const time = d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
  return sameDay ? time : `${d.toLocaleDateString()} ${time}`;
}

export function fmtDuration(ms) {
  if (ms === undefined || ms === null || ms < 0) return "";
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60000) return `${(ms / 1000).toFixed(ms < 10000 ? 2 : 1)} s`;
  const m = Math.floor(ms / 60000);
  const s = Math.round((ms % 60000) / 1000);
  return m < 60 ? `${m} min ${s} s` : `${Math.floor(m / 60)} h ${m % 60} min`;
}

export const plural = (n, word) => `${fmtInt(n)} ${word}${n === 1 ? "" : "s"}`;
export const fmtInt = (n) => (n ?? 0).toLocaleString("en-US");
export const fmtUsd = (n) => `$${(n ?? 0).toFixed((n ?? 0) !== 0 && Math.abs(n) < 0.01 ? 6 : 2)}`;
export const shortId = (id) => (id && id.length > 13 ? `${id.slice(0, 8)}…${id.slice(-4)}` : id || "");
export const pretty = (v) => JSON.stringify(v, null, 2);
export const todayUtc = () => new Date().toISOString().slice(0, 10);

// ---------------------------------------------------------------------------------------------
// Chrome: banner, toasts, live indicator

export function showBanner(text) {
  const b = $("#banner");
  if (!text) {
    b.hidden = true;
    return;
  }
  setText(b, text);
  b.hidden = false;
}

export function toast(content, kind = "ok") {
  const t = h("div", { class: `toast toast-${kind}`, role: kind === "error" ? "alert" : "status", title: "Click to dismiss" }, content);
  t.addEventListener("click", (ev) => {
    if (!ev.target.closest("a")) t.remove();
  });
  $("#toasts").append(t);
  setTimeout(() => t.remove(), kind === "error" ? 8000 : 5000);
}

export function setLive(state) {
  const el = $("#live");
  el.dataset.state = state;
  setText($("#live-text"), { live: "live", connecting: "connecting", reconnecting: "reconnecting", off: "offline" }[state] ?? state);
}
