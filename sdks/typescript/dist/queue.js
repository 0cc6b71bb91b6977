/**
 * A single-consumer queue that a socket pushes into and an async iterator pulls from: the
 * bridge between callback-driven sockets and `for await`.
 */
/** Items pushed by a producer, pulled by one `for await` consumer. */
export class AsyncQueue {
    items = [];
    waiter;
    ended = false;
    failure;
    /** Called after the consumer took an item (for backpressure). */
    onTake;
    /** Items waiting for the consumer. */
    get length() {
        return this.items.length;
    }
    /** Whether `end` or `fail` was called. */
    get closed() {
        return this.ended;
    }
    push(item) {
        if (this.ended)
            return;
        if (this.waiter) {
            const w = this.waiter;
            this.waiter = undefined;
            w.resolve({ value: item, done: false });
            this.onTake?.();
        }
        else {
            this.items.push(item);
        }
    }
    /** No more items: the consumer gets what is queued, then the end. */
    end() {
        if (this.ended)
            return;
        this.ended = true;
        if (this.waiter && this.items.length === 0) {
            const w = this.waiter;
            this.waiter = undefined;
            w.resolve({ value: undefined, done: true });
        }
    }
    /** Ends with an error: the consumer gets what is queued, then the error. */
    fail(error) {
        if (this.ended)
            return;
        if (this.waiter) {
            // A waiting consumer has nothing queued: it gets the error now.
            const w = this.waiter;
            this.waiter = undefined;
            w.reject(error);
        }
        else {
            this.failure = { error };
        }
        this.end();
    }
    /** Ends at once, dropping what is queued (the consumer stopped). */
    discard() {
        this.items.length = 0;
        this.failure = undefined;
        this.end();
    }
    next() {
        const item = this.items.shift();
        if (item !== undefined) {
            this.onTake?.();
            return Promise.resolve({ value: item, done: false });
        }
        if (this.ended) {
            if (this.failure) {
                const { error } = this.failure;
                this.failure = undefined;
                return Promise.reject(error);
            }
            return Promise.resolve({ value: undefined, done: true });
        }
        return new Promise((resolve, reject) => {
            this.waiter = { resolve, reject };
        });
    }
}
