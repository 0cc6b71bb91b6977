/**
 * `CadreClient`: the JSON API (docs/HTTP_API.md) over Node's built-in `fetch`, event streams
 * over the WebSocket, and submission over a shared {@link SocketSession}.
 */

import { CadreError, UnavailableError } from "./errors.js";
import { SocketSession, type SessionOptions } from "./session.js";
import { httpError, type WebSocketChoice } from "./socket.js";
import { isTerminal } from "./types.js";
import type {
  Approval,
  Identity,
  Json,
  ListQuery,
  NodeStatus,
  PoolStatus,
  RegisteredWorkflow,
  Signalled,
  Submitted,
  Task,
  TaskEvent,
  TaskPage,
  TaskSpec,
  TaskType,
  UsageReport,
  WatchFilter,
  Workflow,
} from "./types.js";
import { Watch, type SocketTarget, type WatchOptions } from "./watch.js";

/** How to reach a node. */
export interface ClientOptions {
  /** The node's HTTP address, e.g. `http://127.0.0.1:8080` (default: `CADRE_URL`, then that). */
  baseUrl?: string;
  /** A token or API key (default: the `CADRE_TOKEN` environment variable). */
  token?: string;
  /** Which WebSocket to use (default `"auto"`: the global one where it exists, else `ws`). */
  webSocket?: WebSocketChoice;
  /** A `fetch` to use instead of the global one (tests, proxies). */
  fetch?: typeof fetch;
}

/** Options every call takes. */
export interface CallOptions {
  /** Aborts the request. */
  signal?: AbortSignal;
}

/** Options of {@link CadreClient.submitAndWait}. */
export interface WaitOptions extends CallOptions {
  /**
   * `"socket"` (default): over the shared socket session, which survives a dropped socket.
   * `"http"`: one `POST /v1/tasks?wait=true`, bounded by `wait_ms`.
   */
  via?: "socket" | "http";
  /** With `via: "http"`: bound the wait (the node answers DEADLINE_EXCEEDED after it). */
  wait_ms?: number;
}

type Query = Record<string, string | number | string[] | undefined>;

/** A client of one cadre node. Cheap to make; `close()` ends its shared socket session. */
export class CadreClient {
  /** The node's HTTP address without a trailing slash. */
  readonly baseUrl: string;
  private readonly token: string | undefined;
  private readonly webSocket: WebSocketChoice;
  private readonly fetchFn: typeof fetch;
  private shared: SocketSession | undefined;

  constructor(options: ClientOptions = {}) {
    const base = options.baseUrl ?? process.env["CADRE_URL"] ?? "http://127.0.0.1:8080";
    this.baseUrl = base.replace(/\/+$/, "");
    const token = options.token ?? process.env["CADRE_TOKEN"];
    this.token = token ? token.trim() : undefined;
    this.webSocket = options.webSocket ?? "auto";
    this.fetchFn = options.fetch ?? globalThis.fetch;
  }

  /** Where event sockets go (`ws://.../v1/events`), with the credential. */
  get socketTarget(): SocketTarget {
    return { url: `${this.baseUrl.replace(/^http/, "ws")}/v1/events`, token: this.token, webSocket: this.webSocket };
  }

  /** One JSON API call; throws the typed {@link CadreError} of a refusal. */
  async request<T>(method: string, path: string, options: { query?: Query; body?: unknown; signal?: AbortSignal } = {}): Promise<T> {
    const url = new URL(this.baseUrl + path);
    for (const [k, v] of Object.entries(options.query ?? {})) {
      if (v === undefined) continue;
      for (const one of Array.isArray(v) ? v : [v]) url.searchParams.append(k, String(one));
    }
    const headers: Record<string, string> = { accept: "application/json" };
    if (this.token) headers["authorization"] = `Bearer ${this.token}`;
    let body: string | undefined;
    if (options.body !== undefined) {
      headers["content-type"] = "application/json";
      body = JSON.stringify(options.body);
    }
    let res: Response;
    try {
      res = await this.fetchFn(url, { method, headers, body, signal: options.signal ?? null });
    } catch (e) {
      if (options.signal?.aborted) throw e;
      throw new UnavailableError("unavailable", `${method} ${path}: ${(e as Error).message}`, 0, { cause: e });
    }
    const text = await res.text();
    if (!res.ok) throw httpError(res.status, text, res.headers.get("retry-after"));
    try {
      return JSON.parse(text) as T;
    } catch (e) {
      throw new CadreError("internal", `${method} ${path}: answer is not JSON`, res.status, { cause: e });
    }
  }

  /** Who the credential is: subject, role and tenant. */
  whoami(options: CallOptions = {}): Promise<Identity> {
    return this.request("GET", "/v1/whoami", options);
  }

  /** Submits a task; `created` is false when an idempotent repeat answered an existing one. */
  submit(spec: TaskSpec, options: CallOptions = {}): Promise<Submitted> {
    return this.request("POST", "/v1/tasks", { body: spec, ...options });
  }

  /**
   * Submits a task and resolves with it once it is terminal (SUCCEEDED, FAILED, CANCELLED or
   * TIMED_OUT; a failed task resolves, it does not throw). By default over the client's shared
   * {@link SocketSession}, so many waits share one socket and survive it dropping.
   */
  async submitAndWait(spec: TaskSpec, options: WaitOptions = {}): Promise<Task> {
    if (options.via === "http") {
      const query = { wait: "true", wait_ms: options.wait_ms };
      const r = await this.request<{ task: Task }>("POST", "/v1/tasks", { query, body: spec, ...options });
      return r.task;
    }
    const submission = await this.session().submit(spec, { signal: options.signal, events: false });
    return submission.result;
  }

