"""A remote worker with the SDK: serves two task types, one sync and one async, until SIGTERM
or Ctrl-C (then it finishes what it runs and exits).

Route the types to executor `remote` in the node's config first, e.g.

    [routes."intelligence.remote.upper"]
    supervisor = "intelligence"
    worker = "research"
    executor = "remote"

    CADRE_TOKEN=<supervisor credential> python serve_worker.py
    cadre submit intelligence.remote.upper '{"text": "hello"}' --wait
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import cadre_sdk
from cadre_sdk import TaskContext, TaskError

worker = cadre_sdk.Worker(name="example-py", concurrency=4, drain_grace=30)


@worker.task("intelligence.remote.upper")
def upper(ctx: TaskContext, params: dict[str, Any]) -> dict[str, Any]:
    """A sync handler: runs in the worker's thread pool."""
    text = params.get("text")
    if not isinstance(text, str):
        raise TaskError("params.text: a string is required")  # fails the task, no retry
    for i in range(3):
        if ctx.cancelled:
            return {}  # the node cancelled it: nothing is sent
        ctx.progress(f"step {i + 1} of 3", (i + 1) / 3)
        time.sleep(0.2)
    return {"text": text.upper()}


@worker.task("intelligence.remote.count")
async def count(ctx: TaskContext, params: dict[str, Any]) -> dict[str, Any]:
    """An async handler: a cancel from the node raises CancelledError at its next await."""
    words = str(params.get("text", "")).split()
    await asyncio.sleep(0.1)
    ctx.progress("counted", 1.0)
    return {"words": len(words)}


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    worker.run()
