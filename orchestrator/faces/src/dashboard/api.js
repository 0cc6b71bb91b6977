// The dashboard's session and its calls to the node: the JSON API (docs/HTTP_API.md) with the
// credential kept in sessionStorage, and resumable subscriptions to /v1/events.

export const TOKEN_KEY = "cadre.token";
export const STATES = ["QUEUED", "RUNNING", "RETRYING", "SUCCEEDED", "FAILED", "CANCELLED", "TIMED_OUT"];
export const TERMINAL = new Set(["SUCCEEDED", "FAILED", "CANCELLED", "TIMED_OUT"]);
/** Roles are rings (orchestrator/core/src/auth/roles.rs): each may do what the inner ones may. */
export const ROLES = ["observer", "operator", "supervisor", "commander"];
/** The innermost role each action needs (Action::min_role). */
export const NEEDS = { submit: "operator", cancel: "operator", signal: "operator", status: "supervisor", scale: "supervisor" };
const REFUSED = "Your credential was refused (expired or revoked). Sign in again.";

// ---------------------------------------------------------------------------------------------
// Session and API

export const session = {
  token: sessionStorage.getItem(TOKEN_KEY),
  /** {subject, role, tenant} from GET /v1/whoami. */
  who: null,
  /** Called with a message when the node refuses the credential (the app signs out). */
  refused: (message) => {},
  can(action) {
    const role = this.who?.role ?? "observer";
    return ROLES.indexOf(role) >= ROLES.indexOf(NEEDS[action]);
  },
};

/** An error answer of the API: {error: {code, message}} with its HTTP status. */
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** Calls the JSON API with the session's credential; throws ApiError on an error answer. */
export async function api(method, path, body, token = session.token) {
  const headers = { Accept: "application/json", Authorization: `Bearer ${token}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let resp;
  try {
    resp = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store",
    });
  } catch (e) {
    throw new ApiError(0, "unavailable", "The node cannot be reached.");
  }
  const text = await resp.text();
  let json = null;
  try {
    json = text ? JSON.parse(text) : null;
  } catch {
    json = null;
  }
  if (!resp.ok) {
    const err = json?.error;
    const e = new ApiError(resp.status, err?.code ?? `http_${resp.status}`, err?.message ?? (text || resp.statusText));
    if (resp.status === 401 && token === session.token) session.refused(REFUSED);
    throw e;
  }
  return json;
}

export function wsUrl() {
  return `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/v1/events`;
}

/**
 * A resumable subscription to /v1/events. It reconnects with backoff after a drop or a
 * `lagged` message, resuming after the last cursor it saw, so no event is lost or repeated.
 */
export class EventStream {
  /**
   * @param filter fields of the subscribe message (task_id, type_prefix, states, cursor)
   * @param on {event(e), subscribed(cursor), end(), status(state)}
   */
  constructor(filter, on) {
    this.filter = { ...filter };
    this.cursor = filter.cursor;
    this.on = on;
    this.ws = null;
    this.stopped = false;
    this.retries = 0;
    this.timer = null;
  }

  start() {
    this.stopped = false;
    this.connect();
    return this;
  }

  connect() {
    if (this.stopped) return;
    this.on.status?.("connecting");
    const subprotocolOk = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(session.token ?? "");
    const ws = subprotocolOk
      ? new WebSocket(wsUrl(), ["cadre.v1", `bearer.${session.token}`])
      : new WebSocket(wsUrl(), ["cadre.v1"]);
    this.ws = ws;
    ws.onopen = () => {
      if (this.stopped) {
        ws.close(1000);
        return;
      }
      const msg = { type: "subscribe", ...this.filter };
      delete msg.cursor;
      if (this.cursor !== undefined && this.cursor !== null) msg.cursor = this.cursor;
      if (!subprotocolOk) msg.token = session.token;
      ws.send(JSON.stringify(msg));
    };
    ws.onmessage = (m) => {
      let msg;
      try {
        msg = JSON.parse(m.data);
      } catch {
        return;
      }
      switch (msg.type) {
        case "subscribed":
          this.retries = 0;
          if (msg.cursor !== undefined) this.cursor = Math.max(this.cursor ?? 0, msg.cursor);
          this.on.status?.("live");
          this.on.subscribed?.(msg.cursor);
          break;
        case "event":
          if (this.cursor === undefined || this.cursor === null || msg.cursor > this.cursor) {
            this.cursor = msg.cursor;
            this.on.event?.(msg);
          }
          break;
        case "end":
          this.stopped = true;
          this.on.status?.("ended");
          this.on.end?.();
          break;
        case "lagged":
          if (msg.cursor !== undefined) this.cursor = msg.cursor;
          break;
        case "error":
          this.lastError = msg;
          if (msg.code === "unauthenticated") session.refused(REFUSED);
          break;
      }
    };
    ws.onclose = () => {
      if (this.ws !== ws) return;
      this.ws = null;
      if (this.stopped) return;
      if (this.lastError && ["permission_denied", "invalid_argument", "unauthenticated"].includes(this.lastError.code)) {
        this.stopped = true;
        this.on.status?.("off");
        this.on.failed?.(this.lastError);
        return;
      }
      this.on.status?.("reconnecting");
      const delay = Math.min(10000, 250 * 2 ** this.retries++);
      this.timer = setTimeout(() => this.connect(), delay);
    };
  }

  /** Ends the subscription (a socket still connecting is closed once it opens). */
  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    const ws = this.ws;
    this.ws = null;
    if (ws && ws.readyState === WebSocket.OPEN) ws.close(1000);
  }
}
