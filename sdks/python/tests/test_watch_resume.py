"""Watch resumes from its last cursor when the node goes away and comes back: killed, then
started again on the same data dir and gRPC port. Nothing is yielded twice, nothing is lost."""

from __future__ import annotations

import asyncio
import threading

from cadre_sdk import AsyncClient, Client, TaskEvent

from conftest import Node, eventually


def reference(c: Client, task_ids: set[str]) -> list[int]:
    """The cursors of every event of these tasks, from a fresh watch of the whole log."""
    out: list[int] = []
    ended: set[str] = set()
    for e in c.watch(task_type_prefix="system.debug."):
        if e.task_id in task_ids:
            out.append(e.cursor)
            if e.is_terminal:
                ended.add(e.task_id)
        if ended == task_ids:
            return out
    raise AssertionError("unreachable")


def check(seen: list[TaskEvent], c: Client, task_ids: set[str]) -> None:
    cursors = [e.cursor for e in seen]
    assert cursors == sorted(set(cursors)), f"in order, none twice: {cursors}"
    assert {e.task_id for e in seen} == task_ids
    assert cursors == reference(c, task_ids), "no event lost across the restart"


def test_sync_watch_resumes_across_a_restart(restartable: Node, tenant: str) -> None:
    node = restartable
    with Client(node.grpc, node.token(tenant, "operator"), retry_budget=30) as c:
        seen: list[TaskEvent] = []

        def follow() -> None:
            for e in c.watch(task_type_prefix="system.debug."):
                seen.append(e)
                if sum(x.is_terminal for x in seen) == 2:
                    return

        t = threading.Thread(target=follow, daemon=True)
        t.start()
        first = c.submit("system.debug.sleep", {"ms": 200}).id
        eventually("the first task's end", lambda: any(e.is_terminal for e in seen))
        node.restart()
        second = c.submit("system.debug.sleep", {"ms": 200}).id
        t.join(30)
        assert not t.is_alive(), f"the watch resumed and saw the second task: {seen}"
        check(seen, c, {first, second})


async def test_async_watch_resumes_across_a_restart(restartable: Node, tenant: str) -> None:
    node = restartable
    token = node.token(tenant, "operator")
    async with AsyncClient(node.grpc, token, retry_budget=30) as c:
        seen: list[TaskEvent] = []

        async def follow() -> None:
            async for e in c.watch(task_type_prefix="system.debug."):
                seen.append(e)
                if sum(x.is_terminal for x in seen) == 2:
                    return

        watcher = asyncio.create_task(follow())
        first = (await c.submit("system.debug.sleep", {"ms": 200})).id
        for _ in range(300):
            if any(e.is_terminal for e in seen):
                break
            await asyncio.sleep(0.05)
        await asyncio.to_thread(node.restart)
        second = (await c.submit("system.debug.sleep", {"ms": 200})).id
        await asyncio.wait_for(watcher, 30)
        # A one-task watch from before the restart also resumes and ends with its task.
        events = [e async for e in c.watch(second)]
        assert events[-1].is_terminal
    with Client(node.grpc, token) as sc:
        check(seen, sc, {first, second})
