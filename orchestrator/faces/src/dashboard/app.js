// The cadre dashboard: plain ES module, no build step, no dependencies.
//
// Everything it shows comes from the node's HTTP API (docs/HTTP_API.md) with the credential
// pasted into the login form, kept in sessionStorage:
// - the supervisor tree: GET /v1/status, polled every 2 s while the overview is open;
// - the task table: seeded by GET /v1/tasks, then kept live by a WebSocket on /v1/events;
// - a task page (#/tasks/<id>): GET /v1/tasks/<id>, its stored events, then a one-task
//   subscription until its terminal event;
// - usage and cost: GET /v1/usage; charts (overview, usage, a task's model calls) in charts.js
//   and llm_calls.js;
// - schedules: GET /v1/schedules, with pause, resume and trigger (schedules.js);
// - a workflow instance's page also shows its steps and approvals (workflow.js);
// - actions: POST /v1/tasks (submit), /v1/tasks/<id>/cancel, /v1/tasks/<id>/signals/<name>,
//   /v1/supervisors/<s>/pools/<k>/scale; bulk cancel and replay (bulk.js); pause and resume
//   (pauses.js).
//
// api.js holds the session, the API calls and the event stream; ui.js the DOM helpers.

import { EventStream, STATES, TERMINAL, TOKEN_KEY, api, session } from "./api.js";
import { $, fmtDuration, fmtInt, fmtTime, fmtUsd, h, plural, pretty, setLive, setText, shortId, showBanner, stateBadge, toast, todayUtc } from "./ui.js";
import { isWorkflow, workflowSteps } from "./workflow.js";
import { setupBulk } from "./bulk.js";
import { renderPauses, setupPauses } from "./pauses.js";
import { openSchedules } from "./schedules.js";
import { loadUsageChart, openOverviewCharts } from "./charts.js";
import { llmCallsPanel } from "./llm_calls.js";

const STATUS_EVERY_MS = 2000;
const USAGE_EVERY_MS = 10000;
const TABLE_PAGE = 100;
const TABLE_MAX_ROWS = 500;
/** The built-in task types (README), offered in the submit form beside those seen live. */
const KNOWN_TYPES = [
  "system.debug.sleep",
  "system.debug.echo",
  "system.debug.fail",
  "system.debug.panic",
  "intelligence.text.summarize",
];
/** Example params for the built-in types, filled in when the params box is untouched. */
const EXAMPLE_PARAMS = {
  "system.debug.sleep": { ms: 3000 },
  "system.debug.echo": { hello: "world" },
  "system.debug.fail": { message: "on purpose", retryable: false },
  "system.debug.panic": { until_attempt: 2 },
  "intelligence.text.summarize": { text: "One. Two three. Four five six.", sentences: 1 },
};

// ---------------------------------------------------------------------------------------------
// Task store: the table's rows, merged from the list and the event stream by `seq`

