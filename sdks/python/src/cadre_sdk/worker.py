"""Remote workers: serve task types over WorkerService.Attach from plain functions.

    worker = Worker(endpoint="http://127.0.0.1:50051", token=..., name="py", concurrency=4)

    @worker.task("intelligence.remote.upper")
    def upper(ctx: TaskContext, params: dict) -> dict:
        ctx.progress("working", 0.5)
        return {"text": params["text"].upper()}

    worker.run()   # until SIGTERM/SIGINT: then drains and returns

A handler gets a `TaskContext` and the params (decoded JSON) and returns the result (any
JSON-serialisable value). Sync handlers run on threads of their own, at most `concurrency` at
once; `async def` handlers run on the worker's event loop. Raising `TaskError(message, retryable=False)` fails
the task with that message; any other exception fails it as retryable. A cancel from the node
sets `ctx.cancelled` (and cancels an async handler's coroutine: CancelledError at its next await).

The worker registers its task types with `max_concurrency = concurrency`, sends heartbeats at a
third of the interval the node asks for, reconnects with exponential backoff when the stream
breaks (the node fails the tasks it had in flight as retryable), and stops for good on a refusal
that another try would repeat (bad credential, role too low, bad registration), raising the
`CadreError`. `stop()` (and SIGTERM/SIGINT under `run()`) drains: tasks that arrive after it are
handed back as retryable failures, running tasks get `drain_grace` seconds to finish, then the
stream is closed and `run()` returns."""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import os
import signal
import socket
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar, Union

import grpc

from . import _stubs
from ._connection import Connection, Pem
from ._proto import worker_pb2
from .errors import CadreError, from_rpc_error

log = logging.getLogger("cadre_sdk.worker")

#: Refusals that another try would repeat: `run()` raises them instead of reconnecting.
PERMANENT = {
    grpc.StatusCode.UNAUTHENTICATED,
    grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.UNIMPLEMENTED,
}

#: A task handler: (context, params) -> result, plain or `async def`.
Handler = Callable[["TaskContext", Any], Union[Any, Awaitable[Any]]]
H = TypeVar("H", bound=Handler)


class TaskError(Exception):
    """Raise in a handler to fail the task with this message; `retryable` lets the node's retry
    policy run it again (default: fail at once)."""

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable


class TaskCancelled(Exception):
    """Raised by `TaskContext.raise_if_cancelled` once the node cancelled the task."""


class TaskContext:
    """What a handler knows about its task and how it talks back: progress and cancellation."""

    def __init__(self, task: worker_pb2.ServerTask, worker_id: str, send: Callable[[worker_pb2.WorkerMessage], None]):
        #: The task's id (a UUID).
        self.task_id: str = task.task_id
        #: The task type, one the worker registered.
        self.task_type: str = task.task_type
        #: 1-based attempt number.
        self.attempt: int = task.attempt
        #: This worker's id (`Worker(name=...)`).
        self.worker_id: str = worker_id
        self._send = send
        self._cancel = threading.Event()

    @property
    def cancelled(self) -> bool:
        """True once the node cancelled the task (or the worker lost the connection)."""
        return self._cancel.is_set()

    def raise_if_cancelled(self) -> None:
        """Raises TaskCancelled when the task was cancelled."""
        if self._cancel.is_set():
            raise TaskCancelled(self.task_id)

    def sleep(self, seconds: float) -> bool:
        """Sleeps up to `seconds` (sync handlers), waking early on cancel; returns `cancelled`."""
        return self._cancel.wait(seconds)

    def progress(self, message: str = "", fraction: float | None = None) -> None:
        """Reports progress: a note and optionally how far (0.0-1.0). Thread-safe; it becomes a
        progress event of the task (the node may drop some under load)."""
        body = worker_pb2.WorkerProgress(
            task_id=self.task_id, attempt=self.attempt, fraction=fraction or 0.0, message=message
        )
        self._send(worker_pb2.WorkerMessage(progress=body))


@dataclass
class _Running:
    """One task in flight on this worker."""

    ctx: TaskContext
    future: asyncio.Task[None]
    is_async: bool


