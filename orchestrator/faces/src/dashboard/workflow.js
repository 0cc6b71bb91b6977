// A workflow instance's steps on its task page (#/tasks/<id> of a `workflow.<name>.run` task):
// each step's state, how long it took or has been going, its sub-tasks, output and error, and
// what it waits for; an approval it waits for can be decided here, Approve or Reject with an
// optional comment, which POSTs /v1/tasks/<id>/signals/<signal> {decision, comment}.
//
// The task page keeps it live: it calls update() with the instance each time it reads it
// again, which it does after every event of the instance (the engine reports step changes as
// progress events, "steps: a SUCCEEDED, gate WAITING for approval gate"). Steps are redrawn
// only when they changed, and an approval form is kept while its step waits, so a comment
// being typed survives updates.

import { ROLES, TERMINAL, api, session } from "./api.js";
import { fmtDuration, fmtTime, h, pretty, setText, shortId, stateBadge, toast } from "./ui.js";

/** Whether task `t` is a workflow instance. */
export function isWorkflow(t) {
  const type = t?.task_type;
  return typeof type === "string" && type.startsWith("workflow.") && type.endsWith(".run");
}

/** Step states that are over. */
const STEP_DONE = new Set(["SUCCEEDED", "FAILED", "SKIPPED"]);

const asArray = (v) => (Array.isArray(v) ? v : []);
const asText = (v) => (v === undefined || v === null ? "" : typeof v === "string" ? v : pretty(v));
const asMs = (v) => (typeof v === "number" && Number.isFinite(v) && v > 0 ? v : 0);

/**
 * The steps panel of instance `taskId`. `refresh()` asks the task page to read the instance
 * again (after a decision). Returns {el, update(task), stop()}.
 */