const tasks = {
  /** id -> task (full from the API, or partial from events). */
  byId: new Map(),
  filter: { states: new Set(), prefix: "" },
  stream: null,
  nextPage: "",
  seenTypes: new Set(KNOWN_TYPES),
  dirty: false,
  /** Bumped by every restart, so answers for an older filter are dropped. */
  gen: 0,

  /** Upserts a task from the API when it is newer than what we hold. */
  putTask(t) {
    const old = this.byId.get(t.id);
    if (old && (old.seq ?? 0) > (t.seq ?? 0)) {
      this.byId.set(t.id, { ...t, ...pick(old, ["state", "attempt", "seq", "updated_at_ms", "progress", "message"]) });
    } else {
      this.byId.set(t.id, { ...old, ...t, progress: TERMINAL.has(t.state) ? undefined : old?.progress });
    }
    this.noteType(t.task_type);
    this.changed();
  },

  /** Applies one event to the row of its task. */
  putEvent(e) {
    const old = this.byId.get(e.task_id);
    if (old && (old.seq ?? 0) > e.seq) return;
    const t = old ? { ...old } : {
      id: e.task_id,
      task_type: e.task_type,
      tenant: e.tenant,
      parent_id: e.parent_id,
      created_at_ms: e.seq <= 1 ? e.at_ms : undefined,
    };
    t.state = e.state;
    t.attempt = e.attempt;
    t.seq = e.seq;
    t.updated_at_ms = e.at_ms;
    t.message = e.message;
    t.progress = TERMINAL.has(e.state) ? undefined : e.is_progress || e.progress > 0 ? e.progress : t.progress;
    if (e.result !== undefined && e.result !== null) t.result = e.result;
    this.byId.set(e.task_id, t);
    this.noteType(e.task_type);
    this.changed();
  },

  noteType(type) {
    if (type && !this.seenTypes.has(type)) {
      this.seenTypes.add(type);
      renderTypeList();
    }
  },

  matches(t) {
    if (this.filter.prefix && !(t.task_type ?? "").startsWith(this.filter.prefix)) return false;
    if (this.filter.states.size && !this.filter.states.has(t.state)) return false;
    return true;
  },

  /** Rows to show, newest first (task ids are UUIDv7, so they sort by creation time). */
  rows() {
    const rows = [...this.byId.values()].filter((t) => this.matches(t));
    rows.sort((a, b) => (a.id < b.id ? 1 : a.id > b.id ? -1 : 0));
    return rows.slice(0, TABLE_MAX_ROWS);
  },

  changed() {
    if (this.dirty) return;
    this.dirty = true;
    requestAnimationFrame(() => {
      this.dirty = false;
      renderTaskTable();
    });
  },

  listQuery(pageToken) {
    const q = new URLSearchParams({ page_size: String(TABLE_PAGE) });
    if (this.filter.states.size) q.set("state", [...this.filter.states].join(","));
    if (this.filter.prefix) q.set("type_prefix", this.filter.prefix);
    if (pageToken) q.set("page_token", pageToken);
    return `/v1/tasks?${q}`;
  },

  /**
   * (Re)starts the live table: subscribe first, and once the server confirms, seed from the
   * list, so no change between the two is missed (rows merge by `seq` whatever the order).
   */
  restart() {
    const gen = ++this.gen;
    this.stream?.stop();
    this.byId.clear();
    this.nextPage = "";
    this.changed();
    const filter = {};
    if (this.filter.prefix) filter.type_prefix = this.filter.prefix;
    let seeded = false;
    const seed = () => {
      if (seeded || gen !== this.gen || !session.token) return;
      seeded = true;
      this.loadPage("");
    };
    this.stream = new EventStream(filter, {
      event: (e) => this.putEvent(e),
      subscribed: seed,
      status: setLive,
      failed: (err) => {
        showBanner(`Live updates are off: ${err.message}`);
        seed();
      },
    }).start();
    // The list is worth showing even if the socket is slow to come up.
    setTimeout(seed, 3000);
  },

  async loadPage(token) {
    const gen = this.gen;
    try {
      const r = await api("GET", this.listQuery(token));
      if (gen !== this.gen) return;
      for (const t of r.tasks ?? []) this.putTask(t);
      this.nextPage = r.next_page_token || "";
      $("#tasks-more").hidden = !this.nextPage;
      $("#task-table").dataset.loaded = "true";
      this.changed();
    } catch (e) {
      if (e.status !== 401) showBanner(`Could not list tasks: ${e.message}`);
    }
  },
};

function pick(o, keys) {
  const out = {};
  for (const k of keys) if (o[k] !== undefined) out[k] = o[k];
  return out;
}

/** Table rows by task id, reused across renders. */
const rowEls = new Map();

function renderTaskTable() {
  const tbody = $("#task-table tbody");
  const rows = tasks.rows();
  const keep = new Set(rows.map((t) => t.id));
  for (const [id, tr] of rowEls) {
    if (!keep.has(id)) {
      tr.remove();
      rowEls.delete(id);
    }
  }
  let prev = null;
  for (const t of rows) {
    let tr = rowEls.get(t.id);
    if (!tr) {
      tr = taskRow(t);
      rowEls.set(t.id, tr);
    }
    updateTaskRow(tr, t);
    const want = prev ? prev.nextSibling : tbody.firstChild;
    if (want !== tr) tbody.insertBefore(tr, want);
    prev = tr;
  }
  $("#tasks-empty").hidden = rows.length > 0 || $("#task-table").dataset.loaded !== "true";
}

function taskRow(t) {
  const link = h("a", { href: `#/tasks/${encodeURIComponent(t.id)}`, class: "cell-type-link" });
  const tr = h(
    "tr",
    { dataset: { id: t.id }, class: "clickable" },
    h("td", { class: "cell-state" }),
    h("td", { class: "cell-type mono" }, link),
    h("td", { class: "col-id cell-id mono muted", title: t.id }, shortId(t.id)),
    h("td", { class: "col-tenant cell-tenant" }),
    h("td", { class: "col-attempt cell-attempt num" }),
    h("td", { class: "col-progress cell-progress" }, h("progress", { max: "1", value: "0" })),
    h("td", { class: "col-time cell-time" }),
  );
  tr.addEventListener("click", (ev) => {
    if (ev.target.closest("a")) return;
    location.hash = `#/tasks/${encodeURIComponent(t.id)}`;
  });
  return tr;
}

function updateTaskRow(tr, t) {
  tr.dataset.state = t.state ?? "";
  const stateCell = tr.querySelector(".cell-state");
  if (stateCell.dataset.state !== t.state) {
    stateCell.dataset.state = t.state;
    stateCell.replaceChildren(stateBadge(t.state));
  }
  setText(tr.querySelector(".cell-type-link"), t.task_type ?? "?");
  setText(tr.querySelector(".cell-tenant"), t.tenant ?? "");
  setText(tr.querySelector(".cell-attempt"), t.attempt ?? "");
  const prog = tr.querySelector("progress");
  const p = t.state === "SUCCEEDED" ? 1 : t.progress;
  prog.hidden = p === undefined || p === null;
  if (!prog.hidden) prog.value = p;
  setText(tr.querySelector(".cell-time"), fmtTime(t.updated_at_ms ?? t.created_at_ms));
}

