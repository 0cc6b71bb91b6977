"""The Worker API against a real node: tasks, errors, progress, concurrency, cancellation,
SIGTERM drain, reconnect after a node restart, refusals, and the repository's example worker."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import cadre_sdk
from cadre_sdk import Client, RetryPolicy, TaskContext, TaskError, TaskState, Worker

from conftest import REMOTE, REPO, Node, eventually

FAST_RETRY = RetryPolicy(max_attempts=2, initial_backoff_ms=10, max_backoff_ms=20, multiplier=1.0)


@pytest.fixture
def serve(node: Node) -> Iterator[Callable[[Worker], Worker]]:
    """Runs workers in background threads until the test ends, then stops them."""
    running: list[tuple[Worker, threading.Thread]] = []

    def start(worker: Worker) -> Worker:
        t = threading.Thread(target=worker.run, daemon=True)
        t.start()
        running.append((worker, t))
        eventually("the worker registered", lambda: worker.sessions >= 1)
        return worker

    yield start
    for worker, t in running:
        worker.stop()
    for worker, t in running:
        t.join(15)
        assert not t.is_alive(), "the worker stopped"


@pytest.fixture
def client(node: Node, tenant: str) -> Iterator[Client]:
    with Client(node.grpc, node.token(tenant, "operator")) as c:
        yield c


def test_runs_tasks_with_progress_results_and_errors(node: Node, serve: Any, client: Client) -> None:
    kind = REMOTE[0]
    worker = Worker(node.grpc, node.token("default", "supervisor"), name="py-a", concurrency=2)

    @worker.task(kind)
    def upper(ctx: TaskContext, params: dict[str, Any]) -> dict[str, Any]:
        ctx.progress("halfway", 0.5)
        if params.get("bad"):
            raise TaskError("params.bad: not allowed")
        if params.get("bug"):
            raise RuntimeError("boom")
        return {"text": params["text"].upper(), "worker": ctx.worker_id, "attempt": ctx.attempt}

    serve(worker)
    ok = client.submit_and_wait(kind, {"text": "abc"})
    assert ok.state is TaskState.SUCCEEDED, ok
    assert ok.result == {"text": "ABC", "worker": "py-a", "attempt": 1}
    progress = [(e.message, e.progress) for e in client.watch(ok.id) if e.is_progress]
    assert ("halfway", 0.5) in progress, progress

    bad = client.submit_and_wait(kind, {"bad": True}, retry=FAST_RETRY)
    assert bad.state is TaskState.FAILED and bad.attempt == 1, "a TaskError is not retried"
    assert "remote worker py-a: params.bad: not allowed" in bad.error, bad.error

    bug = client.submit_and_wait(kind, {"bug": True}, retry=FAST_RETRY)
    assert bug.state is TaskState.FAILED and bug.attempt == 2, "another exception is retried"
    assert "RuntimeError: boom" in bug.error, bug.error


@pytest.mark.parametrize("style", ["sync", "async"])
def test_concurrency_bound_is_respected(node: Node, serve: Any, client: Client, style: str) -> None:
    kind = REMOTE[1] if style == "sync" else REMOTE[2]
    worker = Worker(node.grpc, node.token("default", "supervisor"), name=f"py-{style}", concurrency=2)
    lock = threading.Lock()
    now, peak = [0], [0]

    def enter() -> None:
        with lock:
            now[0] += 1
            peak[0] = max(peak[0], now[0])

    def leave() -> None:
        with lock:
            now[0] -= 1

    if style == "sync":
        @worker.task(kind)
        def work(ctx: TaskContext, params: Any) -> int:
            enter()
            time.sleep(0.3)
            leave()
            return int(params["i"])
    else:
        @worker.task(kind)
        async def awork(ctx: TaskContext, params: Any) -> int:
            enter()
            await asyncio.sleep(0.3)
            leave()
            return int(params["i"])

    serve(worker)
    ids = [client.submit(kind, {"i": i}).id for i in range(6)]
    results = [client.wait(i) for i in ids]
    assert [t.result for t in results] == list(range(6))
    assert peak[0] == 2, f"at most (and, with 6 queued, exactly) 2 at once; saw {peak[0]}"


@pytest.mark.parametrize("style", ["sync", "async"])
def test_cancellation_reaches_the_handler(node: Node, serve: Any, client: Client, style: str) -> None:
    kind = REMOTE[3] if style == "sync" else REMOTE[4]
    worker = Worker(node.grpc, node.token("default", "supervisor"), name="py-c")
    started, saw_cancel = threading.Event(), threading.Event()

    if style == "sync":
        @worker.task(kind)
        def wait_forever(ctx: TaskContext, params: Any) -> None:
            started.set()
            while not ctx.sleep(0.05):
                pass
            saw_cancel.set()
    else:
        @worker.task(kind)
        async def await_forever(ctx: TaskContext, params: Any) -> None:
            started.set()
            try:
                await asyncio.sleep(60)
            except asyncio.CancelledError:
                assert ctx.cancelled
                saw_cancel.set()
                raise

    serve(worker)
    sub = client.submit(kind, {})
    assert started.wait(10)
    client.cancel(sub.id, "changed my mind")
    assert saw_cancel.wait(10), "the handler saw the cancel"
    assert client.wait(sub.id).state is TaskState.CANCELLED


def drain_worker(node: Node, kind: str, grace: float) -> tuple[subprocess.Popen[str], list[str]]:
    """tests/drain_worker.py in a process of its own, and the lines it prints (as they come)."""
    proc = subprocess.Popen(
        [sys.executable, str(REPO / "sdks/python/tests/drain_worker.py"), node.grpc,
         node.token("default", "supervisor"), kind, str(grace)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True).start()  # type: ignore[union-attr]
    return proc, lines


def test_sigterm_drains_running_tasks_then_exits_0(node: Node, client: Client) -> None:
    kind = REMOTE[5]
    proc, lines = drain_worker(node, kind, grace=20)
    try:
        eventually("registered", lambda: any("registered session" in l for l in lines))
        running = client.submit(kind, {"ms": 1500})
        eventually("the task runs", lambda: any(f"task {running.id}" in l for l in lines))
        proc.send_signal(signal.SIGTERM)
        eventually("draining", lambda: any("draining" in l for l in lines))
        late = client.submit(kind, {"ms": 10}, retry=RetryPolicy(max_attempts=1))
        assert proc.wait(20) == 0, "".join(lines)
        done = client.wait(running.id)
        assert done.state is TaskState.SUCCEEDED, done
        assert done.result == {"slept": 1500, "cancelled": False}
        out = "".join(lines)
        assert f"done {running.id}" in out and "exited cleanly after 1 task(s)" in out, out
        assert f"done {late.id}" not in out, "no new work after SIGTERM"
        after = client.get(late.id)
        if after.is_terminal:  # it was offered to the draining worker, which handed it back
            assert after.state is TaskState.FAILED and "drainer is shutting down" in after.error, after
        else:  # or it waits for another worker
            client.cancel(late.id)
    finally:
        if proc.poll() is None:
            proc.kill()


def test_sigterm_hands_back_what_outlives_the_grace_period(node: Node, client: Client) -> None:
    kind = REMOTE[7]
    proc, lines = drain_worker(node, kind, grace=0.3)
    try:
        eventually("registered", lambda: any("registered session" in l for l in lines))
        stuck = client.submit(kind, {"ms": 60000}, retry=RetryPolicy(max_attempts=1))
        eventually("the task runs", lambda: any(f"task {stuck.id}" in l for l in lines))
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0, "".join(lines)
        assert time.monotonic() - started < 5, "it did not wait for the task past the grace period"
        done = client.wait(stuck.id)
        assert done.state is TaskState.FAILED, done
        assert "the worker stopped before the task finished" in done.error, done.error
    finally:
        if proc.poll() is None:
            proc.kill()


def test_reconnects_after_the_node_restarts(restartable: Node) -> None:
    node = restartable
    kind = REMOTE[6]
    worker = Worker(node.grpc, node.token("default", "supervisor"), name="py-r", reconnect_max=1.0)

    @worker.task(kind)
    async def echo(ctx: TaskContext, params: Any) -> Any:
        return params

    t = threading.Thread(target=worker.run, daemon=True)
    t.start()
    try:
        with Client(node.grpc, node.credential) as c:
            eventually("registered", lambda: worker.sessions == 1)
            assert c.submit_and_wait(kind, {"before": 1}).result == {"before": 1}
            node.restart()
            eventually("registered again", lambda: worker.sessions == 2, timeout=20)
            assert c.submit_and_wait(kind, {"after": 2}).result == {"after": 2}
    finally:
        worker.stop()
        t.join(15)
    assert not t.is_alive()


def test_a_refused_credential_stops_the_worker(node: Node) -> None:
    worker = Worker(node.grpc, node.token("default", "operator"), name="py-low")
    worker.register(REMOTE[0], lambda ctx, p: p)
    with pytest.raises(cadre_sdk.PermissionDenied):
        worker.run()
    with pytest.raises(ValueError):
        Worker(node.grpc, "x", concurrency=0)


def test_the_example_worker_runs_tasks_end_to_end(node: Node, client: Client) -> None:
    """examples/python-worker/worker.py as its README runs it (and as the Rust test does)."""
    kind = "intelligence.remote.text"
    env = {**os.environ, "CADRE_TOKEN": node.token("acme", "supervisor"), "PYTHONDONTWRITEBYTECODE": "1"}
    proc = subprocess.Popen(
        [sys.executable, str(REPO / "examples/python-worker/worker.py"), "--grpc", node.grpc,
         "--kinds", kind, "--worker-id", "py-1", "--max-tasks", "2"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        ok = client.submit_and_wait(kind, {"text": "Hello, cadre", "op": "upper", "delay_ms": 20})
        assert ok.result == {"text": "HELLO, CADRE", "op": "upper", "worker": "py-1"}, ok
        assert "step 4 of 4" in [e.message for e in client.watch(ok.id) if e.is_progress]
        bad = client.submit_and_wait(kind, {"text": "x", "op": "rot13"}, retry=FAST_RETRY)
        assert bad.state is TaskState.FAILED and bad.attempt == 1
        assert "remote worker py-1: params.op: 'rot13' is not one of" in bad.error, bad.error
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, out + err
        assert "registered session" in out and f"done {ok.id}" in out, out
    finally:
        if proc.poll() is None:
            proc.kill()
