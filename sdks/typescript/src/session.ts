/**
 * `SocketSession`: many task submissions multiplexed on one WebSocket `/v1/events`
 * (docs/HTTP_API.md, submitting over the socket).
 *
 * Each `submit` message carries a request id the session chooses; the node answers
 * `accepted` (the stored task), then the task's events, then `result` (the finished task), or
 * an `error`, all tagged with that id. A submission is never lost to a dropped socket:
 *
 * - one not yet accepted is sent again on a new socket with the same idempotency key (the
 *   session gives every task one when it has none), so the node answers the same task;
 * - one accepted is followed from its last event by a one-task {@link Watch}, and its result
 *   is then read with `GET /v1/tasks/{id}`.
 */

import { randomUUID } from "node:crypto";

import type { CadreClient } from "./client.js";
import { FailedPreconditionError, UnavailableError, errorFor, isTransient } from "./errors.js";
import { AsyncQueue } from "./queue.js";
import { type Socket, connect } from "./socket.js";
import { type Submitted, type Task, type TaskEvent, type TaskSpec, isTerminal } from "./types.js";
import type { Watch } from "./watch.js";

/** Options of a {@link SocketSession}. */
export interface SessionOptions {
  /**
   * Submissions in flight at once (default 64, the node's default `server.ws_max_inflight`);
   * more wait for a slot.
   */
  maxInFlight?: number;
  /** Failed attempts in a row to open a socket before waiting submissions fail (default 10). */
  maxRetries?: number;
  /** Give tasks without an idempotency key one, so a resend cannot make a twin (default true). */
  autoIdempotencyKey?: boolean;
}

/** Options of {@link SocketSession.submit}. */
export interface SubmitOptions {
  /** Aborts waiting for the acceptance (a task already accepted carries on). */
  signal?: AbortSignal | undefined;
  /** Keep the task's events for `events` (default true); false when only the result matters. */
  events?: boolean;
}

/** A task accepted over the socket: its events and, once terminal, its result. */
export interface Submission extends Submitted {
  /** The request id that tags this submission's messages. */
  readonly requestId: string;
  /**
   * The task's events from its first, each once, in order; ends after the terminal event.
   * Kept from the acceptance on until read (empty when submitted with `events: false`).
   */
  readonly events: AsyncIterable<TaskEvent>;
  /** The task once terminal (a failed task resolves; only a transport or refusal rejects). */
  readonly result: Promise<Task>;
}

/** One submission in flight. */
interface Pending {
  id: string;
  /** The `submit` message, without the credential. */
  body: Record<string, unknown>;
  accept: { resolve: (s: Submission) => void; reject: (e: unknown) => void };
  accepted: boolean;
  taskId: string | undefined;
  /** Cursor of the last event seen (where a follow-up resumes). */
  cursor: number;
  /** The task's terminal event was seen (only its `result` may be missing). */
  terminal: boolean;
  events: AsyncQueue<TaskEvent> | undefined;
  settle: { resolve: (t: Task) => void; reject: (e: unknown) => void };
  /** The socket this was last sent on. */
  socket: Socket | undefined;
  /** Followed by other means since its socket was lost (no socket answers it any more). */
  following: boolean;
  /** The one-task watch that follows it. */
  follower: Watch | undefined;
}

/** Many submissions on one WebSocket; see the module docs. Close it when done. */
export class SocketSession {
  private readonly pending = new Map<string, Pending>();
  /** Submissions waiting for a slot. */
  private readonly waiting: Array<() => void> = [];
  private readonly maxInFlight: number;
  private readonly maxRetries: number;
  private readonly autoKey: boolean;
  private socket: Socket | undefined;
  private connecting: Promise<Socket> | undefined;
  private inFlight = 0;
  private isClosed = false;
  /** Sockets opened so far (a reconnect opens another). */
  socketsOpened = 0;
  /** Submissions sent again after their socket dropped before the acceptance. */
  resent = 0;
  /** Accepted submissions followed by a one-task watch after their socket was lost. */
  followed = 0;

  constructor(
    private readonly client: CadreClient,
    options: SessionOptions = {},
  ) {
    this.maxInFlight = Math.max(1, options.maxInFlight ?? 64);
    this.maxRetries = options.maxRetries ?? 10;
    this.autoKey = options.autoIdempotencyKey ?? true;
  }

  /** Whether `close()` was called. */
  get closed(): boolean {
    return this.isClosed;
  }