function renderTypeList() {
  $("#task-types").replaceChildren(...[...tasks.seenTypes].sort().map((t) => h("option", { value: t })));
}

// ---------------------------------------------------------------------------------------------
// Views and routing

const views = ["login", "overview", "tasks", "task", "schedules", "usage"];
/** What the current view runs (timers, sockets); stopped on leaving it. */
let viewCleanup = null;

function show(name) {
  for (const v of views) $(`#view-${v}`).hidden = v !== name;
  for (const a of document.querySelectorAll("#nav a")) {
    if (a.dataset.view === (name === "task" ? "tasks" : name)) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  document.body.dataset.view = name;
}

async function route() {
  viewCleanup?.();
  viewCleanup = null;
  if (!session.token || !session.who) {
    show("login");
    document.title = "Sign in · cadre";
    $("#login-token").focus();
    return;
  }
  const hash = location.hash.replace(/^#/, "") || "/";
  const m = hash.match(/^\/tasks\/([^/]+)$/);
  if (m) {
    viewCleanup = openTask(decodeURIComponent(m[1]));
  } else if (hash === "/tasks") {
    show("tasks");
    document.title = "Tasks · cadre";
  } else if (hash === "/usage") {
    viewCleanup = openUsage();
  } else if (hash === "/schedules") {
    viewCleanup = openSchedules(show);
  } else {
    viewCleanup = openOverview();
  }
  window.scrollTo(0, 0);
}

// ----- Overview: the supervisor tree

function openOverview() {
  show("overview");
  document.title = "Overview · cadre";
  const stopCharts = openOverviewCharts();
  if (!session.can("status")) {
    $("#stats").replaceChildren();
    resetTree(h("p", { class: "card empty" }, `The supervisor tree needs the supervisor role; you are ${session.who.role}. `, h("a", { href: "#/tasks" }, "See your tasks.")));
    return stopCharts;
  }
  let timer = null;
  let stopped = false;
  const tick = async () => {
    try {
      const st = await api("GET", "/v1/status");
      if (stopped) return;
      renderStatus(st);
      showBanner(null);
    } catch (e) {
      if (stopped) return;
      if (e.status === 403) {
        resetTree(h("p", { class: "card empty" }, e.message));
        return;
      }
      if (e.status !== 401) showBanner(`Could not read the supervisor tree: ${e.message}`);
    }
    if (!stopped) timer = setTimeout(tick, STATUS_EVERY_MS);
  };
  tick();
  return () => {
    stopped = true;
    clearTimeout(timer);
    stopCharts();
  };
}

function stat(label, value, hint) {
  return h("div", { class: "stat card" }, h("div", { class: "stat-label" }, label), h("div", { class: "stat-value" }, value), hint ? h("div", { class: "stat-hint muted" }, hint) : null);
}

/** Pool rows by "supervisor/kind", reused so an open scale editor survives polling. */
const poolEls = new Map();

/** Empties the tree so the next status draws it anew. */
function resetTree(...content) {
  const tree = $("#tree");
  delete tree.dataset.key;
  poolEls.clear();
  tree.replaceChildren(...content);
}

function renderStatus(st) {
  const sups = st.supervisors ?? [];
  let live = 0;
  let target = 0;
  let busy = 0;
  let queued = 0;
  for (const s of sups) {
    for (const p of s.pools ?? []) {
      live += p.live_workers ?? 0;
      target += p.target_size ?? 0;
      busy += p.busy_workers ?? 0;
      queued += p.queue_depth ?? 0;
    }
  }
  $("#stats").replaceChildren(
    stat("Pending tasks", fmtInt(st.pending_tasks)),
    stat("Workers busy", `${fmtInt(busy)} / ${fmtInt(live)}`, `${fmtInt(target)} wanted`),
    stat("Queued", fmtInt(queued)),
    stat("Node", st.node_id ?? "", st.version ? `version ${st.version}` : ""),
  );
  setText($("#status-updated"), `updated ${fmtTime(Date.now())}`);
  renderPauses(st.pauses ?? [], () => route());

  const tree = $("#tree");
  const key = sups.map((s) => `${s.name}:${(s.pools ?? []).map((p) => p.worker_kind).join(",")}`).join("|");
  if (tree.dataset.key !== key) {
    tree.dataset.key = key;
    poolEls.clear();
    tree.replaceChildren(
      h("div", { class: "tree-root" }, h("span", { class: "tier" }, "tier 0"), h("strong", {}, "orchestrator"), h("span", { class: "muted mono" }, st.node_id ?? "")),
      h("ul", { class: "tree-children" }, sups.map((s) => h("li", {}, supervisorCard(s)))),
    );
  }
  for (const s of sups) {
    const card = tree.querySelector(`[data-supervisor="${CSS.escape(s.name)}"]`);
    if (!card) continue;
    const badge = card.querySelector(".sup-state");
    if (badge.dataset.state !== s.state) {
      badge.dataset.state = s.state;
      badge.replaceChildren(h("span", { class: `badge sup-${String(s.state).toLowerCase()}` }, s.state));
    }
    const restarts = card.querySelector(".sup-restarts");
    setText(restarts, `${plural(s.restarts, "restart")} · ${fmtInt(s.recent_restarts)} of ${fmtInt(s.max_restarts)} allowed recently`);
    restarts.title = "restarts since start; restarts in the current window, and how many escalate";
    const where = card.querySelector(".sup-where");
    setText(where, s.address ? `on ${`${s.node_id || ""} ${s.address}`.trim()}` : "");
    where.hidden = !s.address;
    for (const p of s.pools ?? []) updatePoolRow(poolEls.get(`${s.name}/${p.worker_kind}`), p);
  }
}

function supervisorCard(s) {
  return h(
    "article",
    { class: "card supervisor", dataset: { supervisor: s.name } },
    h(
      "header",
      { class: "sup-head" },
      h("span", { class: "tier" }, "tier 1"),
      h("h3", {}, s.name),
      h("span", { class: "sup-state" }),
      h("span", { class: "sup-restarts muted small" }),
      h("span", { class: "sup-where muted small mono" }),
    ),
    h(
      "div",
      { class: "pools-wrap" },
      h(
      "table",
      { class: "pools" },
      h(
        "thead",
        {},
        h(
          "tr",
          {},
          h("th", { scope: "col" }, "Worker kind"),
          h("th", { scope: "col" }, "Workers"),
          h("th", { scope: "col", class: "num" }, "Busy"),
          h("th", { scope: "col", class: "num" }, "Queue"),
          h("th", { scope: "col", class: "num" }, "Restarts"),
          session.can("scale") ? h("th", { scope: "col" }, h("span", { class: "sr-only" }, "Scale")) : null,
        ),
      ),
      h("tbody", {}, (s.pools ?? []).map((p) => poolRow(s.name, p))),
      ),
    ),
  );
}

function poolRow(sup, p) {
  const tr = h(
    "tr",
    { dataset: { pool: `${sup}/${p.worker_kind}` } },
    h("th", { scope: "row", class: "mono pool-kind" }, p.worker_kind),
    h(
      "td",
      { class: "workers", "data-label": "Workers" },
      h("span", { class: "meter", title: "busy / live workers" }, h("span", { class: "meter-fill" })),
      h("span", { class: "pool-size num" }),
    ),
    h("td", { class: "num pool-busy", "data-label": "Busy" }),
    h("td", { class: "num pool-queue", "data-label": "Queue" }),
    h("td", { class: "num pool-restarts", "data-label": "Restarts" }),
    session.can("scale") ? h("td", { class: "scale-cell" }, scaleControl(sup, p)) : null,
  );
  poolEls.set(`${sup}/${p.worker_kind}`, tr);
  return tr;
}

function updatePoolRow(tr, p) {
  if (!tr) return;
  tr.dataset.target = p.target_size;
  tr.dataset.live = p.live_workers;
  const live = p.live_workers ?? 0;
  const target = p.target_size ?? 0;
  setText(tr.querySelector(".pool-size"), live === target ? `${live}` : `${live} → ${target}`);
  tr.querySelector(".pool-size").title = `${live} live, ${target} wanted`;
  const fill = tr.querySelector(".meter-fill");
  const frac = live > 0 ? Math.min(1, (p.busy_workers ?? 0) / live) : 0;
  fill.style.width = `${Math.round(frac * 100)}%`;
  setText(tr.querySelector(".pool-busy"), fmtInt(p.busy_workers));
  const q = tr.querySelector(".pool-queue");
  setText(q, fmtInt(p.queue_depth));
  q.classList.toggle("hot", (p.queue_depth ?? 0) > 0);
  setText(tr.querySelector(".pool-restarts"), fmtInt(p.restarts));
  tr.classList.toggle("paused", !!p.paused);
  tr.querySelector(".pool-kind").title = p.paused ? "paused: queued tasks wait" : "";
  const input = tr.querySelector(".scale-input");
  if (input && document.activeElement !== input && !input.dataset.edited) input.value = target;
}

function scaleControl(sup, p) {
  const input = h("input", {
    class: "scale-input",
    type: "number",
    min: "0",
    step: "1",
    value: String(p.target_size ?? 0),
    "aria-label": `Pool size of ${sup}/${p.worker_kind}`,
    oninput: () => {
      input.dataset.edited = "1";
    },
  });
  const button = h("button", { class: "btn btn-small", type: "submit" }, "Scale");
  const form = h("form", { class: "scale-form" }, input, button);
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const replicas = Number(input.value);
    if (!Number.isInteger(replicas) || replicas < 0) {
      toast("The pool size must be a whole number, 0 or more.", "error");
      return;
    }
    button.disabled = true;
    try {
      const r = await api("POST", `/v1/supervisors/${encodeURIComponent(sup)}/pools/${encodeURIComponent(p.worker_kind)}/scale`, { replicas });
      delete input.dataset.edited;
      input.blur();
      if (r?.pool) updatePoolRow(poolEls.get(`${sup}/${p.worker_kind}`), r.pool);
      toast(`${sup}/${p.worker_kind} scaled to ${replicas}.`);
    } catch (e) {
      if (e.status !== 401) toast(`Scaling ${sup}/${p.worker_kind} failed: ${e.message}`, "error");
    } finally {
      button.disabled = false;
    }
  });
  return form;
}

