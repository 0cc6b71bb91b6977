// The schedules page (#/schedules): the caller's schedules (a commander's: every tenant's)
// from GET /v1/schedules with their next fire times, refreshed every 5 s, and, for operators,
// Pause / Resume / Trigger buttons (POST /v1/schedules/<id>/pause|resume|trigger;
// docs/SCHEDULES.md). Creating a schedule is done with the CLI or the API.

import { api, session } from "./api.js";
import { $, fmtTime, h, plural, setText, shortId, showBanner, toast } from "./ui.js";

const EVERY_MS = 5000;

/** Opens the page with `show` (the app's view switch); returns what stops its polling. */
export function openSchedules(show) {
  show("schedules");
  document.title = "Schedules · cadre";
  let stopped = false;
  let timer = null;
  const tick = async () => {
    await load();
    if (!stopped) timer = setTimeout(tick, EVERY_MS);
  };
  tick();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}

/** Reads the schedules and draws the table. */
async function load() {
  try {
    const r = await api("GET", "/v1/schedules");
    render(r.schedules ?? []);
  } catch (e) {
    if (e.status !== 401) showBanner(`Could not read schedules: ${e.message}`);
  }
}

/** How a schedule ticks. */
function when(s) {
  return s.cron ? `${s.cron} (${s.time_zone})` : `every ${s.every_ms / 1000} s`;
}

/** A button that calls `verb` on schedule `s`, then reloads. */
function action(s, verb, label) {
  return h("button", {
    class: "btn btn-quiet",
    type: "button",
    dataset: { verb, id: s.id },
    onclick: async (ev) => {
      ev.target.disabled = true;
      try {
        const r = await api("POST", `/v1/schedules/${encodeURIComponent(s.id)}/${verb}`);
        toast(verb === "trigger" ? `Fired: task ${shortId(r.task.id)}` : `Schedule ${shortId(s.id)} ${verb}d`);
      } catch (e) {
        if (e.status !== 401) toast(`Refused: ${e.message}`, "error");
      }
      await load();
    },
  }, label);
}

/** Draws the table of `list`. */
function render(list) {
  const operator = session.can("submit");
  const rows = list.map((s) =>
    h(
      "tr",
      { dataset: { id: s.id } },
      h("td", { class: "mono", title: s.id }, s.name || shortId(s.id)),
      h("td", { class: "col-tenant" }, s.tenant),
      h("td", { class: "mono" }, when(s)),
      h("td", { class: "mono" }, s.task?.task_type ?? ""),
      h("td", { class: "col-time" }, s.paused ? "paused" : s.next_fire_at_ms.map(fmtTime).join(", ")),
      h("td", { class: "num" }, String(s.fires), s.skipped ? ` (${s.skipped} skipped)` : ""),
      h("td", { class: "muted" }, s.last_error ?? ""),
      h("td", {}, operator ? [s.paused ? action(s, "resume", "Resume") : action(s, "pause", "Pause"), action(s, "trigger", "Trigger")] : []),
    ),
  );
  $("#schedule-table tbody").replaceChildren(...rows);
  $("#schedules-empty").hidden = list.length > 0;
  setText($("#schedules-count"), plural(list.length, "schedule"));
}