export function workflowSteps(taskId, refresh) {
  const summary = h("span", { class: "muted small steps-summary" });
  const list = h("ol", { class: "steps", id: "steps" });
  const empty = h("p", { class: "muted" }, "No step has been reported yet.");
  const el = h(
    "section",
    { class: "card steps-card", id: "workflow-steps" },
    h("div", { class: "steps-head" }, h("h2", {}, "Steps"), summary),
    list,
    empty,
  );
  /** Step id -> {li, key}. */
  const items = new Map();
  /** "step/signal" -> the approval form, kept while its step waits. */
  const forms = new Map();

  // Steps under way show how long they have been going, counted every second.
  const timer = setInterval(() => {
    for (const span of list.querySelectorAll(".step-dur[data-since]")) {
      setText(span, `for ${fmtDuration(Date.now() - Number(span.dataset.since))}`);
    }
  }, 1000);

  function update(task) {
    const steps = asArray(task?.steps).filter((s) => s && typeof s === "object");
    const over = TERMINAL.has(task?.state);
    const done = steps.filter((s) => STEP_DONE.has(s.state)).length;
    const waiting = steps.filter((s) => s.state === "WAITING").length;
    setText(summary, steps.length ? `${done} of ${steps.length} done${waiting ? ` · ${waiting} waiting` : ""}` : "");
    empty.hidden = steps.length > 0;

    const seen = new Set();
    let prev = null;
    steps.forEach((s, i) => {
      const id = typeof s.id === "string" && s.id ? s.id : `#${i + 1}`;
      if (seen.has(id)) return;
      seen.add(id);
      const key = JSON.stringify([s, over, task?.state]);
      let item = items.get(id);
      if (!item || item.key !== key) {
        const li = stepItem(id, s, over, task?.state);
        if (item) item.li.replaceWith(li);
        item = { li, key };
        items.set(id, item);
      }
      const want = prev ? prev.nextSibling : list.firstChild;
      if (want !== item.li) list.insertBefore(item.li, want);
      prev = item.li;
    });
    for (const [id, item] of items) {
      if (!seen.has(id)) {
        item.li.remove();
        items.delete(id);
      }
    }
    for (const [k, form] of forms) if (!form.isConnected) forms.delete(k);
  }

  function stepItem(id, s, over, instanceState) {
    const state = typeof s.state === "string" && s.state ? s.state : "?";
    const started = asMs(s.started_at_ms);
    const ended = asMs(s.ended_at_ms);
    const li = h(
      "li",
      { class: "step", dataset: { step: id, state } },
      h(
        "div",
        { class: "step-head" },
        h("span", { class: "step-state" }, stateBadge(state)),
        h("span", { class: "step-id mono" }, id),
        s.kind ? h("span", { class: "tier step-kind" }, String(s.kind)) : null,
        duration(state, started, ended, over),
      ),
    );
    const tasks = asArray(s.task_ids).filter((t) => typeof t === "string" && t);
    if (tasks.length) {
      li.append(
        h(
          "div",
          { class: "step-tasks small" },
          h("span", { class: "muted" }, tasks.length === 1 ? "Task " : "Tasks "),
          tasks.map((t) => h("a", { href: `#/tasks/${encodeURIComponent(t)}`, class: "mono", title: t }, shortId(t))),
        ),
      );
    }
    if (state === "WAITING") {
      for (const w of asArray(s.waiting)) {
        if (w && typeof w === "object") li.append(waitBlock(id, w, over, instanceState));
      }
    }
    const error = asText(s.error);
    if (error) li.append(h("pre", { class: "json step-error" }, error));
    if (s.output !== undefined && s.output !== null) {
      li.append(h("details", { class: "step-output", open: true }, h("summary", {}, "Output"), h("pre", { class: "json" }, pretty(s.output))));
    }
    return li;
  }

  /** What a waiting step waits for: an approval (with its form), a signal or a timer. */
  function waitBlock(step, w, over, instanceState) {
    const signal = typeof w.signal === "string" ? w.signal : "";
    const due = asMs(w.due_at_ms);
    const dueText = due ? `${due > Date.now() ? "times out" : "timed out"} at ${fmtTime(due)}` : "";
    if (w.kind === "approval") {
      const prompt = typeof w.prompt === "string" && w.prompt ? w.prompt : `Approve step ${step}?`;
      const block = h(
        "div",
        { class: "approval", dataset: { signal } },
        h("p", { class: "approval-prompt" }, prompt),
      );
      const meta = [w.role ? `Needs the ${w.role} role or above.` : "", dueText ? `It ${dueText}.` : ""].filter(Boolean).join(" ");
      if (meta) block.append(h("p", { class: "muted small" }, meta));
      if (over) {
        block.append(h("p", { class: "muted small" }, `The instance is ${String(instanceState).toLowerCase()}: it takes no decision now.`));
      } else if (signal) {
        const k = `${step}/${signal}`;
        const form = forms.get(k) ?? approvalForm(step, signal, w.role);
        forms.set(k, form);
        block.append(form);
      }
      return block;
    }
    if (w.kind === "timer") {
      return h("div", { class: "wait muted small" }, due ? `Sleeps until ${fmtTime(due)}.` : "Sleeps.");
    }
    return h(
      "div",
      { class: "wait small" },
      "Waits for the signal ",
      h("code", {}, signal || "?"),
      dueText ? `; it ${dueText}.` : ".",
    );
  }

  /** Approve / Reject with a comment, for approval `signal` of `step`. */
  function approvalForm(step, signal, role) {
    const comment = h("input", {
      class: "approval-comment",
      name: "comment",
      type: "text",
      maxlength: "2000",
      autocomplete: "off",
      placeholder: "Comment (optional)",
      "aria-label": `Comment on the decision of step ${step}`,
    });
    // Plain buttons, not submit: Enter in the comment must not decide anything.
    const approve = h("button", { class: "btn btn-primary btn-small", type: "button", dataset: { decision: "approve" } }, "Approve");
    const reject = h("button", { class: "btn btn-danger btn-small", type: "button", dataset: { decision: "reject" } }, "Reject");
    const note = h("p", { class: "muted small approval-note" });
    const error = h("p", { class: "form-error approval-error", role: "alert" });
    const form = h("form", { class: "approval-form", dataset: { step, signal } }, comment, h("div", { class: "approval-buttons" }, approve, reject), note, error);

    const mine = session.who?.role ?? "observer";
    const why = !session.can("signal")
      ? `Deciding needs the operator role; you are ${mine}.`
      : role && ROLES.includes(role) && ROLES.indexOf(mine) < ROLES.indexOf(role)
        ? `Only a ${role} or above may decide this; you are ${mine}.`
        : "";
    if (why) {
      for (const el of [comment, approve, reject]) el.disabled = true;
      setText(note, why);
    }

    form.addEventListener("submit", (ev) => ev.preventDefault());
    const decide = async (decision) => {
      const body = { decision };
      const text = comment.value.trim();
      if (text) body.comment = text;
      for (const el of [comment, approve, reject]) el.disabled = true;
      setText(error, "");
      setText(note, decision === "approve" ? "Approving…" : "Rejecting…");
      try {
        await api("POST", `/v1/tasks/${encodeURIComponent(taskId)}/signals/${encodeURIComponent(signal)}`, body);
        form.dataset.sent = decision;
        setText(note, `${decision === "approve" ? "Approved" : "Rejected"}; waiting for the workflow to take it…`);
        toast(`Step ${step} ${decision === "approve" ? "approved" : "rejected"}.`);
        refresh();
      } catch (e) {
        setText(note, "");
        if (e.status === 401) return; // signed out; the login form says why
        setText(error, refusal(e, decision));
        // Refused for who we are or for how things stand: trying again will not help until the
        // page shows what changed; anything else (the node unreachable) may be retried.
        const final = e.status === 403 || e.status === 404 || e.status === 409;
        for (const el of [comment, approve, reject]) el.disabled = final;
        if (final) refresh();
      }
    };
    approve.addEventListener("click", () => decide("approve"));
    reject.addEventListener("click", () => decide("reject"));
    return form;
  }

  return {
    el,
    update,
    stop() {
      clearInterval(timer);
    },
  };
}

/** The step's duration: how long it took, or how long it has been going. */
function duration(state, started, ended, over) {
  if (started && ended) {
    return h("span", { class: "step-dur muted small", title: `${fmtTime(started)} – ${fmtTime(ended)}` }, fmtDuration(Math.max(0, ended - started)));
  }
  if (started && !over && !STEP_DONE.has(state)) {
    return h("span", { class: "step-dur muted small", title: `since ${fmtTime(started)}`, dataset: { since: String(started) } }, `for ${fmtDuration(Math.max(0, Date.now() - started))}`);
  }
  if (ended) return h("span", { class: "step-dur muted small" }, `ended ${fmtTime(ended)}`);
  return null;
}

/** What to tell the person whose decision the node refused. */
function refusal(e, decision) {
  const what = decision === "approve" ? "approval" : "rejection";
  switch (e.status) {
    case 403:
      return `Not allowed: ${e.message}`;
    case 404:
      return `The instance is gone: ${e.message}`;
    case 409:
      return `Not taken: ${e.message}`;
    case 0:
      return `Not sent: ${e.message}`;
    default:
      return `The ${what} was refused (${e.status} ${e.code}): ${e.message}`;
  }
}