// ----- Tasks: filters and submit form

function setupTasksView() {
  const chips = $("#filter-form .chips");
  for (const s of STATES) {
    const box = h("input", { type: "checkbox", value: s, class: "sr-only" });
    box.addEventListener("change", () => {
      if (box.checked) tasks.filter.states.add(s);
      else tasks.filter.states.delete(s);
      tasks.restart();
    });
    chips.append(h("label", { class: `chip state-${s.toLowerCase()}` }, box, h("span", {}, s.replace("_", " ").toLowerCase())));
  }
  let debounce = null;
  $("#filter-prefix").addEventListener("input", (ev) => {
    clearTimeout(debounce);
    debounce = setTimeout(() => {
      const v = ev.target.value.trim();
      if (v === tasks.filter.prefix) return;
      tasks.filter.prefix = v;
      tasks.restart();
    }, 300);
  });
  $("#filter-form").addEventListener("submit", (ev) => ev.preventDefault());
  $("#tasks-more").addEventListener("click", () => tasks.loadPage(tasks.nextPage));

  const type = $("#submit-type");
  const params = $("#submit-params");
  // Offer an example as soon as a known type is chosen, unless the params were typed by hand.
  type.addEventListener("input", () => {
    const example = EXAMPLE_PARAMS[type.value.trim()];
    if (example && !params.dataset.edited) {
      params.value = JSON.stringify(example);
      checkParams();
    }
  });
  params.addEventListener("input", () => {
    params.dataset.edited = "1";
    checkParams();
  });
  $("#submit-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const parsed = checkParams();
    if (parsed === undefined) return;
    const body = { task_type: type.value.trim(), params: parsed };
    const prio = $("#submit-priority").value.trim();
    if (prio) body.priority = Number(prio);
    const btn = $("#submit-button");
    btn.disabled = true;
    try {
      const r = await api("POST", "/v1/tasks", body);
      tasks.putTask(r.task);
      toast(h("span", {}, r.created === false ? "Already submitted: " : "Submitted ", h("a", { href: `#/tasks/${r.task.id}`, class: "mono" }, shortId(r.task.id))));
    } catch (e) {
      if (e.status !== 401) toast(`Submit failed: ${e.message}`, "error");
    } finally {
      btn.disabled = false;
    }
  });
}

