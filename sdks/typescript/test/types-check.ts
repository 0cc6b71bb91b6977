// Compiled, never run (`npm run typecheck:tests`): what a strict TypeScript consumer writes
// type-checks against the emitted declarations in dist/.

import {
  CadreClient,
  CadreError,
  ResourceExhaustedError,
  type Submission,
  type Task,
  type TaskEvent,
  type TaskState,
  type Watch,
  isTerminal,
} from "../dist/index.js";

export async function consumer(): Promise<void> {
  const client = new CadreClient({ baseUrl: "http://127.0.0.1:8080", token: "t", webSocket: "auto" });
  const { task, created }: { task: Task; created: boolean } = await client.submit({
    task_type: "system.debug.echo",
    params: { hello: [1, "two", null] },
    retry: { max_attempts: 3 },
  });
  const state: TaskState = task.state;
  const done: Task = await client.submitAndWait({ task_type: "system.debug.echo" }, { via: "http", wait_ms: 1000 });
  const page = await client.list({ state: ["RUNNING", "QUEUED"], page_size: 10 });
  for await (const t of client.listAll({ type_prefix: "system." })) t.id.toUpperCase();
  const watch: Watch = client.watch({ task_id: task.id, cursor: 0 }, { signal: AbortSignal.timeout(10) });
  for await (const ev of watch) {
    const e: TaskEvent = ev;
    if (isTerminal(e.state)) break;
  }
  const session = client.openSession({ maxInFlight: 8 });
  const sub: Submission = await session.submit({ task_type: "system.debug.sleep", params: { ms: 1 } });
  for await (const ev of sub.events) ev.cursor.toFixed();
  (await sub.result).result;
  await session.close();
  try {
    await client.signal(task.id, "go", { any: "json" });
    await client.approve(task.id, "review", { decision: "approve" });
  } catch (e) {
    if (e instanceof ResourceExhaustedError) e.retryAfter?.toFixed();
    if (e instanceof CadreError) {
      switch (e.code) {
        case "not_found":
        case "permission_denied":
          e.status.toFixed();
      }
    }
  }
  void created, state, done, page;
}
