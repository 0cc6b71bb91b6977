// The JSON API operations and their typed errors, against a real node.

import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";

import {
  AlreadyExistsError,
  CadreClient,
  CadreError,
  DeadlineExceededError,
  FailedPreconditionError,
  InvalidArgumentError,
  NotFoundError,
  PermissionDeniedError,
  ResourceExhaustedError,
  UnauthenticatedError,
  UnavailableError,
  isTerminal,
} from "../dist/index.js";
import { TestNode, WEBSOCKET, eventually } from "./harness.mjs";

/** A workflow that waits for a signal, then an approval, then echoes the signal's payload. */
const FLOW = {
  name: "sdkflow",
  version: 1,
  description: "signal, approve, echo",
  steps: [
    { id: "go", wait: { signal: "go" } },
    { id: "review", needs: ["go"], wait: { approval: { role: "operator", prompt: "go on?" } } },
    { id: "echo", needs: ["review"], task: "system.debug.echo", params: { got: "${{ steps.go.output.payload }}" } },
  ],
};

describe("JSON API", () => {
  let node;
  let client;
  before(async () => {
    node = await TestNode.start({ extraToml: "[quotas.tenants.slow]\nsubmits_per_second = 1\nburst = 1\n" });
    client = new CadreClient({ webSocket: WEBSOCKET, baseUrl: node.http, token: node.credential });
  });
  after(async () => {
    await client?.close();
    await node?.dispose();
  });

  test("whoami names the bootstrap commander; the token may come from CADRE_TOKEN", async () => {
    const me = await client.whoami();
    assert.equal(me.role, "commander");
    assert.equal(me.tenant, "default");
    const saved = process.env.CADRE_TOKEN;
    process.env.CADRE_TOKEN = node.credential;
    try {
      const fromEnv = new CadreClient({ baseUrl: node.http + "/" });
      assert.deepEqual(await fromEnv.whoami(), me);
    } finally {
      if (saved === undefined) delete process.env.CADRE_TOKEN;
      else process.env.CADRE_TOKEN = saved;
    }
  });

  test("submit, get, events, idempotent repeat", async () => {
    const first = await client.submit({ task_type: "system.debug.echo", params: { hi: 1 }, idempotency_key: "k-1" });
    assert.equal(first.created, true);
    assert.equal(first.task.task_type, "system.debug.echo");
    assert.deepEqual(first.task.params, { hi: 1 });
    const again = await client.submit({ task_type: "system.debug.echo", params: { hi: 1 }, idempotency_key: "k-1" });
    assert.equal(again.created, false);
    assert.equal(again.task.id, first.task.id);
    const done = await eventually("echo to finish", async () => {
      const t = await client.get(first.task.id);
      return isTerminal(t.state) ? t : undefined;
    });
    assert.equal(done.state, "SUCCEEDED");
    assert.deepEqual(done.result, { hi: 1 });
    const events = await client.events(first.task.id);
    assert.deepEqual(
      events.filter((e) => !e.is_progress).map((e) => e.state),
      ["QUEUED", "RUNNING", "SUCCEEDED"],
    );
    const later = await client.events(first.task.id, { after: events[0].cursor, limit: 1 });
    assert.equal(later.length, 1);
    assert.equal(later[0].cursor, events[1].cursor);
  });

  test("submitAndWait over HTTP answers the terminal task, failed ones too", async () => {
    const ok = await client.submitAndWait({ task_type: "system.debug.echo", params: { x: 2 } }, { via: "http" });
    assert.equal(ok.state, "SUCCEEDED");
    assert.deepEqual(ok.result, { x: 2 });
    const failed = await client.submitAndWait(
      { task_type: "system.debug.fail", params: { message: "on purpose", retryable: false } },
      { via: "http" },
    );
    assert.equal(failed.state, "FAILED");
    assert.match(failed.error, /on purpose/);
  });

  test("list filters and pages; listAll walks every page", async () => {
    const ids = [];
    for (let i = 0; i < 7; i++) {
      ids.push((await client.submit({ task_type: "system.debug.sleep", params: { ms: 60_000 } })).task.id);
    }
    const page = await client.list({ type_prefix: "system.debug.sleep", page_size: 3 });
    assert.equal(page.tasks.length, 3);
    assert.notEqual(page.next_page_token, "");
    // Newest first.
    assert.deepEqual(page.tasks.map((t) => t.id), ids.slice(-3).reverse());
    const all = [];
    for await (const t of client.listAll({ type_prefix: "system.debug.sleep", page_size: 3 })) all.push(t.id);
    assert.deepEqual(all, [...ids].reverse());
    const cancelled = await client.cancel(ids[0], "not needed");
    assert.ok(["CANCELLED", "RUNNING", "QUEUED"].includes(cancelled.state), cancelled.state);
    await eventually("cancel to land", async () => (await client.get(ids[0])).state === "CANCELLED");
    const byState = await client.list({ state: ["CANCELLED"], type_prefix: "system.debug.sleep" });
    assert.deepEqual(byState.tasks.map((t) => t.id), [ids[0]]);
    for (const id of ids.slice(1)) await client.cancel(id);
  });

  test("taskTypes, status, scale and usage", async () => {
    const types = await client.taskTypes("system.debug.");
    const names = types.map((t) => t.task_type);
    assert.ok(names.includes("system.debug.echo"), names.join());
    assert.deepEqual(names, [...names].sort());
    assert.ok(names.every((n) => n.startsWith("system.debug.")));
    const sleep = types.find((t) => t.task_type === "system.debug.sleep");
    assert.equal(typeof sleep.params_schema, "object");
    const status = await client.status();
    assert.equal(typeof status.node_id, "string");
    const system = status.supervisors.find((s) => s.name === "system");
    const monitor = system.pools.find((p) => p.worker_kind === "monitor");
    const pool = await client.scale("system", "monitor", monitor.target_size + 1);
    assert.equal(pool.worker_kind, "monitor");
    assert.equal(pool.target_size, monitor.target_size + 1);
    await assert.rejects(client.scale("system", "no-such-pool", 1), NotFoundError);

    await client.submitAndWait(
      { task_type: "system.debug.echo", params: { usage: { model: "m-sdk", tokens_in: 7, tokens_out: 3 } } },
      { via: "http" },
    );
    const report = await client.usage();
    assert.match(report.day, /^\d{4}-\d{2}-\d{2}$/);
    const row = report.usage.find((u) => u.model === "m-sdk");
    assert.deepEqual([row.tenant, row.tokens_in, row.tokens_out], ["default", 7, 3]);
    await assert.rejects(client.usage({ day: "yesterday" }), InvalidArgumentError);
  });

  test("workflows: register, list, get, signal and approve", async () => {
    const reg = await client.registerWorkflow(FLOW);
    assert.equal(reg.created, true);
    assert.equal(reg.workflow.task_type, "workflow.sdkflow.run");
    assert.equal((await client.registerWorkflow(FLOW)).created, false);
    const clash = await client.registerWorkflow({ ...FLOW, description: "another" }).catch((e) => e);
    assert.ok(clash instanceof AlreadyExistsError, String(clash));
    assert.equal(clash.status, 409);
    assert.deepEqual((await client.workflows()).map((w) => w.name), ["sdkflow"]);
    assert.equal((await client.workflows("sdkflow")).length, 1);
    const got = await client.workflow("sdkflow", 1);
    assert.equal(got.version, 1);
    assert.equal(got.description, "signal, approve, echo");
    await assert.rejects(client.workflow("nope"), NotFoundError);

    const { task } = await client.submit({ task_type: "workflow.sdkflow.run", params: {} });
    await eventually("the instance to wait for go", async () => {
      const t = await client.get(task.id);
      return t.steps.find((s) => s.id === "go")?.state === "WAITING";
    });
    const sent = await client.signal(task.id, "go", { colour: "green" });
    assert.equal(typeof sent.seq, "number");
    assert.equal(sent.task.id, task.id);
    await eventually("the approval to wait", async () => {
      const t = await client.get(task.id);
      return t.steps.find((s) => s.id === "review")?.waiting[0]?.kind === "approval";
    });
    await assert.rejects(client.signal(task.id, "nothing-waits"), InvalidArgumentError);
    await client.approve(task.id, "review", { decision: "approve", comment: "fine" });
    const done = await eventually("the instance to finish", async () => {
      const t = await client.get(task.id);
      return isTerminal(t.state) ? t : undefined;
    });
    assert.equal(done.state, "SUCCEEDED", JSON.stringify(done));
    assert.deepEqual(done.steps.find((s) => s.id === "echo").output, { got: { colour: "green" } });
  });

  test("typed errors: 404, 400, wrong tenant, wrong role, bad token, 409, 429, 504, unreachable", async () => {
    const unknown = "01932d3c-0000-7000-8000-000000000000";
    const e404 = await client.get(unknown).catch((e) => e);
    assert.ok(e404 instanceof NotFoundError && e404 instanceof CadreError, String(e404));
    assert.equal(e404.status, 404);
    assert.equal(e404.code, "not_found");

    const e400 = await client.submit({ task_type: "system.debug.sleep", params: { ms: "long" } }).catch((e) => e);
    assert.ok(e400 instanceof InvalidArgumentError, String(e400));
    assert.equal(e400.status, 400);
    assert.match(e400.message, /ms/);
    await assert.rejects(client.list({ page_size: 5000 }), (e) => e instanceof InvalidArgumentError && e.status === 400);
    await assert.rejects(client.list({ state: "SLEEPY" }), InvalidArgumentError);

    const mine = await client.submit({ task_type: "system.debug.echo", params: {} });
    const acme = new CadreClient({ webSocket: WEBSOCKET, baseUrl: node.http, token: node.token("acme", "operator") });
    const other = await acme.get(mine.task.id).catch((e) => e);
    assert.ok(other instanceof NotFoundError, String(other));
    assert.equal(other.status, 404);
    await assert.rejects(acme.cancel(mine.task.id), NotFoundError);

    const observer = new CadreClient({ webSocket: WEBSOCKET, baseUrl: node.http, token: node.token("default", "observer") });
    const e403 = await observer.submit({ task_type: "system.debug.echo", params: {} }).catch((e) => e);
    assert.ok(e403 instanceof PermissionDeniedError, String(e403));
    assert.equal(e403.status, 403);
    assert.equal(e403.code, "permission_denied");
    assert.equal((await observer.get(mine.task.id)).id, mine.task.id, "observers may read");

    const bad = new CadreClient({ webSocket: WEBSOCKET, baseUrl: node.http, token: "not-a-token" });
    const e401 = await bad.whoami().catch((e) => e);
    assert.ok(e401 instanceof UnauthenticatedError, String(e401));
    assert.equal(e401.status, 401);
    const none = new CadreClient({ webSocket: WEBSOCKET, baseUrl: node.http, token: "" });
    await assert.rejects(none.whoami(), UnauthenticatedError);

    const e409 = await client.signal(mine.task.id, "go").catch((e) => e);
    assert.ok(e409 instanceof FailedPreconditionError, String(e409));
    assert.equal(e409.status, 409);

    const slow = new CadreClient({ webSocket: WEBSOCKET, baseUrl: node.http, token: node.token("slow", "operator") });
    let e429;
    for (let i = 0; i < 5 && !e429; i++) {
      e429 = await slow.submit({ task_type: "system.debug.echo", params: {} }).then(() => undefined, (e) => e);
    }
    assert.ok(e429 instanceof ResourceExhaustedError, String(e429));
    assert.equal(e429.status, 429);
    assert.equal(e429.code, "resource_exhausted");
    assert.ok(e429.retryAfter >= 1, `retryAfter ${e429.retryAfter}`);

    const late = await client
      .submitAndWait({ task_type: "system.debug.sleep", params: { ms: 60_000 } }, { via: "http", wait_ms: 100 })
      .catch((e) => e);
    assert.ok(late instanceof DeadlineExceededError, String(late));
    assert.equal(late.status, 504);
    for await (const t of client.listAll({ type_prefix: "system.debug.sleep", state: ["QUEUED", "RUNNING"] })) {
      await client.cancel(t.id);
    }

    const gone = new CadreClient({ baseUrl: "http://127.0.0.1:9", token: "x" });
    const e0 = await gone.whoami().catch((e) => e);
    assert.ok(e0 instanceof UnavailableError, String(e0));
    assert.equal(e0.status, 0);
  });
});
