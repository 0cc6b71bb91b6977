// The test harness: a real `cadre serve` child process on free ports in a temp dir (as the Rust
// harness, orchestrator/cadre/tests/it/common.rs), credentials made with the `cadre` CLI, and a
// poll-until helper. No part of cadre is mocked.

import { spawn, execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync, openSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";

/** The cadre binary under test. */
export const CADRE_BIN = process.env.CADRE_BIN || "/work/main/target/debug/cadre";

/** The WebSocket the tests' clients use: "ws", "global" (CADRE_TEST_WEBSOCKET) or "auto". */
export const WEBSOCKET = process.env.CADRE_TEST_WEBSOCKET || "auto";

/** Polls `f` every 20 ms until it returns a value other than undefined/false, or throws. */
export async function eventually(what, f, patienceMs = 30_000) {
  const deadline = Date.now() + patienceMs;
  for (;;) {
    const v = await f();
    if (v !== undefined && v !== false && v !== null) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for: ${what}`);
    await sleep(20);
  }
}

/** A running node. */
export class TestNode {
  /** Starts a node in `dir` (a new temp dir by default); `extraToml` is appended to its config. */
  static async start({ extraToml = "", dir, httpAddr = "127.0.0.1:0" } = {}) {
    const owned = dir === undefined;
    dir ??= mkdtempSync(join(tmpdir(), "cadre-ts-"));
    const node = new TestNode(dir, owned);
    await node.spawn(extraToml, httpAddr);
    return node;
  }

  constructor(dir, owned) {
    this.dir = dir;
    this.owned = owned;
    this.data = join(dir, "data");
  }

  async spawn(extraToml, httpAddr) {
    const config = join(this.dir, "cadre.toml");
    writeFileSync(config, `[node]\ndata_dir = ${JSON.stringify(this.data)}\n[log]\nlevel = "warn"\n${extraToml}\n`);
    rmSync(join(this.data, "endpoints.json"), { force: true });
    const log = openSync(join(this.dir, "serve.log"), "a");
    const env = { ...process.env };
    delete env.RUST_LOG;
    delete env.CADRE_TOKEN;
    this.child = spawn(
      CADRE_BIN,
      ["serve", "--grpc-addr", "127.0.0.1:0", "--http-addr", httpAddr, "--config", config],
      { cwd: this.dir, env, stdio: ["ignore", "ignore", log] },
    );
    this.exited = new Promise((resolve) => {
      this.child.once("exit", (code, signal) => resolve({ code, signal }));
      this.child.once("error", (error) => resolve({ error: `${error.message} (CADRE_BIN=${CADRE_BIN})` }));
    });
    let early;
    this.exited.then((e) => (early = e));
    const ep = await eventually("endpoints.json", () => {
      if (early) throw new Error(`cadre serve exited early: ${JSON.stringify(early)}\n${this.log()}`);
      try {
        const ep = JSON.parse(readFileSync(join(this.data, "endpoints.json"), "utf8"));
        return ep.pid === this.child.pid ? ep : undefined;
      } catch {
        return undefined;
      }
    });
    this.http = ep.http;
    this.grpc = ep.grpc;
    this.credential = readFileSync(join(this.data, "credentials"), "utf8").trim();
  }

  /** The node's stderr so far. */
  log() {
    return existsSync(join(this.dir, "serve.log")) ? readFileSync(join(this.dir, "serve.log"), "utf8") : "";
  }

  /** `host:port` of the HTTP listener (to restart on the same port). */
  get httpAddr() {
    return this.http.replace(/^http:\/\//, "");
  }

  /** Runs the `cadre` CLI on this node's data dir; returns its stdout, trimmed. */
  cli(args) {
    const env = { ...process.env };
    delete env.CADRE_TOKEN;
    return execFileSync(CADRE_BIN, ["--data-dir", this.data, ...args], { env, encoding: "utf8" }).trim();
  }

  /** A JWT for `tenant` with `role`. */
  token(tenant, role) {
    return this.cli(["token", "issue", "--tenant", tenant, "--role", role, "--ttl", "1h"]);
  }

  /** SIGTERM and wait for the exit. */
  async stop() {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill("SIGTERM");
    const e = await this.exited;
    return e;
  }

  /** Stops the node and removes its temp dir (when the harness made it). */
  async dispose() {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill("SIGKILL");
    await this.exited;
    if (this.owned) rmSync(this.dir, { recursive: true, force: true });
  }

  /** Stops and starts the node again on the same data dir and HTTP port. */
  async restart(extraToml = "") {
    const addr = this.httpAddr;
    await this.stop();
    await this.spawn(extraToml, addr);
  }
}

/** The cursors of events, in order. */
export function cursors(events) {
  return events.map((e) => e.cursor);
}