@dataclass
class _Session:
    """One Attach stream: its outgoing queue and what runs on it."""

    loop: asyncio.AbstractEventLoop
    outgoing: asyncio.Queue[worker_pb2.WorkerMessage | None] = field(default_factory=asyncio.Queue)
    running: dict[tuple[str, int], _Running] = field(default_factory=dict)
    closed: bool = False
    #: Set when a drain gave up waiting for the node to end the stream and cancelled it.
    forced: bool = False

    def send(self, msg: worker_pb2.WorkerMessage) -> None:
        """Queues a message from any thread; dropped once the stream is gone."""
        if self.closed:
            return
        try:
            on_loop = asyncio.get_running_loop() is self.loop
        except RuntimeError:
            on_loop = False
        if on_loop:  # in order with what the loop queues next (a drain's end marker)
            self.outgoing.put_nowait(msg)
            return
        try:
            self.loop.call_soon_threadsafe(self.outgoing.put_nowait, msg)
        except RuntimeError:  # the loop is closed: the worker has stopped
            pass


class Worker:
    """Serves task types to a cadre node over WorkerService (executor `remote`).

    Connection arguments are `Client`'s (endpoint, token, TLS; CADRE_* environment variables
    fill what is not given); the credential needs the `supervisor` role. `name` is the worker
    id the node logs and puts in error messages (default host-pid); `concurrency` how many tasks
    run at once (1-64); `drain_grace` the seconds running tasks get after `stop()`;
    `max_tasks` makes the worker stop by itself after that many tasks (0: never);
    `reconnect_max` caps the backoff between reconnects, in seconds."""

    def __init__(
        self,
        endpoint: str | None = None,
        token: str | None = None,
        *,
        name: str | None = None,
        concurrency: int = 4,
        drain_grace: float = 30.0,
        max_tasks: int = 0,
        reconnect_max: float = 30.0,
        ca_cert: Pem | None = None,
        client_cert: Pem | None = None,
        client_key: Pem | None = None,
        tls_domain: str | None = None,
    ) -> None:
        if not 1 <= concurrency <= 64:
            raise ValueError("concurrency must be 1-64")
        self.connection = Connection.resolve(
            endpoint, token, ca_cert=ca_cert, client_cert=client_cert, client_key=client_key, tls_domain=tls_domain
        )
        self.name = name or f"{socket.gethostname()}-{os.getpid()}"
        self.concurrency = concurrency
        self.drain_grace = drain_grace
        self.max_tasks = max_tasks
        self.reconnect_max = reconnect_max
        self.handlers: dict[str, Handler] = {}
        #: Tasks that ended on this worker (result or error sent), over all connections.
        self.tasks_done = 0
        #: Attach streams that registered, over the worker's life (reconnects count).
        self.sessions = 0
        self._stop_requested = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._slots: asyncio.Semaphore | None = None

    def task(self, task_type: str) -> Callable[[H], H]:
        """Decorator: serve `task_type` with the decorated function."""

        def register(fn: H) -> H:
            self.register(task_type, fn)
            return fn

        return register

    def register(self, task_type: str, handler: Handler) -> None:
        """Serves `task_type` with `handler` (the same as the decorator)."""
        if not task_type:
            raise ValueError("task_type is empty")
        self.handlers[task_type] = handler

    def stop(self) -> None:
        """Starts a graceful drain (thread-safe; what SIGTERM does under `run()`)."""
        self._stop_requested.set()
        loop, stopping = self._loop, self._stopping
        if loop is not None and stopping is not None:
            try:
                loop.call_soon_threadsafe(stopping.set)
            except RuntimeError:
                pass

    def run(self) -> None:
        """Serves until stopped: SIGTERM or SIGINT (when called on the main thread), `stop()`,
        or `max_tasks`; drains, then returns. Raises CadreError on a permanent refusal."""
        asyncio.run(self.serve(handle_signals=threading.current_thread() is threading.main_thread()))

    async def serve(self, handle_signals: bool = False) -> None:
        """`run()` for code that already has an event loop."""
        if not self.handlers:
            raise ValueError("no task types: register a handler with @worker.task(...)")
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        self._slots = asyncio.Semaphore(self.concurrency)
        if self._stop_requested.is_set():
            self._stopping.set()
        if handle_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._loop.add_signal_handler(sig, self.stop)
        try:
            await self._reconnecting()
        finally:
            if handle_signals:
                for sig in (signal.SIGTERM, signal.SIGINT):
                    self._loop.remove_signal_handler(sig)

    async def _reconnecting(self) -> None:
        assert self._stopping is not None
        backoff = 0.5
        while not self._stopping.is_set():
            before = self.sessions
            try:
                await self._session()
            except CadreError as e:
                if e.code in PERMANENT:
                    log.error("refused: %s: %s", e.code.name, e.message)
                    raise
                if self._stopping.is_set():
                    return
                if self.sessions > before:
                    backoff = 0.5
                log.warning("connection lost: %s: %s; reconnecting in %ss", e.code.name, e.message, backoff)
            else:
                if self._stopping.is_set():
                    return
                backoff = 0.5 if self.sessions > before else backoff
                log.warning("the node ended the stream; reconnecting in %ss", backoff)
            try:
                await asyncio.wait_for(self._stopping.wait(), timeout=backoff)
            except asyncio.TimeoutError:
                pass
            backoff = min(backoff * 2, self.reconnect_max)

    def _register_message(self) -> worker_pb2.WorkerMessage:
        body = worker_pb2.WorkerRegister(
            worker_id=self.name, kinds=sorted(self.handlers), max_concurrency=self.concurrency
        )
        return worker_pb2.WorkerMessage(register=body)

    async def _session(self) -> None:
        """One Attach stream, from register to its end; raises CadreError when it breaks."""
        assert self._loop is not None
        session = _Session(self._loop)
        helpers: list[asyncio.Task[None]] = []
        async with self.connection.aio_channel() as channel:
            call = _stubs.workers(channel).Attach(metadata=self.connection.metadata())
            try:
                await call.write(self._register_message())
                first = await call.read()
                if first is grpc.aio.EOF or first.WhichOneof("body") != "registered":
                    raise CadreError("the node did not answer register with registered")
                self.sessions += 1
                interval = max(first.registered.heartbeat_interval_ms, 100) / 1000
                log.info("registered session %d heartbeat %ss", first.registered.session_id, interval)
                helpers.append(asyncio.create_task(self._write(call, session)))
                helpers.append(asyncio.create_task(self._heartbeat(session, interval / 3)))
                helpers.append(asyncio.create_task(self._drain_on_stop(session, call)))
                await self._read(call, session)
            except grpc.RpcError as e:
                if session.forced:
                    return
                raise from_rpc_error(e) from None
            except asyncio.CancelledError:
                if session.forced:  # the drain cancelled the call: the stream is over
                    return
                raise
            finally:
                session.closed = True
                for h in helpers:
                    h.cancel()
                for running in list(session.running.values()):
                    running.ctx._cancel.set()
                    if running.is_async:
                        running.future.cancel()
                call.cancel()

    async def _read(self, call: Any, session: _Session) -> None:
        """Dispatches what the node sends until the stream ends."""
        while True:
            msg = await call.read()
            if msg is grpc.aio.EOF:
                return
            kind = msg.WhichOneof("body")
            if kind == "task":
                self._start(msg.task, session)
            elif kind == "cancel":
                self._cancel(msg.cancel.task_id, msg.cancel.attempt, session)

    async def _write(self, call: Any, session: _Session) -> None:
        """Sends queued messages; None closes the sending side (the end of a drain). A broken
        stream ends it quietly: the reading side reports the break."""
        try:
            while True:
                msg = await session.outgoing.get()
                if msg is None:
                    await call.done_writing()
                    return
                await call.write(msg)
        except (grpc.RpcError, asyncio.InvalidStateError, grpc.aio.UsageError):
            return

    async def _heartbeat(self, session: _Session, every: float) -> None:
        while True:
            await asyncio.sleep(every)
            session.outgoing.put_nowait(worker_pb2.WorkerMessage(heartbeat=worker_pb2.WorkerHeartbeat()))

    async def _drain_on_stop(self, session: _Session, call: Any) -> None:
        """Once stopping: waits for running tasks (up to `drain_grace`), hands back the rest as
        retryable failures, then closes the stream (and cancels it if the node does not end it
        within 10 s)."""
        assert self._stopping is not None
        await self._stopping.wait()
        log.info("draining: %d task(s) running, grace %ss", len(session.running), self.drain_grace)
        pending = [r.future for r in session.running.values()]
        if pending:
            await asyncio.wait(pending, timeout=self.drain_grace)
        for running in list(session.running.values()):
            running.ctx._cancel.set()
            if running.is_async:
                running.future.cancel()
            self._send_error(session, running.ctx, "the worker stopped before the task finished", True)
        session.outgoing.put_nowait(None)
        await asyncio.sleep(10)
        session.forced = True
        call.cancel()

    def _start(self, task: worker_pb2.ServerTask, session: _Session) -> None:
        log.info("task %s attempt %d %s", task.task_id, task.attempt, task.task_type)
        ctx = TaskContext(task, self.name, session.send)
        assert self._stopping is not None
        if self._stopping.is_set():
            self._send_error(session, ctx, f"worker {self.name} is shutting down", True)
            return
        handler = self.handlers.get(task.task_type)
        is_async = handler is not None and inspect.iscoroutinefunction(handler)
        future = asyncio.create_task(self._run_task(ctx, handler, task.params_json, session))
        session.running[(task.task_id, task.attempt)] = _Running(ctx, future, is_async)

    def _cancel(self, task_id: str, attempt: int, session: _Session) -> None:
        log.info("cancel %s", task_id)
        running = session.running.get((task_id, attempt))
        if running is None:
            return
        running.ctx._cancel.set()
        if running.is_async:
            running.future.cancel()

    def _send_error(self, session: _Session, ctx: TaskContext, message: str, retryable: bool) -> None:
        error = worker_pb2.WorkerError(message=message, retryable=retryable)
        body = worker_pb2.WorkerResult(task_id=ctx.task_id, attempt=ctx.attempt, error=error)
        session.send(worker_pb2.WorkerMessage(result=body))

    async def _call_handler(self, ctx: TaskContext, handler: Handler, params: Any) -> Any:
        """Runs a handler within the concurrency bound: an async one on the loop, a sync one on
        a daemon thread (so one that ignores a cancel cannot keep the process from exiting). A
        sync handler holds its slot until its thread returns, even after a cancel."""
        assert self._slots is not None and self._loop is not None
        if inspect.iscoroutinefunction(handler):
            async with self._slots:
                return await handler(ctx, params)
        loop, slots = self._loop, self._slots
        await slots.acquire()
        future: asyncio.Future[Any] = loop.create_future()

        def finish(ok: bool, value: Any) -> None:
            slots.release()
            if future.done():
                return
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value)

        def thread() -> None:
            try:
                outcome = (True, handler(ctx, params))
            except BaseException as e:  # handed to the loop, which reports it
                outcome = (False, e)
            try:
                loop.call_soon_threadsafe(finish, *outcome)
            except RuntimeError:  # the loop is gone: the worker has stopped
                pass

        threading.Thread(target=thread, name=f"cadre-task-{ctx.task_id}", daemon=True).start()
        return await future

    async def _run_task(self, ctx: TaskContext, handler: Handler | None, params_json: str, session: _Session) -> None:
        """Runs one task and sends its one result (none when it was cancelled)."""
        try:
            if handler is None:
                raise TaskError(f"worker {self.name} has no handler for {ctx.task_type}")
            try:
                params = json.loads(params_json) if params_json else None
            except ValueError as e:
                raise TaskError(f"params are not JSON: {e}") from None
            result = await self._call_handler(ctx, handler, params)
            if ctx.cancelled:
                log.info("cancelled %s", ctx.task_id)
                return
            try:
                text = json.dumps(result, allow_nan=False)
            except (TypeError, ValueError) as e:
                raise TaskError(f"the result is not JSON-serialisable: {e}") from None
            body = worker_pb2.WorkerResult(task_id=ctx.task_id, attempt=ctx.attempt, result_json=text)
            session.send(worker_pb2.WorkerMessage(result=body))
            log.info("done %s", ctx.task_id)
        except (asyncio.CancelledError, TaskCancelled):
            log.info("cancelled %s", ctx.task_id)
            return
        except TaskError as e:
            self._send_error(session, ctx, str(e), e.retryable)
            log.info("failed %s: %s", ctx.task_id, e)
        except Exception as e:  # a handler's bug must not kill the worker: report it, retryable
            self._send_error(session, ctx, f"{type(e).__name__}: {e}", True)
            log.warning("failed %s: %s: %s", ctx.task_id, type(e).__name__, e)
        finally:
            session.running.pop((ctx.task_id, ctx.attempt), None)
        self._finished()

    def _finished(self) -> None:
        self.tasks_done += 1
        if self.max_tasks and self.tasks_done >= self.max_tasks:
            log.info("ran %d tasks; stopping", self.tasks_done)
            self.stop()
