"""A worker process for the SIGTERM test: serves one task type with a slow handler and says
on stdout what it does (the SDK's log lines)."""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

import cadre_sdk

logging.basicConfig(stream=sys.stdout, level=logging.INFO, format="%(message)s")
endpoint, token, kind, grace = sys.argv[1:5]
worker = cadre_sdk.Worker(endpoint, token, name="drainer", concurrency=2, drain_grace=float(grace))


@worker.task(kind)
def slow(ctx: cadre_sdk.TaskContext, params: Any) -> dict[str, Any]:
    """Ten steps of params["ms"]/10 ms each, with progress."""
    for i in range(10):
        ctx.progress(f"step {i + 1} of 10", (i + 1) / 10)
        if ctx.sleep(params.get("ms", 1000) / 10_000):
            break
    return {"slept": params.get("ms", 1000), "cancelled": ctx.cancelled}


worker.run()
print(f"exited cleanly after {worker.tasks_done} task(s)", flush=True)
