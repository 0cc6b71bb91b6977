// SocketSession: many submissions on one WebSocket, each with its events and result; refusals
// per request; a dropped socket loses no task and makes no twin; submitAndWait on top of it.

import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";

import {
  CadreClient,
  CadreError,
  FailedPreconditionError,
  InvalidArgumentError,
  NotFoundError,
  PermissionDeniedError,
  UnauthenticatedError,
  isTerminal,
} from "../dist/index.js";
import { TestNode, WEBSOCKET, cursors } from "./harness.mjs";

/** Every event of a submission, read to its end. */
async function drain(submission) {
  const got = [];
  for await (const ev of submission.events) got.push(ev);
  return got;
}

describe("socket session", () => {
  let node;
  let client;
  before(async () => {
    node = await TestNode.start({ extraToml: "[supervisors.system.pools]\nmonitor = 16\n" });
    client = new CadreClient({ webSocket: WEBSOCKET, baseUrl: node.http, token: node.credential });
  });
  after(async () => {
    await client?.close();
    await node?.dispose();
  });

  test("many submissions in flight on one socket, each with its own events and result", async () => {
    const session = client.openSession();
    try {
      const specs = Array.from({ length: 40 }, (_, i) =>
        i % 2 === 0
          ? { task_type: "system.debug.echo", params: { i } }
          : { task_type: "system.debug.sleep", params: { ms: 50 + i } },
      );
      const subs = await Promise.all(specs.map((s) => session.submit(s)));
      assert.equal(session.socketsOpened, 1, "one socket for all");
      assert.equal(new Set(subs.map((s) => s.task.id)).size, 40);
      assert.equal(new Set(subs.map((s) => s.requestId)).size, 40);
      const done = await Promise.all(subs.map(async (s) => ({ events: await drain(s), task: await s.result })));
      for (const [i, { events, task }] of done.entries()) {
        assert.equal(subs[i].created, true);
        assert.equal(subs[i].task.task_type, specs[i].task_type);
        assert.equal(task.id, subs[i].task.id);
        assert.equal(task.state, "SUCCEEDED");
        if (i % 2 === 0) assert.deepEqual(task.result, { i });
        assert.ok(events.every((e) => e.task_id === task.id), "only its own task's events");
        const stored = await client.events(task.id);
        assert.deepEqual(cursors(events), cursors(stored), "every event once, in order");
        assert.ok(isTerminal(events.at(-1).state));
      }
      assert.equal(session.size, 0);
    } finally {
      await session.close();
    }
  });

  test("maxInFlight bounds the submissions on the socket; the rest wait for a slot", async () => {
    const session = client.openSession({ maxInFlight: 3 });
    try {
      let most = 0;
      const results = await Promise.all(
        Array.from({ length: 9 }, async (_, i) => {
          const s = await session.submit({ task_type: "system.debug.sleep", params: { ms: 40 + i } });
          most = Math.max(most, session.size);
          return s.result;
        }),
      );
      assert.deepEqual(new Set(results.map((t) => t.state)), new Set(["SUCCEEDED"]));
      assert.ok(most <= 3 && most >= 1, `at most 3 in flight, saw ${most}`);
      assert.equal(session.size, 0);
    } finally {
      await session.close();
    }
  });

  test("refusals are per request and typed; the socket carries on", async () => {
    const session = client.openSession();
    try {
      const attempts = await Promise.allSettled([
        session.submit({ task_type: "system.debug.echo", params: { ok: 1 } }),
        session.submit({ task_type: "system.debug.sleep", params: { ms: "long" } }),
        session.submit({ task_type: "no.such.type", params: {} }),
        session.submit({ task_type: "system.debug.echo", params: { ok: 2 }, priority: 1000 }),
        session.submit({ task_type: "system.debug.echo", params: { ok: 3 } }),
      ]);
      assert.deepEqual(
        attempts.map((a) => a.status),
        ["fulfilled", "rejected", "rejected", "rejected", "fulfilled"],
      );
      const bad = attempts[1].reason;
      assert.ok(bad instanceof InvalidArgumentError, String(bad));
      assert.equal(bad.code, "invalid_argument");
      assert.match(bad.message, /ms/);
      assert.equal(typeof bad.requestId, "string");
      const unknown = attempts[2].reason;
      assert.ok(unknown instanceof CadreError && ["not_found", "invalid_argument"].includes(unknown.code), String(unknown));
      assert.ok(attempts[3].reason instanceof InvalidArgumentError, String(attempts[3].reason));
      for (const a of [attempts[0], attempts[4]]) assert.equal((await a.value.result).state, "SUCCEEDED");
      assert.equal(session.socketsOpened, 1, "refusals did not cost the socket");
    } finally {
      await session.close();
    }
  });

  test("roles and tenants: an observer is refused, another tenant's task is its own", async () => {
    const observer = new CadreClient({ webSocket: WEBSOCKET, baseUrl: node.http, token: node.token("default", "observer") });
    const refused = await observer.submitAndWait({ task_type: "system.debug.echo", params: {} }).catch((e) => e);
    assert.ok(refused instanceof PermissionDeniedError, String(refused));
    await observer.close();

    const acme = new CadreClient({ webSocket: WEBSOCKET, baseUrl: node.http, token: node.token("acme", "operator") });
    const session = acme.openSession();
    try {
      const mine = await client.submit({
        task_type: "system.debug.echo",
        params: { tenant: "default" },
        idempotency_key: "shared-key",
      });
      // The same idempotency key in another tenant is another task.
      const theirs = await session.submit({
        task_type: "system.debug.echo",
        params: { tenant: "acme" },
        idempotency_key: "shared-key",
      });
      assert.equal(theirs.created, true);
      assert.notEqual(theirs.task.id, mine.task.id);
      assert.equal(theirs.task.tenant, "acme");
      const events = await drain(theirs);
      assert.ok(events.every((e) => e.tenant === "acme" && e.task_id === theirs.task.id));
      assert.equal((await theirs.result).tenant, "acme");
      await assert.rejects(acme.get(mine.task.id), NotFoundError, "acme cannot see default's task");
      // Its watch from the beginning sees its own tenant's events only.
      const seen = [];
      for await (const ev of acme.watch({ cursor: 0 })) {
        seen.push(ev);
        if (ev.task_id === theirs.task.id && isTerminal(ev.state)) break;
      }
      assert.ok(seen.length >= 3 && seen.every((e) => e.tenant === "acme"), JSON.stringify(seen.map((e) => e.tenant)));
    } finally {
      await session.close();
      await acme.close();
    }

    const bad = new CadreClient({ webSocket: WEBSOCKET, baseUrl: node.http, token: "not-a-token" });
    await assert.rejects(bad.submitAndWait({ task_type: "system.debug.echo", params: {} }), UnauthenticatedError);
    await bad.close();
  });

  test("a dropped socket: accepted tasks are followed to their end, the rest sent again without twins", async () => {
    const session = client.openSession();
    try {
      // Accepted, then the socket drops while they run.
      const running = await Promise.all(
        Array.from({ length: 10 }, (_, i) => session.submit({ task_type: "system.debug.sleep", params: { ms: 300 + i } })),
      );
      session.socket.terminate();
      // Sent on a socket dropped before the node could read them: sent again.
      const batch = randomUUID();
      const early = Array.from({ length: 5 }, (_, i) =>
        session.submit({ task_type: "system.debug.echo", params: { batch, i } }),
      );
      await new Promise((r) => setTimeout(r, 50));
      const resentBefore = session.resent;
      const late = Array.from({ length: 5 }, (_, i) =>
        session.submit({ task_type: "system.debug.echo", params: { batch, i: i + 5 } }),
      );
      await Promise.resolve();
      session.socket.terminate();
      // In flight when the socket drops, accepted or not: each must end as exactly one task.
      const racing = Array.from({ length: 10 }, (_, i) =>
        session.submit({ task_type: "system.debug.echo", params: { batch, i: i + 10 } }),
      );
      await new Promise((r) => setImmediate(r));
      session.socket?.terminate();
      const raced = await Promise.all([...early, ...late, ...racing]);
      assert.ok(session.resent - resentBefore >= 5, `resent ${session.resent - resentBefore}`);
      assert.ok(session.followed >= 10, `followed ${session.followed}`);

      for (const s of running) {
        const events = await drain(s);
        const task = await s.result;
        assert.equal(task.state, "SUCCEEDED");
        assert.deepEqual(cursors(events), cursors(await client.events(task.id)), "no gap, no repeat across the drop");
      }
      for (const [i, s] of raced.entries()) {
        const task = await s.result;
        assert.equal(task.state, "SUCCEEDED");
        assert.deepEqual(task.result, { batch, i });
      }
      const made = [];
      for await (const t of client.listAll({ type_prefix: "system.debug.echo" })) {
        if (t.params?.batch === batch) made.push(t.id);
      }
      assert.equal(made.length, 20, "no twin and no loss");
      assert.ok(session.socketsOpened >= 2, "it opened another socket");
    } finally {
      await session.close();
    }
  });

  test("submitAndWait rides the shared session", async () => {
    const tasks = await Promise.all([
      client.submitAndWait({ task_type: "system.debug.echo", params: { a: 1 } }),
      client.submitAndWait({ task_type: "system.debug.fail", params: { message: "no", retryable: false } }),
      client.submitAndWait({ task_type: "system.debug.sleep", params: { ms: 20 } }),
    ]);
    assert.deepEqual(tasks.map((t) => t.state), ["SUCCEEDED", "FAILED", "SUCCEEDED"]);
    assert.deepEqual(tasks[0].result, { a: 1 });
    await assert.rejects(client.submitAndWait({ task_type: "system.debug.sleep", params: {} }), InvalidArgumentError);
    assert.equal(client.session().socketsOpened, 1);
    const closing = client.openSession();
    const pending = await closing.submit({ task_type: "system.debug.sleep", params: { ms: 5000 } });
    await closing.close();
    await assert.rejects(pending.result, (e) => e instanceof FailedPreconditionError && e.code === "failed_precondition");
    await client.cancel(pending.task.id);
  });
});
