// watch(): live events over the WebSocket, resumed after drops, restarts and `lagged`, each
// event exactly once and in cursor order; closed by return() or an AbortSignal.

import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { setTimeout as sleep } from "node:timers/promises";

import { CadreClient, InvalidArgumentError, UnauthenticatedError, isTerminal } from "../dist/index.js";
import { TestNode, WEBSOCKET, cursors, eventually } from "./harness.mjs";

/** Every stored event of `ids`, in cursor order (what a watch from the start must yield). */
async function stored(client, ids) {
  const all = [];
  for (const id of ids) all.push(...(await client.events(id, { limit: 1000 })));
  return all.sort((a, b) => a.cursor - b.cursor);
}

/** Reads `watch` until `n` events came (or fails after `ms`); closes it unless `keep`. */
async function take(watch, n, { ms = 30_000, keep = false } = {}) {
  const got = [];
  const timer = setTimeout(() => watch.close(), ms);
  // next() by hand: a `break` out of `for await` would close the watch.
  while (got.length < n) {
    const r = await watch.next();
    if (r.done) break;
    got.push(r.value);
  }
  clearTimeout(timer);
  if (!keep) watch.close();
  assert.equal(got.length, n, `only ${got.length} of ${n} events came`);
  return got;
}

/** Waits until every task in `ids` is terminal. */
async function finished(client, ids) {
  await eventually("tasks to finish", async () => {
    for (const id of ids) if (!isTerminal((await client.get(id)).state)) return false;
    return true;
  });
}

