// The tasks page's bulk form: cancel the unfinished, or replay the finished, tasks the list's
// filter (states and type prefix) and an error text select, through POST /v1/bulk/cancel and
// /v1/bulk/replay (docs/HTTP_API.md, "Bulk operations"). A dry run always counts first; the
// real call is one more click, on exactly that filter (changing anything asks for a new count).

import { TERMINAL, api } from "./api.js";
import { $, plural, setText, shortId, toast } from "./ui.js";

/** Sets up the form; `filter` is the task list's live filter ({states: Set, prefix}). */
export function setupBulk(filter, onDone) {
  const form = $("#bulk-form");
  const confirm = $("#bulk-confirm");
  const result = $("#bulk-result");
  let counted = null;
  const reset = () => {
    counted = null;
    confirm.hidden = true;
  };
  form.addEventListener("input", reset);
  $("#filter-form").addEventListener("change", reset);
  $("#filter-prefix").addEventListener("input", reset);
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    reset();
    const action = $("#bulk-action").value;
    const body = request(filter, action);
    if (typeof body === "string") {
      setText(result, body);
      return;
    }
    try {
      const r = await api("POST", `/v1/bulk/${action}`, { ...body, dry_run: true });
      const more = r.more ? ` (more match: the first ${r.matched} are taken)` : "";
      setText(result, `${plural(r.matched, "task")} match${more}.`);
      result.dataset.matched = String(r.matched);
      if (r.matched > 0) {
        counted = body;
        setText(confirm, `${action === "cancel" ? "Cancel" : "Replay"} ${plural(r.matched, "task")}`);
        confirm.hidden = false;
      }
    } catch (e) {
      if (e.status !== 401) setText(result, `Refused: ${e.message}`);
    }
  });
  confirm.addEventListener("click", async () => {
    if (!counted) return;
    const action = $("#bulk-action").value;
    const body = counted;
    reset();
    confirm.disabled = true;
    try {
      const r = await api("POST", `/v1/bulk/${action}`, body);
      const verb = action === "cancel" ? "cancelled" : "replayed";
      const failed = r.failed ? `, ${r.failed} failed (${r.failures.map((f) => `${shortId(f.task_id)}: ${f.message}`).join("; ")})` : "";
      setText(result, `${plural(r.acted, "task")} ${verb}${failed}.`);
      result.dataset.acted = String(r.acted);
      toast(`${plural(r.acted, "task")} ${verb}`, r.failed ? "error" : "ok");
      onDone();
    } catch (e) {
      if (e.status !== 401) setText(result, `Refused: ${e.message}`);
    } finally {
      confirm.disabled = false;
    }
  });
}

/** The body of a bulk call on the list's filter, or why there is none. */
function request(filter, action) {
  const applies = (s) => (action === "cancel" ? !TERMINAL.has(s) : TERMINAL.has(s));
  const chosen = [...filter.states];
  const states = chosen.filter(applies);
  if (chosen.length && !states.length) {
    return action === "cancel" ? "None of the chosen states is unfinished: nothing to cancel." : "None of the chosen states is finished: nothing to replay.";
  }
  // The box itself: the list's copy of it lags while the user types.
  const body = { states, type_prefix: $("#filter-prefix").value.trim() };
  const text = $("#bulk-error").value.trim();
  if (text) body.error_contains = text;
  if (!states.length && !body.type_prefix && !text) {
    return "Choose a state, a type prefix or an error text first: a bulk action needs a filter.";
  }
  return body;
}
