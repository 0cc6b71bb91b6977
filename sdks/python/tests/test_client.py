"""The blocking Client against a real node: every operation, and the typed errors."""

from __future__ import annotations

import threading
from collections.abc import Iterator
import uuid

import pytest

import cadre_sdk
from cadre_sdk import Client, RetryPolicy, TaskState

from conftest import CuttingProxy, Node, eventually
from workflows import greeting


@pytest.fixture
def client(node: Node, tenant: str) -> Iterator[Client]:
    with Client(node.grpc, node.token(tenant, "operator")) as c:
        yield c


def test_submit_and_wait_decodes_params_and_result(client: Client) -> None:
    params = {"text": "héllo", "n": [1, 2.5, None], "nested": {"ok": True}}
    task = client.submit_and_wait("system.debug.echo", params, priority=7)
    assert task.state is TaskState.SUCCEEDED, task
    assert task.params == params
    assert task.result == params
    assert task.priority == 7
    assert task.attempt == 1
    assert task.worker_kind == "monitor" and task.supervisor == "system"
    assert task.idempotency_key.startswith("sdk-"), "a key is generated when none is given"


def test_submit_get_and_idempotency(client: Client) -> None:
    key = f"k-{uuid.uuid4()}"
    retry = RetryPolicy(max_attempts=2, initial_backoff_ms=10, max_backoff_ms=20, multiplier=1.5)
    first = client.submit("system.debug.echo", {"x": 1}, timeout_ms=5000, idempotency_key=key, retry=retry)
    assert first.created
    again = client.submit("system.debug.echo", {"x": 1}, idempotency_key=key)
    assert not again.created and again.id == first.id
    got = client.get(first.id)
    assert got.id == first.id and got.idempotency_key == key
    assert got.timeout_ms == 5000
    assert got.retry == retry
    assert client.wait(first.id).result == {"x": 1}


def test_list_pages_filters_and_iterates(client: Client) -> None:
    ids = [client.submit("system.debug.echo", {"i": i}).id for i in range(5)]
    for i in ids:
        client.wait(i)
    page = client.list_tasks(page_size=2)
    assert [t.id for t in page.tasks] == ids[::-1][:2], "newest first"
    assert page.next_page_token
    assert [t.id for t in client.iter_tasks(page_size=2)] == ids[::-1]
    assert [t.id for t in client.iter_tasks(states=[TaskState.SUCCEEDED], task_type_prefix="system.debug")] == ids[::-1]
    assert list(client.iter_tasks(states=["FAILED"])) == []
    assert list(client.iter_tasks(task_type_prefix="intelligence.")) == []


def test_cancel_ends_a_running_task(client: Client) -> None:
    sub = client.submit("system.debug.sleep", {"ms": 60000})
    eventually("running", lambda: client.get(sub.id).state is TaskState.RUNNING)
    client.cancel(sub.id, reason="no longer needed")
    done = client.wait(sub.id)
    assert done.state is TaskState.CANCELLED
    assert "no longer needed" in done.error


def test_watch_one_task_streams_its_events_in_order_and_ends(client: Client) -> None:
    sub = client.submit("system.debug.sleep", {"ms": 600})
    events = list(client.watch(sub.id))
    assert events[0].state is TaskState.QUEUED and events[0].seq == 1
    assert events[-1].state is TaskState.SUCCEEDED and events[-1].is_terminal
    assert any(e.is_progress for e in events), [e.message for e in events]
    assert [e.seq for e in events] == sorted(e.seq for e in events)
    cursors = [e.cursor for e in events]
    assert cursors == sorted(set(cursors))
    # From a cursor: only what came after it.
    later = list(client.watch(sub.id, after_cursor=cursors[1]))
    assert [e.cursor for e in later] == cursors[2:]


def test_watch_by_prefix_sees_live_tasks_of_the_tenant(client: Client) -> None:
    seen: list[cadre_sdk.TaskEvent] = []
    stream = client.watch(task_type_prefix="system.debug.echo")

    def follow() -> None:
        for e in stream:
            seen.append(e)
            if e.is_terminal:
                return

    t = threading.Thread(target=follow, daemon=True)
    t.start()
    sub = client.submit("system.debug.echo", {"live": True})
    t.join(15)
    assert not t.is_alive()
    assert {e.task_id for e in seen} == {sub.id}
    assert seen[-1].result == {"live": True}


def test_live_only_watch_skips_stored_events(client: Client) -> None:
    old = client.submit_and_wait("system.debug.echo", {"old": True})
    seen: list[cadre_sdk.TaskEvent] = []

    def follow() -> None:
        for e in client.watch(task_type_prefix="system.debug.", live_only=True):
            seen.append(e)
            if e.is_terminal:
                return

    t = threading.Thread(target=follow, daemon=True)
    t.start()
    # New tasks until the watch (open by then) has seen one end.
    new: list[str] = []
    while t.is_alive() and len(new) < 100:
        new.append(client.submit("system.debug.echo", {"new": len(new)}).id)
        t.join(0.2)
    assert not t.is_alive()
    assert seen and {e.task_id for e in seen} <= set(new), f"nothing of {old.id}"
    with pytest.raises(cadre_sdk.InvalidArgument):
        next(iter(client.watch(live_only=True, after_cursor=1)))


