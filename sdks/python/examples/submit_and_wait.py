"""Submits a task, waits for its end, prints the result; then the same with asyncio.

    CADRE_ENDPOINT=http://127.0.0.1:50051 CADRE_TOKEN=<operator credential> \\
        python submit_and_wait.py [text]
"""

from __future__ import annotations

import asyncio
import sys

import cadre_sdk


def blocking(text: str) -> None:
    with cadre_sdk.Client() as client:  # endpoint and token from CADRE_ENDPOINT / CADRE_TOKEN
        task = client.submit_and_wait(
            "intelligence.text.keywords",
            {"text": text},
            timeout_ms=10_000,
            retry=cadre_sdk.RetryPolicy(max_attempts=2),
        )
        print(f"{task.id} {task.state.value}: {task.result if task.result is not None else task.error}")
        try:
            client.get("00000000-0000-0000-0000-000000000000")
        except cadre_sdk.NotFound as e:
            print(f"as expected, NotFound: {e.message}")


async def with_asyncio(text: str) -> None:
    async with cadre_sdk.AsyncClient() as client:
        submitted = await client.submit("intelligence.text.sentiment", {"text": text})
        task = await client.wait(submitted.id)
        print(f"{task.id} {task.state.value}: {task.result}")


if __name__ == "__main__":
    words = " ".join(sys.argv[1:]) or "cadre runs typed tasks for clients, and this client is glad"
    blocking(words)
    asyncio.run(with_asyncio(words))
