/**
 * `CadreClient`: the JSON API (docs/HTTP_API.md) over Node's built-in `fetch`, event streams
 * over the WebSocket, and submission over a shared {@link SocketSession}.
 */
import { SocketSession, type SessionOptions } from "./session.js";
import { type WebSocketChoice } from "./socket.js";
import type { Approval, Identity, Json, ListQuery, NodeStatus, PoolStatus, RegisteredWorkflow, Signalled, Submitted, Task, TaskEvent, TaskPage, TaskSpec, TaskType, UsageReport, WatchFilter, Workflow } from "./types.js";
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
export declare class CadreClient {
    /** The node's HTTP address without a trailing slash. */
    readonly baseUrl: string;
    private readonly token;
    private readonly webSocket;
    private readonly fetchFn;
    private shared;
    constructor(options?: ClientOptions);
    /** Where event sockets go (`ws://.../v1/events`), with the credential. */
    get socketTarget(): SocketTarget;
    /** One JSON API call; throws the typed {@link CadreError} of a refusal. */
    request<T>(method: string, path: string, options?: {
        query?: Query;
        body?: unknown;
        signal?: AbortSignal;
    }): Promise<T>;
    /** Who the credential is: subject, role and tenant. */
    whoami(options?: CallOptions): Promise<Identity>;
    /** Submits a task; `created` is false when an idempotent repeat answered an existing one. */
    submit(spec: TaskSpec, options?: CallOptions): Promise<Submitted>;
    /**
     * Submits a task and resolves with it once it is terminal (SUCCEEDED, FAILED, CANCELLED or
     * TIMED_OUT; a failed task resolves, it does not throw). By default over the client's shared
     * {@link SocketSession}, so many waits share one socket and survive it dropping.
     */
    submitAndWait(spec: TaskSpec, options?: WaitOptions): Promise<Task>;
    /** The client's shared socket session (opened on first use, closed by `close()`). */
    session(): SocketSession;
    /** A new socket session of its own (close it when done). */
    openSession(options?: SessionOptions): SocketSession;
    /** One task (with its steps, for a workflow instance). */
    get(id: string, options?: CallOptions): Promise<Task>;
    /** One page of tasks, newest first. */
    list(query?: ListQuery, options?: CallOptions): Promise<TaskPage>;
    /** Every task matching `query`, page after page, newest first. */
    listAll(query?: Omit<ListQuery, "page_token">, options?: CallOptions): AsyncGenerator<Task, void, undefined>;
    /** Cancels a task; answers it as it is now. */
    cancel(id: string, reason?: string, options?: CallOptions): Promise<Task>;
    /** Stored events of a task, oldest first: `after` a cursor, at most `limit` (1-1000, 200). */
    events(id: string, query?: {
        after?: number;
        limit?: number;
    }, options?: CallOptions): Promise<TaskEvent[]>;
    /** Registered task types (workflows too) in name order, with their JSON Schemas. */
    taskTypes(type_prefix?: string, options?: CallOptions): Promise<TaskType[]>;
    /** The node and its supervisor tree. */
    status(options?: CallOptions): Promise<NodeStatus>;
    /** Resizes a worker pool (supervisor role); answers the pool. */
    scale(supervisor: string, workerKind: string, replicas: number, options?: CallOptions): Promise<PoolStatus>;
    /** A day's model usage (`day` `YYYY-MM-DD`, default today UTC; `tenant`: commanders only). */
    usage(query?: {
        tenant?: string;
        day?: string;
    }, options?: CallOptions): Promise<UsageReport>;
    /** Registers a workflow definition (supervisor role); `created` is false for a repeat. */
    registerWorkflow(definition: {
        [key: string]: Json;
    }, options?: CallOptions): Promise<RegisteredWorkflow>;
    /** The newest version of each workflow, or every version of `name` (oldest first). */
    workflows(name?: string, options?: CallOptions): Promise<Workflow[]>;
    /** One workflow definition: `version`, or the newest. */
    workflow(name: string, version?: number, options?: CallOptions): Promise<Workflow>;
    /** Sends signal `name` with `payload` (any JSON) to a workflow instance. */
    signal(id: string, name: string, payload?: Json, options?: CallOptions): Promise<Signalled>;
    /** Answers an approval step: `approve(id, "review", {decision: "approve", comment})`. */
    approve(id: string, name: string, approval: Approval, options?: CallOptions): Promise<Signalled>;
    /**
     * Live events matching `filter`, resumed automatically after disconnects and `lagged`
     * (each event once, in cursor order). A `task_id` watch ends after the task's terminal event
     * (at once when the task has finished and has no event after the cursor).
     */
    watch(filter?: WatchFilter, options?: WatchOptions): Watch;
    /** Closes the shared socket session (waits in flight resolve by other means or reject). */
    close(): Promise<void>;
}
export {};