/** The parsed params, or undefined (with the error shown) when they are not a JSON object. */
function checkParams() {
  const params = $("#submit-params");
  const err = $("#submit-params-error");
  const text = params.value.trim() || "{}";
  try {
    const v = JSON.parse(text);
    if (v === null || typeof v !== "object" || Array.isArray(v)) throw new Error("params must be a JSON object");
    setText(err, "");
    params.removeAttribute("aria-invalid");
    return v;
  } catch (e) {
    setText(err, e.message);
    params.setAttribute("aria-invalid", "true");
    return undefined;
  }
}

// ----- Task page

function openTask(id) {
  show("task");
  document.title = `Task ${shortId(id)} · cadre`;
  const view = $("#view-task");
  view.replaceChildren(h("p", { class: "muted" }, "Loading…"));
  /** flow: a workflow instance's steps panel (workflow.js). */
  const page = { task: null, events: [], stream: null, stopped: false, flow: null, calls: llmCallsPanel(id) };

  const load = async () => {
    try {
      const r = await api("GET", `/v1/tasks/${encodeURIComponent(id)}`);
      if (page.stopped) return;
      page.task = r.task;
      tasks.putTask(r.task);
      if (isWorkflow(r.task)) page.flow = workflowSteps(id, () => readSteps());
      let after = 0;
      for (;;) {
        const q = new URLSearchParams({ limit: "1000" });
        if (after) q.set("after", String(after));
        const er = await api("GET", `/v1/tasks/${encodeURIComponent(id)}/events?${q}`);
        const batch = er.events ?? [];
        page.events.push(...batch);
        if (batch.length < 1000) break;
        after = batch[batch.length - 1].cursor;
      }
      if (page.stopped) return;
      renderTask(view, page);
      page.calls.load();
      if (!TERMINAL.has(page.task.state)) follow();
    } catch (e) {
      if (page.stopped || e.status === 401) return;
      view.replaceChildren(
        h("a", { href: "#/tasks", class: "back" }, "← Tasks"),
        h("p", { class: "card empty" }, e.status === 404 ? `No task ${id}.` : `Could not load the task: ${e.message}`),
      );
    }
  };

  const follow = () => {
    // Resume right after the stored events (cursor 0 replays this task's events from the
    // start), so nothing between the two reads is missed.
    const cursor = page.events.length ? page.events[page.events.length - 1].cursor : 0;
    page.stream = new EventStream({ task_id: id, cursor }, {
      event: (e) => {
        if (page.events.some((x) => x.cursor === e.cursor)) return;
        page.events.push(e);
        page.task = { ...page.task, state: e.state, attempt: e.attempt, seq: e.seq, updated_at_ms: e.at_ms, progress: e.progress };
        if (e.result !== undefined && e.result !== null) page.task.result = e.result;
        // A progress event only moves the bar and adds a line; a state change redraws.
        if (!(e.is_progress && appendProgress(view, page, e))) renderTask(view, page);
        if (TERMINAL.has(e.state)) refresh();
        else if (page.flow) readSteps();
      },
      end: refresh,
    }).start();
  };

  // After the terminal event: the stored task has the result, error and usage.
  const refresh = async () => {
    try {
      const r = await api("GET", `/v1/tasks/${encodeURIComponent(id)}`);
      if (page.stopped) return;
      page.task = r.task;
      tasks.putTask(r.task);
      renderTask(view, page);
      page.calls.load();
    } catch {
      /* the live view stays as it is */
    }
  };

  // A workflow instance's steps, read again after each of its events (the engine reports step
  // changes as progress events) and after a decision; reads that overlap are merged into one.
  let reading = false;
  let again = false;
  const readSteps = async () => {
    if (reading) {
      again = true;
      return;
    }
    reading = true;
    try {
      do {
        again = false;
        const r = await api("GET", `/v1/tasks/${encodeURIComponent(id)}`);
        if (page.stopped || !page.task) return;
        page.task = { ...page.task, steps: r.task?.steps };
        page.flow?.update(page.task);
      } while (again);
    } catch {
      /* the steps stay as they are until the next event */
    } finally {
      reading = false;
    }
  };

  load();
  return () => {
    page.stopped = true;
    page.stream?.stop();
    page.flow?.stop();
    page.calls.stop();
  };
}