  /** Submissions accepted or sent, not yet finished. */
  get size(): number {
    return this.pending.size;
  }

  /**
   * Submits `spec`; resolves once the node accepted it (with the stored task), rejects with
   * the typed error of a refusal (bad params, role, quota...).
   */
  async submit(spec: TaskSpec, options: SubmitOptions = {}): Promise<Submission> {
    if (this.isClosed) throw new FailedPreconditionError("failed_precondition", "the socket session is closed");
    await this.slot(options.signal);
    const id = randomUUID();
    const task = this.autoKey && !spec.idempotency_key ? { ...spec, idempotency_key: `sdk-${id}` } : spec;
    const body: Record<string, unknown> = { type: "submit", request_id: id, task };
    let settle!: Pending["settle"];
    const result = new Promise<Task>((resolve, reject) => {
      settle = { resolve, reject };
    });
    // Nobody may read `result`: its rejection must not crash the process.
    result.catch(() => {});
    return new Promise<Submission>((resolve, reject) => {
      const p: Pending = {
        id,
        body,
        accept: { resolve, reject },
        accepted: false,
        taskId: undefined,
        cursor: 0,
        terminal: false,
        events: options.events === false ? undefined : new AsyncQueue<TaskEvent>(),
        settle,
        socket: undefined,
        following: false,
        follower: undefined,
      };
      const events = this.eventsOf(p);
      p.accept = { resolve: (s) => resolve({ ...s, requestId: id, events, result }), reject };
      options.signal?.addEventListener(
        "abort",
        () => {
          if (!p.accepted) this.fail(p, options.signal?.reason);
        },
        { once: true },
      );
      this.pending.set(id, p);
      void this.send(p);
    });
  }

  /** Closes the socket; submissions not finished reject (their tasks carry on in the node). */
  async close(): Promise<void> {
    if (this.isClosed) return;
    this.isClosed = true;
    const closing = new FailedPreconditionError("failed_precondition", "the socket session was closed");
    for (const p of [...this.pending.values()]) this.fail(p, closing);
    for (const w of this.waiting.splice(0)) w();
    this.socket?.close();
    this.socket = undefined;
  }

  /** The event queue of a submission as an iterable (one pass). */
  private eventsOf(p: Pending): AsyncIterable<TaskEvent> {
    return {
      [Symbol.asyncIterator]: () => {
        const queue = p.events;
        if (!queue) return { next: async () => ({ value: undefined, done: true }) };
        return {
          next: () => queue.next(),
          return: async () => {
            queue.discard();
            p.events = undefined;
            return { value: undefined, done: true };
          },
        };
      },
    };
  }

  private async slot(signal: AbortSignal | undefined): Promise<void> {
    while (this.inFlight >= this.maxInFlight) {
      signal?.throwIfAborted();
      await new Promise<void>((resolve) => {
        this.waiting.push(resolve);
        signal?.addEventListener("abort", () => resolve(), { once: true });
      });
      if (this.isClosed) throw new FailedPreconditionError("failed_precondition", "the socket session was closed");
    }
    signal?.throwIfAborted();
    this.inFlight += 1;
  }

  /** Sends (or sends again) a submission, opening a socket if needed. */
  private async send(p: Pending): Promise<void> {
    let failures = 0;
    while (this.pending.get(p.id) === p && !p.accepted) {
      try {
        const socket = await this.open();
        if (this.pending.get(p.id) !== p || p.accepted) return;
        p.socket = socket;
        const token = this.client.socketTarget.token;
        const message = socket.authInMessage && token ? { ...p.body, token } : p.body;
        socket.send(JSON.stringify(message));
        return;
      } catch (e) {
        failures += 1;
        if (!isTransient(e) || failures > this.maxRetries) {
          this.fail(p, e);
          return;
        }
        await new Promise((r) => setTimeout(r, Math.min(3000, 100 * 2 ** (failures - 1))));
      }
    }
  }

  /** The open socket, or a new one. */
  private open(): Promise<Socket> {
    if (this.isClosed) return Promise.reject(new FailedPreconditionError("failed_precondition", "the socket session was closed"));
    if (this.socket) return Promise.resolve(this.socket);
    this.connecting ??= this.connectOnce().finally(() => {
      this.connecting = undefined;
    });
    return this.connecting;
  }

