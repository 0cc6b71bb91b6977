// The schedules page (#/schedules): the caller's schedules (a commander's: every tenant's)
// from GET /v1/schedules with their next fire times, refreshed every 5 s; a form to create one
// (POST /v1/schedules: a task type, or a workflow's `workflow.<name>.run`, on a cron
// expression in a time zone or on a fixed interval, with its params and policies); and, for
// operators, Pause / Resume / Trigger buttons (POST /v1/schedules/<id>/pause|resume|trigger)
// and a Delete button that asks for a second click (DELETE /v1/schedules/<id>;
// docs/SCHEDULES.md). The node decides who may create: its refusal shows next to the form,
// which keeps what was typed.

import { api, session } from "./api.js";
import { $, fmtTime, h, plural, setText, shortId, showBanner, toast } from "./ui.js";

const EVERY_MS = 5000;

/** The schedule whose Delete was clicked once (its row asks to confirm), or null. */
let confirming = null;
/** The number of the latest read: an older answer arriving late is not drawn. */
let reads = 0;

/** Opens the page with `show` (the app's view switch); returns what stops its polling. */
export function openSchedules(show) {
  show("schedules");
  document.title = "Schedules · cadre";
  setupForm();
  let stopped = false;
  let timer = null;
  const tick = async () => {
    await load();
    if (!stopped) timer = setTimeout(tick, EVERY_MS);
  };
  tick();
  return () => {
    stopped = true;
    confirming = null;
    clearTimeout(timer);
  };
}

/** Reads the schedules and draws the table. */
async function load() {
  const n = ++reads;
  try {
    const r = await api("GET", "/v1/schedules");
    if (n === reads) render(r.schedules ?? []);
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

/** The row's Delete button, or, once it was clicked, the confirm and keep buttons. */
function deleteButtons(s) {
  const label = s.name || shortId(s.id);
  if (confirming !== s.id) {
    return [h("button", {
      class: "btn btn-quiet",
      type: "button",
      dataset: { verb: "delete", id: s.id },
      title: `Delete schedule ${label}`,
      onclick: () => {
        confirming = s.id;
        load();
      },
    }, "Delete")];
  }
  const keep = h("button", {
    class: "btn btn-quiet",
    type: "button",
    dataset: { verb: "keep", id: s.id },
    onclick: () => {
      confirming = null;
      load();
    },
  }, "Keep");
  const yes = h("button", {
    class: "btn btn-danger",
    type: "button",
    dataset: { verb: "confirm-delete", id: s.id },
    onclick: async (ev) => {
      ev.target.disabled = true;
      await remove(s, label);
    },
  }, `Delete ${label}`);
  return [yes, keep];
}

/** Deletes schedule `s` (shown as `label`), then reloads. */
async function remove(s, label) {
  try {
    await api("DELETE", `/v1/schedules/${encodeURIComponent(s.id)}`);
    toast(`Schedule ${label} deleted`);
  } catch (e) {
    if (e.status === 404) toast(`Schedule ${label} was gone already`);
    else if (e.status !== 401) toast(`Refused: ${e.message}`, "error");
  }
  confirming = null;
  await load();
}

/** Draws the table of `list` (only when something changed, so polling does not disturb it). */
function render(list) {
  const operator = session.can("submit");
  const tbody = $("#schedule-table tbody");
  const key = JSON.stringify([operator, confirming, list]);
  if (tbody.dataset.key === key) return;
  tbody.dataset.key = key;
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
      h(
        "td",
        {},
        operator
          ? [s.paused ? action(s, "resume", "Resume") : action(s, "pause", "Pause"), action(s, "trigger", "Trigger"), ...deleteButtons(s)]
          : [],
      ),
    ),
  );
  tbody.replaceChildren(...rows);
  $("#schedules-empty").hidden = list.length > 0;
  setText($("#schedules-count"), plural(list.length, "schedule"));
}

// ---------------------------------------------------------------------------------------------
// The create form

/** A labelled form field: `<div class="field"><label>…</label>control</div>`. */
function field(label, control, props = {}) {
  return h("div", { class: "field", ...props }, h("label", { for: control.id }, label), control);
}

/** A select of `[value, text]` options. */
function select(id, options) {
  return h("select", { id, name: id.replace("schedule-", "") }, options.map(([value, text]) => h("option", { value }, text)));
}

/** A text input with `props`. */
function input(id, props = {}) {
  return h("input", { id, name: id.replace("schedule-", ""), spellcheck: "false", autocomplete: "off", ...props });
}

/** The browser's IANA time zone ("UTC" when it has none). */
function localZone() {
  return Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";
}

/** The IANA zones the browser knows, for the zone field's suggestions. */
function zoneOptions() {
  const zones = typeof Intl.supportedValuesOf === "function" ? Intl.supportedValuesOf("timeZone") : [];
  return h("datalist", { id: "schedule-zones" }, ["UTC", ...zones].map((z) => h("option", { value: z })));
}