function renderTask(view, page) {
  const t = page.task;
  const done = TERMINAL.has(t.state);
  const ended = done ? t.updated_at_ms : Date.now();
  const progress = done ? null : page.events.filter((e) => e.is_progress).at(-1)?.progress ?? t.progress;
  const facts = [
    ["Tenant", t.tenant],
    ["Runs on", t.supervisor ? `${t.supervisor}/${t.worker_kind ?? ""}` : ""],
    ["Attempt", t.attempt],
    ["Priority", t.priority],
    ["Timeout", t.timeout_ms ? fmtDuration(t.timeout_ms) : ""],
    ["Created", fmtTime(t.created_at_ms)],
    ["Updated", fmtTime(t.updated_at_ms)],
    [done ? "Took" : "Running for", t.created_at_ms ? fmtDuration(ended - t.created_at_ms) : ""],
    ["Security", t.security_level && t.security_level !== "standard" ? t.security_level : ""],
    ["Parent", t.parent_id ? h("a", { href: `#/tasks/${t.parent_id}`, class: "mono" }, shortId(t.parent_id)) : ""],
  ].filter(([, v]) => v !== "" && v !== undefined && v !== null);

  const cancel =
    !done && session.can("cancel")
      ? h("button", { class: "btn btn-danger", type: "button", id: "task-cancel" }, "Cancel task")
      : null;
  cancel?.addEventListener("click", async () => {
    cancel.disabled = true;
    try {
      await api("POST", `/v1/tasks/${encodeURIComponent(t.id)}/cancel`, { reason: "cancelled from the dashboard" });
      toast("Cancel requested.");
    } catch (e) {
      cancel.disabled = false;
      if (e.status !== 401) toast(`Cancel failed: ${e.message}`, "error");
    }
  });

  const sections = [
    h("a", { href: "#/tasks", class: "back" }, "← Tasks"),
    h(
      "div",
      { class: "task-head" },
      h("div", {}, h("h1", { class: "mono task-type" }, t.task_type), h("div", { class: "mono muted small task-id" }, t.id)),
      h("div", { class: "task-head-right" }, h("span", { id: "task-state", dataset: { state: t.state } }, stateBadge(t.state)), cancel),
    ),
    progress !== null && progress !== undefined ? h("progress", { class: "task-progress", max: "1", value: String(progress) }) : null,
    h("dl", { class: "facts card" }, facts.map(([k, v]) => h("div", {}, h("dt", {}, k), h("dd", {}, v)))),
    page.flow?.el,
  ];
  page.flow?.update(t);

  const grid = h("div", { class: "task-grid" });
  grid.append(h("section", { class: "card" }, h("h2", {}, "Params"), h("pre", { class: "json" }, pretty(t.params ?? {}))));
  if (t.error) grid.append(h("section", { class: "card card-error" }, h("h2", {}, "Error"), h("pre", { class: "json" }, typeof t.error === "string" ? t.error : pretty(t.error))));
  if (t.result !== undefined && t.result !== null) grid.append(h("section", { class: "card", id: "task-result" }, h("h2", {}, "Result"), h("pre", { class: "json" }, pretty(t.result))));
  if (t.result_signature) grid.append(h("section", { class: "card" }, h("h2", {}, "Result signature"), h("pre", { class: "json" }, typeof t.result_signature === "string" ? t.result_signature : pretty(t.result_signature))));
  if (t.usage?.length) {
    grid.append(
      h(
        "section",
        { class: "card" },
        h("h2", {}, "Usage"),
        h(
          "table",
          { class: "usage" },
          h("thead", {}, h("tr", {}, h("th", {}, "Model"), h("th", { class: "num" }, "In"), h("th", { class: "num" }, "Out"), h("th", { class: "num" }, "Cost"))),
          h("tbody", {}, t.usage.map((u) => h("tr", {}, h("td", { class: "mono" }, u.model), h("td", { class: "num" }, fmtInt(u.tokens_in)), h("td", { class: "num" }, fmtInt(u.tokens_out)), h("td", { class: "num" }, fmtUsd(u.cost_usd))))),
        ),
      ),
    );
  }
  if (t.children?.length) {
    grid.append(h("section", { class: "card" }, h("h2", {}, "Sub-tasks"), h("ul", { class: "plain" }, t.children.map((c) => h("li", {}, h("a", { href: `#/tasks/${c}`, class: "mono" }, c))))));
  }
  sections.push(grid, page.calls?.el);

  const start = timelineStart(page);
  sections.push(
    h(
      "section",
      { class: "card" },
      h("h2", {}, "Timeline"),
      page.events.length
        ? h("ol", { class: "timeline", id: "timeline" }, page.events.map((e) => timelineItem(e, start)))
        : h("p", { class: "muted" }, "No events yet."),
    ),
  );
  replaceAround(view, sections.filter(Boolean), page.flow?.el);
}

