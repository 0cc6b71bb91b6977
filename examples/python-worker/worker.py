"""A cadre remote worker in Python, on the cadre Python SDK (sdks/python): connects to a node's
WorkerService, registers the task types it runs, and runs the tasks the node sends it, reporting
progress and results.

It runs one kind of work, text transforms: params {"text": str, "op": "reverse" | "upper" |
"lower", "delay_ms": int (optional, a pause per step, to watch progress)}, result
{"text": str, "op": str, "worker": str}.

    CADRE_TOKEN=<supervisor token> python worker.py --grpc 127.0.0.1:50051 \\
        --kinds intelligence.remote.text [--worker-id w1] [--concurrency 4] [--max-tasks N]

The SDK does the protocol: heartbeats, up to --concurrency tasks at once on threads, cancels,
reconnects with backoff when the connection drops, and a graceful drain on SIGTERM. A refusal
(bad credential, role too low, bad registration) ends it with exit code 1.
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any, Callable

try:
    import cadre_sdk
except ImportError:  # not pip-installed: use the SDK next to this example in the repository
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "sdks" / "python" / "src"))
    import cadre_sdk

from cadre_sdk import TaskContext, TaskError

#: Operations of the text task.
OPS: dict[str, Callable[[str], str]] = {
    "reverse": lambda s: s[::-1],
    "upper": str.upper,
    "lower": str.lower,
}


def run_text(ctx: TaskContext, params: Any) -> dict[str, Any] | None:
    """The text task: checks the params, runs four steps with progress, stops when cancelled."""
    if not isinstance(params, dict):
        raise TaskError("params must be an object")
    text, op = params.get("text"), params.get("op", "reverse")
    delay = params.get("delay_ms", 0)
    if not isinstance(text, str):
        raise TaskError("params.text: a string is required")
    if op not in OPS:
        raise TaskError(f"params.op: {op!r} is not one of {sorted(OPS)}")
    if not isinstance(delay, int) or not 0 <= delay <= 10_000:
        raise TaskError("params.delay_ms: an integer 0-10000 is required")
    steps = 4
    for i in range(steps):
        if ctx.sleep(delay / 1000):
            return None  # cancelled: the node ignores anything sent now
        ctx.progress(f"step {i + 1} of {steps}", (i + 1) / steps)
    return {"text": OPS[op](text), "op": op, "worker": ctx.worker_id}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--grpc", required=True, help="host:port (or http(s)://host:port) of the node's gRPC listener")
    p.add_argument("--kinds", required=True, help="comma-separated task types to run")
    p.add_argument("--token", default=os.environ.get("CADRE_TOKEN"), help="default: $CADRE_TOKEN")
    p.add_argument("--worker-id", default=f"{socket.gethostname()}-{os.getpid()}")
    p.add_argument("--concurrency", type=int, default=4, help="tasks at once (default 4)")
    p.add_argument("--max-tasks", type=int, default=0, help="exit after this many tasks (0: never)")
    p.add_argument("--ca-file", help="PEM CA to verify the node's TLS certificate (TLS on)")
    args = p.parse_args()
    if not args.token:
        p.error("no credential: pass --token or set CADRE_TOKEN")
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    if not kinds:
        p.error("--kinds names no task type")
    if not 1 <= args.concurrency <= 64:
        p.error("--concurrency must be 1-64")
    # The SDK logs what it does ("registered session ...", "task ...", "done <id>"): on stdout.
    logging.basicConfig(stream=sys.stdout, level=logging.INFO, format="%(message)s")

    worker = cadre_sdk.Worker(
        args.grpc,
        args.token,
        name=args.worker_id,
        concurrency=args.concurrency,
        max_tasks=args.max_tasks,
        ca_cert=Path(args.ca_file) if args.ca_file else None,
    )
    for kind in kinds:
        worker.register(kind, run_text)
    started = time.monotonic()
    try:
        worker.run()
    except cadre_sdk.CadreError as e:
        print(f"refused: {e.code.name}: {e.message}", flush=True)
        sys.exit(1)
    print(f"ran {worker.tasks_done} tasks in {time.monotonic() - started:.1f}s; exiting", flush=True)


if __name__ == "__main__":
    main()
