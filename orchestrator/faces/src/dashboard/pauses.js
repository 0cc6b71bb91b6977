// The overview's pauses (docs/HTTP_API.md, "Pause and resume"): what is paused, from the
// `pauses` of GET /v1/status, each with a Resume button (DELETE /v1/pauses?...), and a form to
// pause a supervisor, a pool, a task-type prefix or a tenant (POST /v1/pauses). Paused pools
// are also marked in the supervisor tree (app.js, from each pool's `paused`).

import { api } from "./api.js";
import { $, fmtTime, h, setText, toast } from "./ui.js";

/** What a pause names: `pool intelligence/writer`. */
export function pauseName(p) {
  const name = { supervisor: p.supervisor, pool: `${p.supervisor}/${p.worker_kind}`, task_type_prefix: p.prefix, tenant: p.tenant }[p.scope];
  return `${p.scope.replaceAll("_", " ")} ${name ?? ""}`;
}

/** The query naming a pause for DELETE /v1/pauses. */
function query(p) {
  const q = new URLSearchParams({ scope: p.scope });
  for (const k of ["supervisor", "worker_kind", "prefix", "tenant"]) if (p[k]) q.set(k, p[k]);
  return q.toString();
}

/** Draws the list of pauses (redrawn only when it changes, so polling does not disturb it). */
export function renderPauses(pauses, refresh) {
  const list = $("#pauses");
  if (!list) return;
  const key = JSON.stringify(pauses.map((p) => [p.scope, p.supervisor, p.worker_kind, p.prefix, p.tenant]));
  if (list.dataset.key === key) return;
  list.dataset.key = key;
  if (!pauses.length) {
    list.replaceChildren(h("p", { class: "muted small" }, "Nothing is paused."));
    return;
  }
  list.replaceChildren(
    h(
      "ul",
      { class: "pause-list" },
      pauses.map((p) =>
        h(
          "li",
          { class: "card pause-item", dataset: { pause: pauseName(p) } },
          h("span", { class: "badge sup-paused" }, "paused"),
          h("strong", { class: "mono" }, pauseName(p)),
          h("span", { class: "muted small" }, `by ${p.paused_by} at ${fmtTime(p.paused_at_ms)}${p.reason ? `: ${p.reason}` : ""}`),
          h("button", { class: "btn", type: "button", onclick: () => resume(p, refresh) }, "Resume"),
        ),
      ),
    ),
  );
}

async function resume(p, refresh) {
  try {
    await api("DELETE", `/v1/pauses?${query(p)}`);
    toast(`Resumed ${pauseName(p)}.`);
    refresh();
  } catch (e) {
    if (e.status !== 401) toast(`Resume failed: ${e.message}`, "error");
  }
}

/** Sets up the pause form; `refresh` redraws the overview after a change. */
export function setupPauses(refresh) {
  const form = $("#pause-form");
  if (!form) return;
  const scope = $("#pause-scope");
  const fields = { supervisor: ["supervisor"], pool: ["supervisor", "worker_kind"], task_type_prefix: ["prefix"], tenant: ["tenant"] };
  const show = () => {
    for (const el of form.querySelectorAll("[data-for]")) el.hidden = !fields[scope.value].includes(el.dataset.for);
  };
  scope.addEventListener("change", show);
  show();
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const body = { scope: scope.value, reason: $("#pause-reason").value.trim() };
    for (const k of fields[scope.value]) body[k] = form.querySelector(`[name="${k}"]`).value.trim();
    try {
      const r = await api("POST", "/v1/pauses", body);
      toast(r.created ? `Paused ${pauseName(r.pause)}.` : `${pauseName(r.pause)} was paused already.`);
      setText($("#pause-error"), "");
      refresh();
    } catch (e) {
      if (e.status !== 401) setText($("#pause-error"), `Refused: ${e.message}`);
    }
  });
}