/**
 * Makes `nodes` the children of `view` without detaching `keep` (one of them) when it is
 * already there, so a field being typed in it keeps its focus through a redraw.
 */
function replaceAround(view, nodes, keep) {
  const i = keep ? nodes.indexOf(keep) : -1;
  if (i < 0 || keep.parentNode !== view) {
    view.replaceChildren(...nodes);
    return;
  }
  for (const c of [...view.childNodes]) if (c !== keep) c.remove();
  keep.before(...nodes.slice(0, i));
  keep.after(...nodes.slice(i + 1));
}

const timelineStart = (page) => page.events[0]?.at_ms ?? page.task.created_at_ms;

function timelineItem(e, start) {
  return h(
    "li",
    { class: e.is_progress ? "ev ev-progress" : "ev", dataset: { state: e.state, cursor: e.cursor } },
    h("span", { class: "ev-time mono", title: new Date(e.at_ms).toISOString() }, `+${fmtDuration(e.at_ms - start)}`),
    e.is_progress ? h("span", { class: "ev-pct" }, `${Math.round((e.progress ?? 0) * 100)}%`) : stateBadge(e.state),
    h("span", { class: "ev-msg" }, e.message || (e.is_progress ? "progress" : e.attempt ? `attempt ${e.attempt}` : "")),
  );
}

/** Shows a progress event without redrawing the page; false when a redraw is needed. */
function appendProgress(view, page, e) {
  const list = view.querySelector("#timeline");
  const bar = view.querySelector(".task-progress");
  if (!list || !bar) return false;
  bar.value = e.progress ?? 0;
  list.append(timelineItem(e, timelineStart(page)));
  return true;
}

// ----- Usage

function openUsage() {
  show("usage");
  document.title = "Usage · cadre";
  const day = $("#usage-day");
  if (!day.value) day.value = todayUtc();
  $("#usage-tenant-field").hidden = session.who.role !== "commander";
  let stopped = false;
  let timer = null;
  const tick = async () => {
    await Promise.all([loadUsage(), loadUsageChart()]);
    if (!stopped) timer = setTimeout(tick, USAGE_EVERY_MS);
  };
  tick();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}

async function loadUsage() {
  const q = new URLSearchParams({ day: $("#usage-day").value || todayUtc() });
  const tenant = $("#usage-tenant").value.trim();
  if (tenant && session.who.role === "commander") q.set("tenant", tenant);
  try {
    const r = await api("GET", `/v1/usage?${q}`);
    renderUsage(r.usage ?? []);
  } catch (e) {
    if (e.status !== 401) showBanner(`Could not read usage: ${e.message}`);
  }
}