  private async connectOnce(): Promise<Socket> {
    const target = this.client.socketTarget;
    let socket: Socket | undefined;
    socket = await connect(
      { url: target.url, token: target.token, choice: target.webSocket },
      {
        onMessage: (text) => this.message(text),
        onClose: (code, reason) => this.dropped(socket, code, reason),
      },
    );
    this.socketsOpened += 1;
    if (this.isClosed) {
      socket.close();
      throw new FailedPreconditionError("failed_precondition", "the socket session was closed");
    }
    this.socket = socket;
    return socket;
  }

  private message(text: string): void {
    let m: {
      type?: string;
      request_id?: string | null;
      code?: string;
      message?: string;
      task?: Task;
      created?: boolean;
      task_id?: string;
    };
    try {
      m = JSON.parse(text) as typeof m;
    } catch {
      return;
    }
    if (typeof m.request_id !== "string") {
      // A socket-wide refusal (e.g. the credential of the first message): fatal for every
      // submission not yet accepted on this socket; the node closes it.
      if (m.type === "error") {
        const error = errorFor(m.code ?? "internal", m.message ?? "socket refused");
        for (const p of [...this.pending.values()]) if (!p.accepted && !isTransient(error)) this.fail(p, error);
      }
      return;
    }
    const p = this.pending.get(m.request_id);
    if (!p) return;
    switch (m.type) {
      case "accepted":
        if (p.accepted || !m.task) return;
        p.accepted = true;
        p.taskId = m.task.id;
        p.accept.resolve({ task: m.task, created: m.created ?? true } as Submission);
        return;
      case "event": {
        const ev = m as unknown as TaskEvent;
        this.event(p, ev);
        return;
      }
      case "result":
        if (m.task) this.done(p, m.task);
        return;
      case "error": {
        const error = errorFor(m.code ?? "internal", m.message ?? "refused", 0, { requestId: p.id });
        // An accepted task whose events the node could not follow carries on: follow it here.
        if (p.accepted) this.follow(p);
        else this.fail(p, error);
        return;
      }
      default:
        // `lagged` for this request: the node closes the socket next; `dropped` follows up.
        return;
    }
  }

  private event(p: Pending, ev: TaskEvent): void {
    if (ev.cursor <= p.cursor) return;
    p.cursor = ev.cursor;
    if (!ev.is_progress && isTerminal(ev.state)) p.terminal = true;
    p.events?.push(ev);
  }

  /** The socket closed: resend what was not accepted, follow what was. */
  private dropped(socket: Socket | undefined, _code: number, _reason: string): void {
    if (this.socket === socket) this.socket = undefined;
    if (this.isClosed) return;
    for (const p of [...this.pending.values()]) {
      if (p.socket !== socket) continue;
      p.socket = undefined;
      if (p.accepted) this.follow(p);
      else {
        this.resent += 1;
        void this.send(p);
      }
    }
  }

  /** Follows an accepted task from its last event with a one-task watch, then reads it. */
  private follow(p: Pending): void {
    if (p.taskId === undefined || p.following) return;
    const taskId = p.taskId;
    p.following = true;
    p.socket = undefined;
    this.followed += 1;
    if (p.terminal) {
      // Every event came; a one-task watch after the terminal one would wait for nothing.
      void this.client.get(taskId).then(
        (task) => this.done(p, task),
        (e: unknown) => this.fail(p, e),
      );
      return;
    }
    const watch = this.client.watch({ task_id: taskId, cursor: p.cursor });
    p.follower = watch;
    void (async () => {
      try {
        for await (const ev of watch) this.event(p, ev);
        if (watch.closed) return;
        this.done(p, await this.client.get(taskId));
      } catch (e) {
        this.fail(p, e);
      }
    })();
  }

  private done(p: Pending, task: Task): void {
    if (this.pending.get(p.id) !== p) return;
    this.finish(p);
    p.events?.end();
    p.settle.resolve(task);
  }

  private fail(p: Pending, error: unknown): void {
    if (this.pending.get(p.id) !== p) return;
    const e = error instanceof Error ? error : new UnavailableError("unavailable", String(error));
    this.finish(p);
    p.events?.fail(e);
    if (!p.accepted) p.accept.reject(e);
    p.settle.reject(e);
  }

  /** Frees the submission's slot and stops its follower. */
  private finish(p: Pending): void {
    if (!this.pending.delete(p.id)) return;
    p.follower?.close();
    this.inFlight -= 1;
    // Every waiter checks again (one may have been aborted meanwhile).
    for (const w of this.waiting.splice(0)) w();
  }
}
