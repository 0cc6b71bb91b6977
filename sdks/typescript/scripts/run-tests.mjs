// Runs the test suite against the real binary twice: once with the `ws` package as the
// WebSocket, once with the runtime's global WebSocket (Node 22+, or Node 20's
// --experimental-websocket), so both transports of src/socket.ts are exercised. Ends with one
// summary line, "typescript: N passed, N failed".

import { spawn } from "node:child_process";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const files = (names) => names.map((n) => join("test", `${n}.test.mjs`));
const hasGlobal = typeof globalThis.WebSocket === "function";

const passes = [
  { websocket: "ws", flags: [], tests: files(["api", "watch", "session", "install"]) },
  {
    websocket: "global",
    flags: hasGlobal ? [] : ["--experimental-websocket"],
    tests: files(["watch", "session"]),
  },
];

/** Runs one pass, echoing its TAP output; resolves with its exit code and counts. */
function run(pass) {
  return new Promise((resolve) => {
    const child = spawn(
      process.execPath,
      [...pass.flags, "--test", "--test-reporter=tap", "--test-concurrency=1", ...pass.tests],
      { cwd: root, stdio: ["ignore", "pipe", "inherit"], env: { ...process.env, CADRE_TEST_WEBSOCKET: pass.websocket } },
    );
    let out = "";
    child.stdout.on("data", (chunk) => {
      process.stdout.write(chunk);
      out += chunk;
    });
    child.on("close", (code) => {
      const count = (what) => Number(out.match(new RegExp(`^# ${what} (\\d+)$`, "m"))?.[1] ?? 0);
      resolve({ code: code ?? 1, passed: count("pass"), failed: count("fail") });
    });
  });
}

let passed = 0;
let failed = 0;
let status = 0;
for (const pass of passes) {
  console.log(`# pass with the ${pass.websocket} WebSocket`);
  const r = await run(pass);
  passed += r.passed;
  failed += r.failed;
  if (r.code !== 0) {
    status = r.code;
    if (r.failed === 0) failed += 1; // the runner itself failed (a file that did not load)
  }
}
console.log(`typescript: ${passed} passed, ${failed} failed`);
process.exit(status);