def test_task_types_lists_schemas(client: Client) -> None:
    types = {t.task_type: t for t in client.task_types()}
    sleep = types["system.debug.sleep"]
    assert sleep.executor == "sleep" and sleep.worker_kind == "monitor"
    assert "ms" in sleep.params_schema["properties"]
    only = client.task_types("system.debug.")
    assert only and all(t.task_type.startswith("system.debug.") for t in only)


def test_workflows_register_list_get_start_and_approve(node: Node, tenant: str) -> None:
    name = f"greet{uuid.uuid4().hex[:8]}"
    with Client(node.grpc, node.token(tenant, "supervisor")) as sup, Client(
        node.grpc, node.token(tenant, "operator")
    ) as op:
        reg = sup.register_workflow(greeting(name))
        assert reg.created and reg.workflow.version == 1
        assert reg.workflow.task_type == f"workflow.{name}.run"
        assert not sup.register_workflow(greeting(name)).created
        changed = greeting(name)
        changed["description"] = "something else"
        with pytest.raises(cadre_sdk.AlreadyExists):
            sup.register_workflow(changed)
        assert name in {w.name for w in op.list_workflows()}
        assert [w.version for w in op.list_workflows(name)] == [1]
        assert op.get_workflow(name).definition["steps"][0]["id"] == "draft"
        with pytest.raises(cadre_sdk.NotFound):
            op.get_workflow(name, 9)

        run = op.start_workflow(name, {"who": "Ada"})

        def waiting() -> bool:
            steps = {s.id: s for s in op.get(run.id).steps}
            return bool(steps["review"].waiting)

        eventually("the approval step waits", waiting)
        signalled = op.approve(run.id, "review", comment="lgtm")
        assert signalled.task.id == run.id and signalled.seq >= 1
        done = op.wait(run.id)
        assert done.state is TaskState.SUCCEEDED, done
        assert done.result == {"sent": "Hello, Ada!", "comment": "lgtm"}


def test_typed_errors(node: Node, client: Client, tenant: str) -> None:
    with pytest.raises(cadre_sdk.NotFound) as nf:
        client.get(str(uuid.uuid4()))
    assert nf.value.message and nf.value.code.name == "NOT_FOUND"
    with pytest.raises(cadre_sdk.InvalidArgument):
        client.get("not-a-task-id")
    with pytest.raises(cadre_sdk.InvalidArgument) as bad:
        client.submit("system.debug.sleep", {"ms": "soon"})
    assert "/ms" in bad.value.message, bad.value.message
    with pytest.raises(cadre_sdk.CadreError):
        client.submit("no.such.type", {})
    mine = client.submit("system.debug.echo", {}).id
    # Another tenant's task does not exist for the caller.
    with Client(node.grpc, node.token(f"{tenant}x", "operator")) as other:
        with pytest.raises(cadre_sdk.NotFound):
            other.get(mine)
        with pytest.raises(cadre_sdk.NotFound):
            other.cancel(mine)
    # Too low a role.
    with Client(node.grpc, node.token(tenant, "observer")) as observer:
        assert observer.get(mine).id == mine
        with pytest.raises(cadre_sdk.PermissionDenied):
            observer.submit("system.debug.echo", {})
    with Client(node.grpc, node.token(tenant, "operator")) as op:
        with pytest.raises(cadre_sdk.PermissionDenied):
            op.register_workflow(greeting("nope"))
    with Client(node.grpc, "not-a-credential") as anon:
        with pytest.raises(cadre_sdk.Unauthenticated):
            anon.get(mine)
    with pytest.raises(TypeError):
        client.submit("system.debug.echo", {"bad": object()})


def test_unreachable_node_is_unavailable_after_the_retry_budget() -> None:
    from conftest import free_port

    with Client(f"http://127.0.0.1:{free_port()}", "t", retry_budget=0.5) as c:
        with pytest.raises(cadre_sdk.Unavailable):
            c.submit("system.debug.echo", {})


def test_submit_retried_after_unavailable_keeps_one_task(node: Node, tenant: str) -> None:
    proxy = CuttingProxy(int(node.grpc.rsplit(":", 1)[1]))
    try:
        with Client(f"127.0.0.1:{proxy.port}", node.token(tenant, "operator")) as c:
            c.task_types("system.debug.echo")  # the connection is up before the cut
            proxy.cut_next_call()
            sub = c.submit("system.debug.echo", {"once": True})
            assert proxy.cuts == 1, "the first try was cut off after the node stored the task"
            assert proxy.connections >= 2, "the retry came over a new connection"
            assert not sub.created, "the retry found the task the first try created"
            tasks = list(c.iter_tasks())
            assert [t.id for t in tasks] == [sub.id]
            assert tasks[0].idempotency_key.startswith("sdk-")
    finally:
        proxy.close()


def test_connect_reads_the_environment(node: Node, tenant: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CADRE_ENDPOINT", node.grpc)
    monkeypatch.setenv("CADRE_TOKEN", node.token(tenant, "operator"))
    with cadre_sdk.connect() as c:
        assert c.submit_and_wait("system.debug.echo", {"env": 1}).result == {"env": 1}
    with pytest.raises(ValueError):
        Client("http://127.0.0.1:1/some/path")
