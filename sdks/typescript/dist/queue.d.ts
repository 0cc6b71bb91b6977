/**
 * A single-consumer queue that a socket pushes into and an async iterator pulls from: the
 * bridge between callback-driven sockets and `for await`.
 */
/** Items pushed by a producer, pulled by one `for await` consumer. */
export declare class AsyncQueue<T> {
    private readonly items;
    private waiter;
    private ended;
    private failure;
    /** Called after the consumer took an item (for backpressure). */
    onTake: (() => void) | undefined;
    /** Items waiting for the consumer. */
    get length(): number;
    /** Whether `end` or `fail` was called. */
    get closed(): boolean;
    push(item: T): void;
    /** No more items: the consumer gets what is queued, then the end. */
    end(): void;
    /** Ends with an error: the consumer gets what is queued, then the error. */
    fail(error: unknown): void;
    /** Ends at once, dropping what is queued (the consumer stopped). */
    discard(): void;
    next(): Promise<IteratorResult<T>>;
}
