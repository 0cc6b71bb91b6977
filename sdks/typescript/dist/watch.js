/**
 * `watch(filter)`: task events over the WebSocket `/v1/events` as an async iterator that
 * survives disconnects.
 *
 * The iterator remembers the cursor of the last event it queued. Whenever the connection ends
 * before the stream does (dropped, the node restarted, the node said `lagged`, the reader fell
 * behind its buffer), it reconnects and subscribes again after that cursor, and drops any event
 * at or before it, so every matching event is yielded exactly once and in cursor order.
 */
import { CadreError, UnavailableError, errorFor, isTransient } from "./errors.js";
import { AsyncQueue } from "./queue.js";
import { connect } from "./socket.js";
import { isTerminal } from "./types.js";
/** A live event stream; iterate it with `for await`, stop it with `close()` or `return()`. */
export class Watch {
    target;
    filter;
    options;
    queue = new AsyncQueue();
    buffer;
    socket;
    paused = false;
    stopped = false;
    /** The current connection got `subscribed` (a close before it counts as a failure). */
    live = false;
    /** Wakes the loop while it waits (backoff, or for a slow reader to catch up). */
    wake;
    /** Cursor of the last event queued: where a reconnect resumes. */
    queued;
    yielded;
    /** Reconnects so far (all reasons). */
    reconnects = 0;
    constructor(target, filter, options = {}) {
        this.target = target;
        this.filter = filter;
        this.options = options;
        this.buffer = Math.max(1, options.bufferEvents ?? 1000);
        this.queued = filter.cursor;
        this.queue.onTake = () => this.taken();
        const { signal } = options;
        if (signal?.aborted)
            this.close();
        else
            signal?.addEventListener("abort", () => this.close(), { once: true });
        void this.run();
    }
    /** Whether the watch was closed (by `close()`, `return()` or its signal). */
    get closed() {
        return this.stopped;
    }
    /** Cursor of the last event this iterator yielded (resume a later watch after it). */
    get cursor() {
        return this.yielded;
    }
    [Symbol.asyncIterator]() {
        return this;
    }
    async next() {
        const r = await this.queue.next();
        if (!r.done)
            this.yielded = r.value.cursor;
        return r;
    }
    async return() {
        this.close();
        return { value: undefined, done: true };
    }
    /** Stops the stream: closes the socket; the iterator ends (queued events are dropped). */
    close() {
        if (this.stopped)
            return;
        this.stopped = true;
        this.queue.discard();
        this.socket?.close();
        this.wake?.();
    }
    taken() {
        if (this.queue.length > this.buffer / 2)
            return;
        if (this.paused) {
            this.paused = false;
            this.socket?.resume();
        }
        this.wake?.();
    }
    sleep(ms) {
        return new Promise((resolve) => {
            const t = setTimeout(done, ms);
            function done() {
                clearTimeout(t);
                resolve();
            }
            this.wake = done;
        }).then(() => {
            this.wake = undefined;
        });
    }
    async run() {
        const maxRetries = this.options.maxRetries ?? 20;
        const maxBackoff = this.options.maxBackoffMs ?? 3000;
        let failures = 0;
        let reason;
        while (!this.stopped) {
            if (reason !== undefined) {
                this.reconnects += 1;
                this.options.onReconnect?.({ reason, cursor: this.queued, attempt: failures });
            }
            const outcome = await this.connection().catch((error) => {
                return isTransient(error) ? { kind: "reconnect", reason: "unavailable" } : { kind: "fatal", error };
            });
            if (outcome.kind === "end" || outcome.kind === "stopped")
                break;
            if (outcome.kind === "fatal") {
                this.queue.fail(outcome.error);
                break;
            }
            reason = outcome.reason;
            if (reason === "unavailable") {
                failures += 1;
                if (failures > maxRetries) {
                    this.queue.fail(new UnavailableError("unavailable", `event socket: gave up after ${maxRetries} retries`));
                    break;
                }
                await this.sleep(Math.min(maxBackoff, 100 * 2 ** (failures - 1)));
            }
            else {
                failures = 0;
            }
            // A slow reader: wait until it has caught up before reading again.
            while (!this.stopped && this.queue.length > this.buffer / 2)
                await this.sleep(1000);
        }
        this.queue.end();
    }
    /** One connection: subscribe after the last queued cursor, queue events until it ends. */
    async connection() {
        let outcome;
        let probed = false;
        let finish = () => { };
        const ended = new Promise((resolve) => {
            finish = resolve;
        });
        const socket = await connect({ url: this.target.url, token: this.target.token, choice: this.target.webSocket }, {
            onMessage: (text) => {
                const o = this.message(text, socket);
                if (o && !outcome) {
                    outcome = o;
                    if (o.kind === "end" || o.kind === "fatal")
                        socket.close();
                }
                if (this.live && !probed) {
                    probed = true;
                    void this.finishedAlready().then((done) => {
                        if (done && !outcome) {
                            outcome = { kind: "end" };
                            socket.close();
                        }
                    });
                }
            },
            onClose: () => finish(outcome ?? this.dropped()),
        });
        this.socket = socket;
        this.paused = false;
        this.live = false;
        if (this.stopped) {
            socket.close();
            return { kind: "stopped" };
        }
        const subscribe = { type: "subscribe", ...this.filter };
        if (this.queued === undefined)
            delete subscribe["cursor"];
        else
            subscribe["cursor"] = this.queued;
        if (socket.authInMessage && this.target.token)
            subscribe["token"] = this.target.token;
        socket.send(JSON.stringify(subscribe));
        return ended;
    }
    /**
     * Whether a one-task watch has nothing more to deliver: its task is finished and has no
     * event after the resume cursor. (The node ends a one-task stream after the terminal event
     * it sends; subscribed after that event, or from now on a finished task, it sends nothing.)
     */
    async finishedAlready() {
        const taskId = this.filter.task_id;
        if (taskId === undefined || !this.options.probe)
            return false;
        try {
            return await this.options.probe(taskId, this.queued ?? 0);
        }
        catch {
            return false;
        }
    }
    /** How a connection that closed without saying why ended. */
    dropped() {
        if (this.stopped)
            return { kind: "stopped" };
        return { kind: "reconnect", reason: this.live ? "dropped" : "unavailable" };
    }
    /** Handles one server message; returns how the connection ends, if this ends it. */
    message(text, socket) {
        let m;
        try {
            m = JSON.parse(text);
        }
        catch {
            return { kind: "fatal", error: new CadreError("internal", `event socket: not JSON: ${text.slice(0, 200)}`) };
        }
        switch (m.type) {
            case "subscribed":
                this.live = true;
                if (this.queued === undefined)
                    this.queued = m.cursor;
                return undefined;
            case "event": {
                const ev = m;
                if (this.queued !== undefined && ev.cursor <= this.queued)
                    return undefined;
                this.queued = ev.cursor;
                this.queue.push(ev);
                if (this.filter.task_id !== undefined && !ev.is_progress && isTerminal(ev.state)) {
                    this.queue.end();
                    return { kind: "end" };
                }
                if (this.queue.length >= this.buffer) {
                    if (socket.canPause) {
                        this.paused = true;
                        socket.pause();
                    }
                    else {
                        socket.close();
                        return { kind: "reconnect", reason: "slow-reader" };
                    }
                }
                return undefined;
            }
            case "end":
                return { kind: "end" };
            case "lagged":
                return { kind: "reconnect", reason: "lagged" };
            case "error": {
                const error = errorFor(m.code ?? "internal", m.message ?? "event socket error");
                return isTransient(error) ? { kind: "reconnect", reason: "unavailable" } : { kind: "fatal", error };
            }
            default:
                return undefined;
        }
    }
}
