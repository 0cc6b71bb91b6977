"""The asyncio client against a real node: every operation, and the typed errors."""

from __future__ import annotations

import asyncio
import uuid

import pytest

import cadre_sdk
from cadre_sdk import AsyncClient, RetryPolicy, TaskState

from conftest import CuttingProxy, Node, free_port
from workflows import greeting


async def test_submit_get_wait_list_and_cancel(node: Node, tenant: str) -> None:
    async with AsyncClient(node.grpc, node.token(tenant, "operator")) as c:
        done = await c.submit_and_wait("system.debug.echo", {"a": [1, "b"]}, priority=3)
        assert done.state is TaskState.SUCCEEDED and done.result == {"a": [1, "b"]}

        key = f"k-{uuid.uuid4()}"
        retry = RetryPolicy(max_attempts=3, initial_backoff_ms=5, max_backoff_ms=10, multiplier=2.0)
        sub = await c.submit("system.debug.echo", {"b": 2}, idempotency_key=key, retry=retry, timeout_ms=4000)
        again = await c.submit("system.debug.echo", {"b": 2}, idempotency_key=key)
        assert sub.created and not again.created and again.id == sub.id
        got = await c.get(sub.id)
        assert got.retry == retry and got.timeout_ms == 4000 and got.idempotency_key == key
        assert (await c.wait(sub.id)).result == {"b": 2}

        sleeper = await c.submit("system.debug.sleep", {"ms": 60000})
        await c.cancel(sleeper.id, "stop")
        assert (await c.wait(sleeper.id)).state is TaskState.CANCELLED

        page = await c.list_tasks(page_size=1)
        assert len(page.tasks) == 1 and page.tasks[0].id == sleeper.id and page.next_page_token
        ids = [t.id async for t in c.iter_tasks(page_size=1)]
        assert ids == [sleeper.id, sub.id, done.id]
        assert [t.id async for t in c.iter_tasks(states=[TaskState.CANCELLED])] == [sleeper.id]


async def test_watch_and_task_types(node: Node, tenant: str) -> None:
    async with AsyncClient(node.grpc, node.token(tenant, "operator")) as c:
        sub = await c.submit("system.debug.sleep", {"ms": 500})
        events = [e async for e in c.watch(sub.id)]
        assert events[0].state is TaskState.QUEUED and events[-1].state is TaskState.SUCCEEDED
        assert any(e.is_progress for e in events)
        cursors = [e.cursor for e in events]
        assert cursors == sorted(set(cursors))
        assert [e.cursor async for e in c.watch(sub.id, after_cursor=cursors[0])] == cursors[1:]

        types = await c.task_types("system.debug.")
        assert "system.debug.echo" in {t.task_type for t in types}


async def test_workflow_signal_and_reject(node: Node, tenant: str) -> None:
    name = f"agreet{uuid.uuid4().hex[:8]}"
    async with AsyncClient(node.grpc, node.token(tenant, "supervisor")) as sup:
        reg = await sup.register_workflow(greeting(name))
        assert reg.created
        assert (await sup.get_workflow(name)).name == name
        assert name in {w.name for w in await sup.list_workflows()}
        run = await sup.start_workflow(name, {"who": "Grace"})
        for _ in range(200):
            steps = {s.id: s for s in (await sup.get(run.id)).steps}
            if steps["review"].waiting:
                break
            await asyncio.sleep(0.05)
        assert steps["review"].waiting[0].kind == "approval"
        await sup.reject(run.id, "review", comment="not now")
        done = await sup.wait(run.id)
        assert done.state is TaskState.FAILED, done
        assert "not now" in done.error or "reject" in done.error, done.error


async def test_typed_errors(node: Node, tenant: str) -> None:
    async with AsyncClient(node.grpc, node.token(tenant, "operator")) as c:
        with pytest.raises(cadre_sdk.NotFound):
            await c.get(str(uuid.uuid4()))
        with pytest.raises(cadre_sdk.InvalidArgument):
            await c.submit("system.debug.sleep", {"ms": -1})
        mine = (await c.submit("system.debug.echo", {})).id
    async with AsyncClient(node.grpc, node.token(f"{tenant}y", "operator")) as other:
        with pytest.raises(cadre_sdk.NotFound):
            await other.get(mine)
    async with AsyncClient(node.grpc, node.token(tenant, "observer")) as observer:
        with pytest.raises(cadre_sdk.PermissionDenied):
            await observer.submit("system.debug.echo", {})
    async with AsyncClient(node.grpc, "garbage") as anon:
        with pytest.raises(cadre_sdk.Unauthenticated):
            await anon.task_types()
    async with AsyncClient(f"127.0.0.1:{free_port()}", "t", retry_budget=0.5) as down:
        with pytest.raises(cadre_sdk.Unavailable):
            await down.submit("system.debug.echo", {})


async def test_submit_retried_after_unavailable_keeps_one_task(node: Node, tenant: str) -> None:
    proxy = CuttingProxy(int(node.grpc.rsplit(":", 1)[1]))
    try:
        async with AsyncClient(f"http://127.0.0.1:{proxy.port}", node.token(tenant, "operator")) as c:
            await c.task_types("system.debug.echo")
            proxy.cut_next_call()
            sub = await c.submit("system.debug.echo", {"once": "async"})
            assert proxy.cuts == 1 and not sub.created
            assert [t.id async for t in c.iter_tasks()] == [sub.id]
    finally:
        proxy.close()
