/**
 * The JSON shapes of cadre's HTTP API (docs/HTTP_API.md), field for field.
 *
 * Bodies and answers keep the API's own snake_case names, so the API reference reads as the
 * SDK's reference too; only options that exist in the SDK alone (an `AbortSignal`, buffer
 * sizes) are camelCase.
 */
/** Every state a task can be in; the last four are terminal. */
export type TaskState = "QUEUED" | "RUNNING" | "RETRYING" | "SUCCEEDED" | "FAILED" | "CANCELLED" | "TIMED_OUT";
/** The states after which a task never changes again. */
export declare const TERMINAL_STATES: readonly TaskState[];
/** Whether `state` is terminal (the task will not run again). */
export declare function isTerminal(state: string): boolean;
/** Any JSON value. */
export type Json = null | boolean | number | string | Json[] | {
    [key: string]: Json;
};
/** How a task is retried after a retryable failure. */
export interface RetryPolicy {
    max_attempts?: number;
    initial_backoff_ms?: number;
    max_backoff_ms?: number;
    multiplier?: number;
    /** Also retry an attempt that ran past its timeout (default false: TIMED_OUT is final). */
    retry_timeouts?: boolean;
}
/** A task to submit: the body of `POST /v1/tasks`. */
export interface TaskSpec {
    task_type: string;
    params?: Json;
    priority?: number;
    timeout_ms?: number;
    /** A repeat with the same key answers the first task instead of making a new one. */
    idempotency_key?: string;
    retry?: RetryPolicy;
    security_level?: "standard" | "verified" | "fortress";
    /** Shares the running limit the node configures for this key (per tenant). */
    concurrency_key?: string;
    /**
     * Trailing-edge debounce (with `debounce_window_ms`): a submit with the same key within the
     * window replaces this task while it waits (it ends CANCELLED naming its replacement).
     */
    debounce_key?: string;
    /** The debounce window in milliseconds: > 0 with `debounce_key`, at most one day. */
    debounce_window_ms?: number;
}
/** Model usage reported by a task (tokens and cost). */
export interface Usage {
    model: string;
    tokens_in: number;
    tokens_out: number;
    cost_usd: number;
    tenant?: string;
}
/** `GET /v1/usage`: one day's tokens and cost per tenant and model. */
export interface UsageReport {
    day: string;
    usage: Usage[];
}
/** What a waiting workflow step waits for. */
export interface StepWait {
    signal: string;
    kind: "signal" | "approval" | "timer" | string;
    role: string | null;
    prompt: string | null;
    due_at_ms: number | null;
}
/** One step of a workflow instance (`steps` of a task). */
export interface WorkflowStep {
    id: string;
    kind: "task" | "wait" | "approval" | "sleep" | "agent" | string;
    state: "PENDING" | "RUNNING" | "WAITING" | "SUCCEEDED" | "FAILED" | "SKIPPED" | string;
    output: Json;
    error: string | null;
    task_ids: string[];
    waiting: StepWait[];
    started_at_ms: number | null;
    ended_at_ms: number | null;
}
/** A task as the API renders it. */
export interface Task {
    id: string;
    tenant: string;
    task_type: string;
    params: Json;
    priority: number;
    timeout_ms: number;
    retry?: RetryPolicy | null;
    idempotency_key?: string;
    security_level: string;
    state: TaskState;
    attempt: number;
    supervisor: string;
    worker_kind: string;
    result: Json;
    error: string | null;
    parent_id: string | null;
    children: string[];
    created_at_ms: number;
    updated_at_ms: number;
    seq: number;
    result_signature: string | null;
    usage: Usage[];
    steps: WorkflowStep[];
    concurrency_key?: string | null;
    debounce_key?: string | null;
    debounce_window_ms?: number | null;
    /** For a task made by a bulk replay: the task it replays. */
    replay_of?: string | null;
}
/** A task event (JSON API, WebSocket and SSE alike). */
export interface TaskEvent {
    type: "event";
    /** Global, strictly increasing: resuming after cursor N delivers every later event once. */
    cursor: number;
    task_id: string;
    seq: number;
    state: TaskState;
    attempt: number;
    message: string;
    progress: number;
    result: Json;
    at_ms: number;
    task_type: string;
    tenant: string;
    parent_id: string | null;
    is_progress: boolean;
}
/** The answer of a submission. */
export interface Submitted {
    task: Task;
    /** False when an idempotent repeat answered an existing task. */
    created: boolean;
}
/** Filters of `GET /v1/tasks`. */
export interface ListQuery {
    /** One state or several. */
    state?: TaskState | TaskState[];
    type_prefix?: string;
    parent_id?: string;
    /** 1-1000, default 50. */
    page_size?: number;
    page_token?: string;
}
/** One page of tasks, newest first. */
export interface TaskPage {
    tasks: Task[];
    /** Empty on the last page. */
    next_page_token: string;
}
/** A registered task type with where it runs and its schemas. */
export interface TaskType {
    task_type: string;
    supervisor: string;
    worker_kind: string;
    executor: string;
    params_schema: Json;
    result_schema: Json;
}
/** A worker pool in the supervisor tree. */
export interface PoolStatus {
    worker_kind: string;
    target_size: number;
    live_workers: number;
    busy_workers: number;
    queue_depth: number;
    restarts: number;
}
/** A supervisor in the tree. */
export interface SupervisorStatus {
    name: string;
    state: string;
    restarts: number;
    recent_restarts: number;
    max_restarts: number;
    node_id: string;
    address: string;
    pools: PoolStatus[];
}
/** `GET /v1/status`. */
export interface NodeStatus {
    node_id: string;
    version: string;
    pending_tasks: number;
    supervisors: SupervisorStatus[];
}
/** A registered workflow definition. */
export interface Workflow {
    name: string;
    version: number;
    task_type: string;
    description: string | null;
    created_at_ms: number;
    created_by: string;
    /** The definition as stored (canonical form). */
    definition: {
        [key: string]: Json;
    };
}
/** The answer of registering a workflow. */
export interface RegisteredWorkflow {
    workflow: Workflow;
    /** False when this very definition was registered before. */
    created: boolean;
}
/** The answer of a signal. */
export interface Signalled {
    /** The signal's sequence number (increasing, unique in the store). */
    seq: number;
    /** The instance with its steps. */
    task: Task;
}
/** The payload of an approval signal. */
export interface Approval {
    decision: "approve" | "reject";
    comment?: string;
}
/** `GET /v1/whoami`. */
export interface Identity {
    subject: string;
    role: string;
    tenant: string;
}
/** What to watch: the fields of the WebSocket `subscribe` message. */
export interface WatchFilter {
    /** One task; the stream ends after its terminal event. */
    task_id?: string;
    type_prefix?: string;
    states?: TaskState[];
    parent_id?: string;
    /** Deliver events after this cursor (0 = from the beginning); omitted = from now. */
    cursor?: number;
}