function renderUsage(rows) {
  const byTenant = new Map();
  for (const u of rows) {
    const t = byTenant.get(u.tenant) ?? { tokens_in: 0, tokens_out: 0, cost_usd: 0, rows: [] };
    t.tokens_in += u.tokens_in ?? 0;
    t.tokens_out += u.tokens_out ?? 0;
    t.cost_usd += u.cost_usd ?? 0;
    t.rows.push(u);
    byTenant.set(u.tenant, t);
  }
  const total = [...byTenant.values()].reduce((a, t) => ({ tokens_in: a.tokens_in + t.tokens_in, tokens_out: a.tokens_out + t.tokens_out, cost_usd: a.cost_usd + t.cost_usd }), { tokens_in: 0, tokens_out: 0, cost_usd: 0 });
  $("#usage-stats").replaceChildren(
    stat("Cost", fmtUsd(total.cost_usd)),
    stat("Tokens in", fmtInt(total.tokens_in)),
    stat("Tokens out", fmtInt(total.tokens_out)),
    stat("Tenants", fmtInt(byTenant.size)),
  );
  const body = [];
  for (const [tenant, t] of [...byTenant].sort((a, b) => b[1].cost_usd - a[1].cost_usd)) {
    for (const u of t.rows.sort((a, b) => (b.cost_usd ?? 0) - (a.cost_usd ?? 0))) {
      body.push(h("tr", {}, h("td", {}, tenant), h("td", { class: "mono" }, u.model), h("td", { class: "num" }, fmtInt(u.tokens_in)), h("td", { class: "num" }, fmtInt(u.tokens_out)), h("td", { class: "num" }, fmtUsd(u.cost_usd))));
    }
    if (t.rows.length > 1) {
      body.push(h("tr", { class: "subtotal" }, h("td", {}, tenant), h("td", {}, "all models"), h("td", { class: "num" }, fmtInt(t.tokens_in)), h("td", { class: "num" }, fmtInt(t.tokens_out)), h("td", { class: "num" }, fmtUsd(t.cost_usd))));
    }
  }
  $("#usage-table tbody").replaceChildren(...body);
  $("#usage-empty").hidden = rows.length > 0;
}

// ---------------------------------------------------------------------------------------------
// Sign in and out

async function signIn(token) {
  const who = await api("GET", "/v1/whoami", undefined, token);
  session.token = token;
  session.who = who;
  sessionStorage.setItem(TOKEN_KEY, token);
  startSession();
}

function startSession() {
  const w = session.who;
  $("#who").replaceChildren(h("span", { class: "who-name" }, w.subject || "?"), h("span", { class: `badge role role-${w.role}` }, w.role), h("span", { class: "muted" }, w.tenant));
  $("#who").title = `${w.subject} · ${w.role} · tenant ${w.tenant}`;
  $("#nav").hidden = false;
  $("#session").hidden = false;
  $("#submit-panel").hidden = !session.can("submit");
  $("#bulk-panel").hidden = !session.can("cancel");
  $('#nav a[data-view="overview"]').hidden = !session.can("status");
  document.body.dataset.role = w.role;
  // The tree is drawn for a role (scale controls or not): start it afresh for this one.
  resetTree();
  tasks.restart();
  if (!session.can("status") && (location.hash === "" || location.hash === "#/")) location.hash = "#/tasks";
  else route();
}

function signOut(message) {
  const wasIn = !!session.token;
  session.token = null;
  session.who = null;
  sessionStorage.removeItem(TOKEN_KEY);
  tasks.stream?.stop();
  tasks.stream = null;
  tasks.gen++;
  tasks.byId.clear();
  tasks.changed();
  setLive("off");
  $("#nav").hidden = true;
  $("#session").hidden = true;
  showBanner(null);
  setText($("#login-error"), message ?? "");
  if (wasIn || message) route();
}

function setupLogin() {
  $("#login-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const input = $("#login-token");
    const token = input.value.trim();
    if (!token) return;
    const btn = ev.target.querySelector("button");
    btn.disabled = true;
    setText($("#login-error"), "");
    try {
      await signIn(token);
      input.value = "";
    } catch (e) {
      setText($("#login-error"), e.status === 401 ? "That token or key was refused." : e.message);
    } finally {
      btn.disabled = false;
    }
  });
  $("#logout").addEventListener("click", () => signOut());
}

async function main() {
  session.refused = signOut;
  setupLogin();
  setupTasksView();
  setupBulk(tasks.filter, () => tasks.restart());
  setupPauses(() => route());
  renderTypeList();
  window.addEventListener("hashchange", route);
  if (session.token) {
    try {
      session.who = await api("GET", "/v1/whoami");
      startSession();
      return;
    } catch (e) {
      if (e.status !== 401) {
        session.token = null;
        setText($("#login-error"), `Could not check the saved credential: ${e.message}`);
      }
    }
  }
  route();
}

main();
