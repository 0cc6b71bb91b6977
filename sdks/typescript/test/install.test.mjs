// The package installs from its folder into a consumer project (`npm install <folder>`, as the
// README says) and works there: the consumer submits over the socket to a real node, with the
// address and credential from CADRE_URL and CADRE_TOKEN.

import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

import { TestNode } from "./harness.mjs";

const sdk = join(dirname(fileURLToPath(import.meta.url)), "..");
let node;
let consumer;

before(async () => {
  node = await TestNode.start();
  consumer = mkdtempSync(join(tmpdir(), "cadre-ts-consumer-"));
});
after(async () => {
  await node?.dispose();
  if (consumer) rmSync(consumer, { recursive: true, force: true });
});

test("npm install <folder> gives a consumer a working, typed package", () => {
  writeFileSync(join(consumer, "package.json"), JSON.stringify({ name: "consumer", private: true, type: "module" }));
  execFileSync("npm", ["install", "--no-audit", "--no-fund", "--prefer-offline", sdk], { cwd: consumer, stdio: "pipe" });
  writeFileSync(
    join(consumer, "main.js"),
    `import { CadreClient, NotFoundError } from "@cadre/sdk";
const client = new CadreClient();
const task = await client.submitAndWait({ task_type: "system.debug.echo", params: { from: "consumer" } });
const missing = await client.get("01932d3c-0000-7000-8000-000000000000").catch((e) => e);
console.log(JSON.stringify({ state: task.state, result: task.result, typed: missing instanceof NotFoundError }));
await client.close();
`,
  );
  const env = { ...process.env, CADRE_URL: node.http, CADRE_TOKEN: node.credential };
  const out = execFileSync(process.execPath, ["main.js"], { cwd: consumer, env, encoding: "utf8" });
  assert.deepEqual(JSON.parse(out), { state: "SUCCEEDED", result: { from: "consumer" }, typed: true });
});
