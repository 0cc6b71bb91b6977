/**
 * A single-consumer queue that a socket pushes into and an async iterator pulls from: the
 * bridge between callback-driven sockets and `for await`.
 */

/** Items pushed by a producer, pulled by one `for await` consumer. */
export class AsyncQueue<T> {
  private readonly items: T[] = [];
  private waiter: { resolve: (r: IteratorResult<T>) => void; reject: (e: unknown) => void } | undefined;
  private ended = false;
  private failure: { error: unknown } | undefined;
  /** Called after the consumer took an item (for backpressure). */
  onTake: (() => void) | undefined;

  /** Items waiting for the consumer. */
  get length(): number {
    return this.items.length;
  }

  /** Whether `end` or `fail` was called. */
  get closed(): boolean {
    return this.ended;
  }

  push(item: T): void {
    if (this.ended) return;
    if (this.waiter) {
      const w = this.waiter;
      this.waiter = undefined;
      w.resolve({ value: item, done: false });
      this.onTake?.();
    } else {
      this.items.push(item);
    }
  }

  /** No more items: the consumer gets what is queued, then the end. */
  end(): void {
    if (this.ended) return;
    this.ended = true;
    if (this.waiter && this.items.length === 0) {
      const w = this.waiter;
      this.waiter = undefined;
      w.resolve({ value: undefined, done: true });
    }
  }

  /** Ends with an error: the consumer gets what is queued, then the error. */
  fail(error: unknown): void {
    if (this.ended) return;
    if (this.waiter) {
      // A waiting consumer has nothing queued: it gets the error now.
      const w = this.waiter;
      this.waiter = undefined;
      w.reject(error);
    } else {
      this.failure = { error };
    }
    this.end();
  }

  /** Ends at once, dropping what is queued (the consumer stopped). */
  discard(): void {
    this.items.length = 0;
    this.failure = undefined;
    this.end();
  }

  next(): Promise<IteratorResult<T>> {
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