  /** The client's shared socket session (opened on first use, closed by `close()`). */
  session(): SocketSession {
    if (!this.shared || this.shared.closed) this.shared = new SocketSession(this);
    return this.shared;
  }

  /** A new socket session of its own (close it when done). */
  openSession(options: SessionOptions = {}): SocketSession {
    return new SocketSession(this, options);
  }

  /** One task (with its steps, for a workflow instance). */
  async get(id: string, options: CallOptions = {}): Promise<Task> {
    const r = await this.request<{ task: Task }>("GET", `/v1/tasks/${encodeURIComponent(id)}`, options);
    return r.task;
  }

  /** One page of tasks, newest first. */
  list(query: ListQuery = {}, options: CallOptions = {}): Promise<TaskPage> {
    return this.request("GET", "/v1/tasks", { query: { ...query }, ...options });
  }

  /** Every task matching `query`, page after page, newest first. */
  async *listAll(query: Omit<ListQuery, "page_token"> = {}, options: CallOptions = {}): AsyncGenerator<Task, void, undefined> {
    let page_token = "";
    do {
      const page = await this.list({ ...query, page_token: page_token || undefined }, options);
      yield* page.tasks;
      page_token = page.next_page_token;
    } while (page_token);
  }

  /** Cancels a task; answers it as it is now. */
  async cancel(id: string, reason?: string, options: CallOptions = {}): Promise<Task> {
    const body = reason === undefined ? {} : { reason };
    const r = await this.request<{ task: Task }>("POST", `/v1/tasks/${encodeURIComponent(id)}/cancel`, { body, ...options });
    return r.task;
  }

  /** Stored events of a task, oldest first: `after` a cursor, at most `limit` (1-1000, 200). */
  async events(id: string, query: { after?: number; limit?: number } = {}, options: CallOptions = {}): Promise<TaskEvent[]> {
    const r = await this.request<{ events: TaskEvent[] }>("GET", `/v1/tasks/${encodeURIComponent(id)}/events`, {
      query: { ...query },
      ...options,
    });
    return r.events;
  }

  /** Registered task types (workflows too) in name order, with their JSON Schemas. */
  async taskTypes(type_prefix?: string, options: CallOptions = {}): Promise<TaskType[]> {
    const r = await this.request<{ types: TaskType[] }>("GET", "/v1/types", { query: { type_prefix }, ...options });
    return r.types;
  }

  /** The node and its supervisor tree. */
  status(options: CallOptions = {}): Promise<NodeStatus> {
    return this.request("GET", "/v1/status", options);
  }

  /** Resizes a worker pool (supervisor role); answers the pool. */
  async scale(supervisor: string, workerKind: string, replicas: number, options: CallOptions = {}): Promise<PoolStatus> {
    const path = `/v1/supervisors/${encodeURIComponent(supervisor)}/pools/${encodeURIComponent(workerKind)}/scale`;
    const r = await this.request<{ pool: PoolStatus }>("POST", path, { body: { replicas }, ...options });
    return r.pool;
  }

  /** A day's model usage (`day` `YYYY-MM-DD`, default today UTC; `tenant`: commanders only). */
  usage(query: { tenant?: string; day?: string } = {}, options: CallOptions = {}): Promise<UsageReport> {
    return this.request("GET", "/v1/usage", { query: { ...query }, ...options });
  }

  /** Registers a workflow definition (supervisor role); `created` is false for a repeat. */
  registerWorkflow(definition: { [key: string]: Json }, options: CallOptions = {}): Promise<RegisteredWorkflow> {
    return this.request("POST", "/v1/workflows", { body: definition, ...options });
  }

  /** The newest version of each workflow, or every version of `name` (oldest first). */
  async workflows(name?: string, options: CallOptions = {}): Promise<Workflow[]> {
    const r = await this.request<{ workflows: Workflow[] }>("GET", "/v1/workflows", { query: { name }, ...options });
    return r.workflows;
  }

  /** One workflow definition: `version`, or the newest. */
  async workflow(name: string, version?: number, options: CallOptions = {}): Promise<Workflow> {
    const r = await this.request<{ workflow: Workflow }>("GET", `/v1/workflows/${encodeURIComponent(name)}`, {
      query: { version },
      ...options,
    });
    return r.workflow;
  }

  /** Sends signal `name` with `payload` (any JSON) to a workflow instance. */
  signal(id: string, name: string, payload: Json = null, options: CallOptions = {}): Promise<Signalled> {
    return this.request("POST", `/v1/tasks/${encodeURIComponent(id)}/signals/${encodeURIComponent(name)}`, {
      body: payload,
      ...options,
    });
  }

  /** Answers an approval step: `approve(id, "review", {decision: "approve", comment})`. */
  approve(id: string, name: string, approval: Approval, options: CallOptions = {}): Promise<Signalled> {
    return this.signal(id, name, approval as unknown as Json, options);
  }

  /**
   * Live events matching `filter`, resumed automatically after disconnects and `lagged`
   * (each event once, in cursor order). A `task_id` watch ends after the task's terminal event
   * (at once when the task has finished and has no event after the cursor).
   */
  watch(filter: WatchFilter = {}, options: WatchOptions = {}): Watch {
    const probe = async (taskId: string, after: number): Promise<boolean> => {
      const task = await this.get(taskId);
      return isTerminal(task.state) && (await this.events(taskId, { after, limit: 1 })).length === 0;
    };
    return new Watch(this.socketTarget, filter, { probe, ...options });
  }

  /** Closes the shared socket session (waits in flight resolve by other means or reject). */
  async close(): Promise<void> {
    await this.shared?.close();
    this.shared = undefined;
  }
}
