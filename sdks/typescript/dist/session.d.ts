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
import type { CadreClient } from "./client.js";
import { type Submitted, type Task, type TaskEvent, type TaskSpec } from "./types.js";
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
/** Many submissions on one WebSocket; see the module docs. Close it when done. */
export declare class SocketSession {
    private readonly client;
    private readonly pending;
    /** Submissions waiting for a slot. */
    private readonly waiting;
    private readonly maxInFlight;
    private readonly maxRetries;
    private readonly autoKey;
    private socket;
    private connecting;
    private inFlight;
    private isClosed;
    /** Sockets opened so far (a reconnect opens another). */
    socketsOpened: number;
    /** Submissions sent again after their socket dropped before the acceptance. */
    resent: number;
    /** Accepted submissions followed by a one-task watch after their socket was lost. */
    followed: number;
    constructor(client: CadreClient, options?: SessionOptions);
    /** Whether `close()` was called. */
    get closed(): boolean;
    /** Submissions accepted or sent, not yet finished. */
    get size(): number;
    /**
     * Submits `spec`; resolves once the node accepted it (with the stored task), rejects with
     * the typed error of a refusal (bad params, role, quota...).
     */
    submit(spec: TaskSpec, options?: SubmitOptions): Promise<Submission>;
    /** Closes the socket; submissions not finished reject (their tasks carry on in the node). */
    close(): Promise<void>;
    /** The event queue of a submission as an iterable (one pass). */
    private eventsOf;
    private slot;
    /** Sends (or sends again) a submission, opening a socket if needed. */
    private send;
    /** The open socket, or a new one. */
    private open;
    private connectOnce;
    private message;
    private event;
    /** The socket closed: resend what was not accepted, follow what was. */
    private dropped;
    /** Follows an accepted task from its last event with a one-task watch, then reads it. */
    private follow;
    private done;
    private fail;
    /** Frees the submission's slot and stops its follower. */
    private finish;
}