describe("watch", () => {
  let node;
  let client;
  before(async () => {
    node = await TestNode.start();
    client = new CadreClient({ webSocket: WEBSOCKET, baseUrl: node.http, token: node.credential });
  });
  after(async () => {
    await node?.dispose();
  });

  test("from the start with a filter, and a one-task watch that ends after the terminal event", async () => {
    const a = await client.submitAndWait({ task_type: "system.debug.echo", params: { n: 1 } }, { via: "http" });
    const b = await client.submitAndWait({ task_type: "system.debug.sleep", params: { ms: 1 } }, { via: "http" });
    const want = await stored(client, [a.id]);
    const got = await take(client.watch({ type_prefix: "system.debug.echo", cursor: 0 }), want.length);
    assert.deepEqual(got, want);

    const one = [];
    for await (const ev of client.watch({ task_id: b.id, cursor: 0 })) one.push(ev);
    assert.deepEqual(one, await stored(client, [b.id]), "the one-task watch ended by itself");

    const states = [];
    for await (const ev of client.watch({ type_prefix: "system.debug.", states: ["SUCCEEDED"], cursor: 0 })) {
      states.push(ev.task_id);
      if (states.length === 2) break;
    }
    assert.deepEqual(states, [a.id, b.id]);
  });

  test("a one-task watch of a finished task ends at once after its last event, or from now", async () => {
    const t = await client.submitAndWait({ task_type: "system.debug.echo", params: {} }, { via: "http" });
    const all = await stored(client, [t.id]);
    const last = [];
    for await (const ev of client.watch({ task_id: t.id, cursor: all.at(-2).cursor })) last.push(ev);
    assert.deepEqual(last, [all.at(-1)]);
    for (const filter of [{ task_id: t.id, cursor: all.at(-1).cursor }, { task_id: t.id }]) {
      const none = [];
      for await (const ev of client.watch(filter)) none.push(ev);
      assert.deepEqual(none, []);
    }
  });

  test("without a cursor it starts from now", async () => {
    const before = await client.submitAndWait({ task_type: "system.debug.echo", params: {} }, { via: "http" });
    const watch = client.watch({ type_prefix: "system.debug.echo" });
    // Subscribed once the first (live) event of a new task arrives.
    const next = watch.next();
    await sleep(200);
    const fresh = await client.submitAndWait({ task_type: "system.debug.echo", params: {} }, { via: "http" });
    const first = (await next).value;
    assert.equal(first.task_id, fresh.id);
    assert.notEqual(first.task_id, before.id);
    await watch.return();
  });

  test("resumes after its socket is dropped, with no gap and no repeat", async () => {
    const reasons = [];
    const ids = [];
    const watch = client.watch(
      { type_prefix: "system.debug.sleep", cursor: 0 },
      { onReconnect: (r) => reasons.push(r.reason) },
    );
    // Tasks keep coming while the socket is dropped three times.
    const producing = (async () => {
      for (let i = 0; i < 12; i++) {
        ids.push((await client.submit({ task_type: "system.debug.sleep", params: { ms: 30 } })).task.id);
        await sleep(15);
      }
    })();
    const got = [];
    let drops = 0;
    const reader = (async () => {
      for await (const ev of watch) {
        got.push(ev);
        if (got.length % 7 === 0 && drops < 3 && watch.reconnects === drops) {
          drops += 1;
          watch.socket.terminate();
        }
      }
    })();
    await producing;
    await finished(client, ids);
    // Every sleep task of the node (an earlier test made one too).
    const all = [];
    for await (const t of client.listAll({ type_prefix: "system.debug.sleep" })) all.push(t.id);
    const want = await stored(client, all);
    await eventually("every event", () => got.length >= want.length);
    await sleep(100);
    await watch.return();
    await reader;
    assert.equal(drops, 3);
    assert.ok(reasons.filter((r) => r === "dropped").length >= 3, reasons.join());
    assert.deepEqual(cursors(got), cursors(want));
    assert.deepEqual(got, want);
  });

  test("resumes across a node restart on the same port", async () => {
    const first = [];
    for (let i = 0; i < 3; i++) first.push((await client.submit({ task_type: "system.debug.echo", params: { i } })).task.id);
    await finished(client, first);
    const fromCursor = (await stored(client, first))[0].cursor - 1;
    const reasons = [];
    const watch = client.watch(
      { type_prefix: "system.debug.echo", cursor: fromCursor },
      { onReconnect: (r) => reasons.push(r.reason), maxBackoffMs: 200, maxRetries: 200 },
    );
    const early = await stored(client, first);
    const got = await take(watch, early.length, { keep: true });
    await node.restart();
    const second = [];
    for (let i = 0; i < 3; i++) second.push((await client.submit({ task_type: "system.debug.echo", params: { i } })).task.id);
    await finished(client, second);
    const late = await stored(client, second);
    got.push(...(await take(watch, late.length)));
    await watch.return();
    assert.ok(reasons.length >= 1, "it reconnected");
    const want = (await stored(client, [...first, ...second])).filter((e) => e.cursor > fromCursor);
    assert.deepEqual(got, want);
  });

  test("a reader that falls behind is cut off by the node (lagged) and resumes", async () => {
    // A small server queue and grace; big results so the socket buffers fill quickly.
    const lagNode = await TestNode.start({ extraToml: "[server]\nws_buffer = 16\nlag_grace_ms = 50\n" });
    try {
      const c = new CadreClient({ baseUrl: lagNode.http, token: lagNode.credential, webSocket: "ws" });
      const big = "x".repeat(400_000);
      const reasons = [];
      const watch = c.watch(
        { type_prefix: "system.debug.echo", cursor: 0 },
        { bufferEvents: 2, onReconnect: (r) => reasons.push(r.reason) },
      );
      const ids = [];
      for (let i = 0; i < 60; i++) ids.push((await c.submit({ task_type: "system.debug.echo", params: { i, big } })).task.id);
      await finished(c, ids);
      // The reader has read nothing so far: the node must have cut it off.
      await sleep(300);
      const want = await stored(c, ids);
      const got = await take(watch, want.length, { ms: 60_000 });
      await watch.return();
      assert.ok(reasons.includes("lagged"), `reconnects: ${reasons.join() || "none"}`);
      assert.deepEqual(cursors(got), cursors(want));
      assert.equal(got.at(-1).result.big.length, big.length);
    } finally {
      await lagNode.dispose();
    }
  });

  test("a reader slower than its buffer gets every event once (paused, or disconnected and resumed)", async () => {
    const ids = [];
    for (let i = 0; i < 8; i++) ids.push((await client.submit({ task_type: "system.debug.echo", params: { slow: i } })).task.id);
    await finished(client, ids);
    const want = await stored(client, ids);
    const reasons = [];
    const watch = client.watch(
      { type_prefix: "system.debug.echo", cursor: want[0].cursor - 1 },
      { bufferEvents: 4, onReconnect: (r) => reasons.push(r.reason) },
    );
    await sleep(300);
    const got = [];
    for (;;) {
      const r = await watch.next();
      got.push(r.value);
      await sleep(5);
      if (r.value.task_id === ids.at(-1) && r.value.state === "SUCCEEDED") break;
    }
    await watch.return();
    assert.deepEqual(cursors(got), cursors(want));
    // `ws` pauses reading (no reconnect needed at this size); the global WebSocket cannot, so
    // it disconnects and resumes once the reader caught up.
    const canPause = WEBSOCKET === "ws" || (WEBSOCKET === "auto" && typeof globalThis.WebSocket !== "function");
    if (canPause) assert.deepEqual(reasons, []);
    else assert.ok(reasons.includes("slow-reader"), reasons.join());
  });

  test("return() and an AbortSignal close it; refusals are typed", async () => {
    await client.submitAndWait({ task_type: "system.debug.echo", params: {} }, { via: "http" });
    const controller = new AbortController();
    const watch = client.watch({ type_prefix: "system.debug.", cursor: 0 }, { signal: controller.signal });
    const firstOne = await watch.next();
    assert.equal(firstOne.done, false);
    controller.abort();
    assert.deepEqual(await watch.next(), { value: undefined, done: true });
    assert.equal(watch.closed, true);

    const returned = client.watch({ type_prefix: "system.debug.", cursor: 0 });
    await returned.next();
    await returned.return();
    assert.equal((await returned.next()).done, true);

    await assert.rejects(
      (async () => {
        for await (const _ of client.watch({ states: ["SLEEPY"] })) break;
      })(),
      (e) => e instanceof InvalidArgumentError && /SLEEPY/.test(e.message),
    );
    for (const webSocket of ["ws", "auto"]) {
      const bad = new CadreClient({ webSocket: WEBSOCKET, baseUrl: node.http, token: "not-a-token", webSocket });
      await assert.rejects(
        (async () => {
          for await (const _ of bad.watch({})) break;
        })(),
        (e) => e instanceof UnauthenticatedError && e.code === "unauthenticated",
      );
    }
  });
});