/** The create panel (built once; its fields keep their values across visits). */
function buildForm() {
  const zone = input("schedule-zone", { list: "schedule-zones", placeholder: "UTC", value: localZone() });
  const form = h(
    "form",
    { id: "schedule-form", class: "submit-form", novalidate: true },
    field("Name (optional)", input("schedule-name", { maxlength: "256", placeholder: "nightly report" })),
    field("Task type", input("schedule-type", { list: "task-types", required: true, placeholder: "system.debug.echo", title: "A task type, or workflow.<name>.run to start a workflow" })),
    field("Timing", select("schedule-timing", [["cron", "Cron expression"], ["every", "Fixed interval"]])),
    field("Cron (s m h dom mon dow)", input("schedule-cron", { placeholder: "0 */5 * * * *" }), { dataset: { timing: "cron" } }),
    field("Time zone", zone, { dataset: { timing: "cron" } }),
    field("Every (seconds)", input("schedule-every", { type: "number", min: "1", step: "any", placeholder: "60" }), { dataset: { timing: "every" } }),
    field("Missed ticks", select("schedule-missed", [["skip", "skip"], ["run_once", "run once"]])),
    field("While the previous run is unfinished", select("schedule-overlap", [["allow", "allow another"], ["skip", "skip the tick"], ["cancel_previous", "cancel the previous"]])),
    field("Priority (0-9)", input("schedule-priority", { type: "number", min: "0", max: "9", step: "1", placeholder: "0" })),
    field("Attempt timeout (ms)", input("schedule-timeout", { type: "number", min: "0", step: "1", placeholder: "0" })),
    field("Start", select("schedule-start", [["active", "active"], ["paused", "paused"]])),
    field("Tenant (commanders)", input("schedule-tenant", { placeholder: "your own" }), { dataset: { for: "tenant" } }),
    h("div", { class: "field field-wide" }, h("label", { for: "schedule-params" }, "Params (JSON)"), h("textarea", { id: "schedule-params", name: "params", rows: "3", spellcheck: "false" }, "{}")),
    h("div", { class: "field field-actions" }, h("button", { id: "schedule-create", class: "btn btn-primary", type: "submit" }, "Create")),
    h("p", { id: "schedule-error", class: "form-error field-wide", role: "alert" }),
    zoneOptions(),
  );
  return h(
    "details",
    { id: "schedule-panel", class: "card submit-panel" },
    h("summary", {}, "Create a schedule", h("span", { id: "schedule-role-note", class: "muted small", hidden: true })),
    form,
  );
}

/** Shows the fields of the chosen timing. */
function showTiming() {
  const timing = $("#schedule-timing").value;
  for (const el of $("#schedule-form").querySelectorAll("[data-timing]")) el.hidden = el.dataset.timing !== timing;
}

/** Puts the panel on the page once and fits it to the session's role and subject. */
function setupForm() {
  let panel = $("#schedule-panel");
  if (!panel) {
    panel = buildForm();
    $("#view-schedules .table-wrap").before(panel);
    $("#schedule-timing").addEventListener("change", showTiming);
    $("#schedule-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      create();
    });
  }
  const who = session.who ?? {};
  // Another sign-in does not inherit the previous one's draft.
  if (panel.dataset.subject !== `${who.subject}/${who.tenant}`) {
    panel.dataset.subject = `${who.subject}/${who.tenant}`;
    $("#schedule-form").reset();
    setText($("#schedule-error"), "");
    panel.open = session.can("submit");
  }
  showTiming();
  $('#schedule-form [data-for="tenant"]').hidden = who.role !== "commander";
  const note = $("#schedule-role-note");
  note.hidden = session.can("submit");
  setText(note, ` (needs the operator role: as ${who.role ?? "signed out"} the node will refuse)`);
}

/** The body of POST /v1/schedules from the form, or why there is none. */
function request() {
  const value = (id) => $(`#${id}`).value.trim();
  let params;
  try {
    params = JSON.parse(value("schedule-params") || "{}");
  } catch (e) {
    return `Params are not JSON: ${e.message}`;
  }
  const task = { task_type: value("schedule-type"), params };
  if (value("schedule-priority")) task.priority = Number(value("schedule-priority"));
  if (value("schedule-timeout")) task.timeout_ms = Number(value("schedule-timeout"));
  const body = { name: value("schedule-name"), task, missed: value("schedule-missed"), overlap: value("schedule-overlap"), paused: value("schedule-start") === "paused" };
  if (value("schedule-timing") === "cron") {
    body.cron = value("schedule-cron");
    body.time_zone = value("schedule-zone");
  } else {
    const secs = Number(value("schedule-every"));
    if (!value("schedule-every") || !Number.isFinite(secs) || secs <= 0) return "Give the interval in seconds (at least 1).";
    body.every_ms = Math.round(secs * 1000);
  }
  if (session.who?.role === "commander" && value("schedule-tenant")) body.tenant = value("schedule-tenant");
  return body;
}

/** Sends the form; the node's refusal stays next to it with everything typed. */
async function create() {
  const error = $("#schedule-error");
  const body = request();
  if (typeof body === "string") {
    setText(error, body);
    return;
  }
  const button = $("#schedule-create");
  button.disabled = true;
  try {
    const r = await api("POST", "/v1/schedules", body);
    setText(error, "");
    $("#schedule-form").reset();
    showTiming();
    toast(`Schedule ${r.schedule.name || shortId(r.schedule.id)} created`);
    await load();
  } catch (e) {
    if (e.status !== 401) setText(error, `Refused (${e.status}): ${e.message}`);
  } finally {
    button.disabled = false;
  }
}
