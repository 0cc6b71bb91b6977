/**
 * `watch(filter)`: task events over the WebSocket `/v1/events` as an async iterator that
 * survives disconnects.
 *
 * The iterator remembers the cursor of the last event it queued. Whenever the connection ends
 * before the stream does (dropped, the node restarted, the node said `lagged`, the reader fell
 * behind its buffer), it reconnects and subscribes again after that cursor, and drops any event
 * at or before it, so every matching event is yielded exactly once and in cursor order.
 */
import { type WebSocketChoice } from "./socket.js";
import { type TaskEvent, type WatchFilter } from "./types.js";
/** Where event sockets go: the `/v1/events` URL, the credential and the implementation. */
export interface SocketTarget {
    url: string;
    token: string | undefined;
    webSocket: WebSocketChoice;
}
/** Why a watch reconnected. */
export type ReconnectReason = "dropped" | "lagged" | "slow-reader" | "unavailable";
/** Options of {@link watchEvents}. */
export interface WatchOptions {
    /** Aborting ends the iteration (like `return()`). */
    signal?: AbortSignal;
    /**
     * Events held for a consumer that reads slower than they come (default 1000). When full,
     * reading pauses (the node may then cut the socket with `lagged`, and the watch resumes) or,
     * where the WebSocket cannot pause, the socket is closed until the consumer catches up.
     */
    bufferEvents?: number;
    /** Failed connection attempts in a row before the iteration fails (default 20). */
    maxRetries?: number;
    /** Longest wait between attempts in ms (default 3000; the first waits 100 ms, then doubles). */
    maxBackoffMs?: number;
    /** Told before each reconnect, with the cursor it resumes after. */
    onReconnect?: (info: {
        reason: ReconnectReason;
        cursor: number | undefined;
        attempt: number;
    }) => void;
    /**
     * For a `task_id` watch: whether the task is finished with no event after `after` (then
     * the watch ends at once). `CadreClient.watch` fills this in with the JSON API.
     */
    probe?: (taskId: string, after: number) => Promise<boolean>;
}
/** A live event stream; iterate it with `for await`, stop it with `close()` or `return()`. */
export declare class Watch implements AsyncIterableIterator<TaskEvent> {
    private readonly target;
    private readonly filter;
    private readonly options;
    private readonly queue;
    private readonly buffer;
    private socket;
    private paused;
    private stopped;
    /** The current connection got `subscribed` (a close before it counts as a failure). */
    private live;
    /** Wakes the loop while it waits (backoff, or for a slow reader to catch up). */
    private wake;
    /** Cursor of the last event queued: where a reconnect resumes. */
    private queued;
    private yielded;
    /** Reconnects so far (all reasons). */
    reconnects: number;
    constructor(target: SocketTarget, filter: WatchFilter, options?: WatchOptions);
    /** Whether the watch was closed (by `close()`, `return()` or its signal). */
    get closed(): boolean;
    /** Cursor of the last event this iterator yielded (resume a later watch after it). */
    get cursor(): number | undefined;
    [Symbol.asyncIterator](): this;
    next(): Promise<IteratorResult<TaskEvent>>;
    return(): Promise<IteratorResult<TaskEvent>>;
    /** Stops the stream: closes the socket; the iterator ends (queued events are dropped). */
    close(): void;
    private taken;
    private sleep;
    private run;
    /** One connection: subscribe after the last queued cursor, queue events until it ends. */
    private connection;
    /**
     * Whether a one-task watch has nothing more to deliver: its task is finished and has no
     * event after the resume cursor. (The node ends a one-task stream after the terminal event
     * it sends; subscribed after that event, or from now on a finished task, it sends nothing.)
     */
    private finishedAlready;
    /** How a connection that closed without saying why ended. */
    private dropped;
    /** Handles one server message; returns how the connection ends, if this ends it. */
    private message;
}
