"""The asyncio client: `AsyncClient(endpoint, token)` with the same operations as `Client`, as
coroutines and async iterators. Every failure raises a `CadreError` subclass."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from types import TracebackType
from typing import Any, TypeVar

import grpc

from . import _stubs
from ._connection import Connection, Pem
from ._proto import task_pb2, workflow_pb2
from ._requests import (
    Backoff,
    WatchState,
    approval,
    definition_json,
    list_request,
    signal_request,
    states_pb,
    task_spec,
)
from .errors import Unavailable, from_rpc_error
from .models import (
    Registered,
    RetryPolicy,
    SecurityLevel,
    Signalled,
    Submitted,
    Task,
    TaskEvent,
    TaskPage,
    TaskState,
    TaskType,
    Workflow,
)

T = TypeVar("T")


class AsyncClient:
    """A connection to one cadre node for asyncio code; the arguments are `Client`'s. Create
    it inside a running event loop; close it with `await client.close()` or `async with`."""

    def __init__(
        self,
        endpoint: str | None = None,
        token: str | None = None,
        *,
        ca_cert: Pem | None = None,
        client_cert: Pem | None = None,
        client_key: Pem | None = None,
        tls_domain: str | None = None,
        timeout: float | None = 30.0,
        retry_budget: float = 30.0,
    ) -> None:
        self.connection = Connection.resolve(
            endpoint, token, ca_cert=ca_cert, client_cert=client_cert, client_key=client_key, tls_domain=tls_domain
        )
        self.timeout = timeout
        self.retry_budget = retry_budget
        self._channel = self.connection.aio_channel()
        self._metadata = self.connection.metadata()
        self._tasks = _stubs.tasks(self._channel)
        self._workflows = _stubs.workflows(self._channel)

    async def close(self) -> None:
        """Closes the channel; calls in flight are cancelled."""
        await self._channel.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def _call(self, method: Any, request: Any, *, unbounded: bool = False) -> Any:
        try:
            return await method(request, metadata=self._metadata, timeout=None if unbounded else self.timeout)
        except grpc.RpcError as e:
            raise from_rpc_error(e) from None

    async def _retrying(self, attempt: Callable[[], Awaitable[T]]) -> T:
        """Awaits `attempt` again while it fails with UNAVAILABLE, within the retry budget."""
        backoff = Backoff(budget=self.retry_budget)
        while True:
            try:
                return await attempt()
            except Unavailable as e:
                await asyncio.sleep(backoff.next_delay(e))

    # -- tasks ------------------------------------------------------------------------------

    async def submit(
        self,
        task_type: str,
        params: Any = None,
        *,
        priority: int = 0,
        timeout_ms: int = 0,
        idempotency_key: str | None = None,
        retry: RetryPolicy | None = None,
        parent_id: str = "",
        security_level: SecurityLevel = SecurityLevel.STANDARD,
        concurrency_key: str = "",
        debounce_key: str = "",
        debounce_window_ms: int = 0,
    ) -> Submitted:
        """`Client.submit`: retried on UNAVAILABLE with one idempotency key."""
        spec = task_spec(
            task_type,
            params,
            priority=priority,
            timeout_ms=timeout_ms,
            idempotency_key=idempotency_key,
            retry=retry,
            parent_id=parent_id,
            security_level=security_level,
            concurrency_key=concurrency_key,
            debounce_key=debounce_key,
            debounce_window_ms=debounce_window_ms,
        )
        request = task_pb2.SubmitRequest(spec=spec)
        resp = await self._retrying(lambda: self._call(self._tasks.Submit, request))
        return Submitted(Task.from_pb(resp.task), bool(resp.created))

    async def submit_and_wait(
        self,
        task_type: str,
        params: Any = None,
        *,
        wait_ms: int = 0,
        priority: int = 0,
        timeout_ms: int = 0,
        idempotency_key: str | None = None,
        retry: RetryPolicy | None = None,
        parent_id: str = "",
        security_level: SecurityLevel = SecurityLevel.STANDARD,
        concurrency_key: str = "",
        debounce_key: str = "",
        debounce_window_ms: int = 0,
    ) -> Task:
        """`Client.submit_and_wait`: the task once it ended."""
        spec = task_spec(
            task_type,
            params,
            priority=priority,
            timeout_ms=timeout_ms,
            idempotency_key=idempotency_key,
            retry=retry,
            parent_id=parent_id,
            security_level=security_level,
            concurrency_key=concurrency_key,
            debounce_key=debounce_key,
            debounce_window_ms=debounce_window_ms,
        )
        request = task_pb2.SubmitAndWaitRequest(spec=spec, wait_ms=wait_ms)
        pb = await self._retrying(lambda: self._call(self._tasks.SubmitAndWait, request, unbounded=True))
        return Task.from_pb(pb)

    async def get(self, task_id: str) -> Task:
        """One task of the caller's tenant (NotFound for another tenant's)."""
        return Task.from_pb(await self._call(self._tasks.Get, task_pb2.GetRequest(id=task_id)))

    async def cancel(self, task_id: str, reason: str = "") -> Task:
        """Cancels a queued or running task; returns it as it is after the request."""
        pb = await self._call(self._tasks.Cancel, task_pb2.CancelRequest(id=task_id, reason=reason))
        return Task.from_pb(pb)

    async def list_tasks(
        self,
        *,
        states: Iterable[TaskState | str] | None = None,
        task_type_prefix: str = "",
        parent_id: str = "",
        page_size: int = 0,
        page_token: str = "",
    ) -> TaskPage:
        """One page of the tenant's tasks, newest first (page_size 1-1000, 0 = 50)."""
        request = list_request(states, task_type_prefix, parent_id, page_size, page_token)
        resp = await self._call(self._tasks.List, request)
        return TaskPage([Task.from_pb(t) for t in resp.tasks], resp.next_page_token)

    async def iter_tasks(
        self,
        *,
        states: Iterable[TaskState | str] | None = None,
        task_type_prefix: str = "",
        parent_id: str = "",
        page_size: int = 0,
    ) -> AsyncIterator[Task]:
        """Every task that fits the filters, newest first, fetching page after page."""
        states = list(states or ())
        token = ""
        while True:
            page = await self.list_tasks(
                states=states, task_type_prefix=task_type_prefix, parent_id=parent_id,
                page_size=page_size, page_token=token,
            )
            for task in page.tasks:
                yield task
            if not page.next_page_token:
                return
            token = page.next_page_token

    async def watch(
        self,
        task_id: str = "",
        *,
        task_type_prefix: str = "",
        after_cursor: int = 0,
        states: Iterable[TaskState | str] | None = None,
        parent_id: str = "",
        live_only: bool = False,
        resume: bool = True,
    ) -> AsyncIterator[TaskEvent]:
        """`Client.watch` as an async iterator: resumes after the last cursor when the stream
        breaks, never yielding an event twice."""
        state = WatchState(task_id, task_type_prefix, states_pb(states), parent_id, after_cursor, live_only)
        state.backoff.budget = self.retry_budget
        while True:
            call = self._tasks.Watch(state.request(), metadata=self._metadata)
            try:
                async for pb in call:
                    event = state.accept(pb)
                    if event is not None:
                        yield event
                        if state.done:
                            return
                if task_id and await self._ended(task_id):
                    return
                if not resume:
                    return
                delay = state.backoff.next_delay(Unavailable("the node ended the watch stream"))
            except grpc.RpcError as e:
                delay = state.on_error(from_rpc_error(e), resume)
            finally:
                call.cancel()
            await asyncio.sleep(delay)

    async def _ended(self, task_id: str) -> bool:
        try:
            return (await self.get(task_id)).is_terminal
        except Unavailable:
            return False

    async def wait(self, task_id: str) -> Task:
        """Waits (watching, with resume) until the task ended; returns it."""
        async for _ in self.watch(task_id, states=[s for s in TaskState if s.is_terminal]):
            pass
        return await self.get(task_id)

    async def task_types(self, task_type_prefix: str = "") -> list[TaskType]:
        """The task types the node accepts, with their params and result schemas."""
        request = task_pb2.ListTaskTypesRequest(task_type_prefix=task_type_prefix)
        resp = await self._call(self._tasks.ListTaskTypes, request)
        return [TaskType.from_pb(t) for t in resp.types]

    # -- workflows --------------------------------------------------------------------------

    async def register_workflow(self, definition: Any) -> Registered:
        """Registers a workflow definition (a dict, or JSON text); supervisor role."""
        request = workflow_pb2.RegisterWorkflowRequest(definition_json=definition_json(definition))
        resp = await self._call(self._workflows.RegisterWorkflow, request)
        return Registered(Workflow.from_pb(resp.workflow), bool(resp.created))

    async def list_workflows(self, name: str = "") -> list[Workflow]:
        """The newest version of each workflow, or every version of `name`."""
        resp = await self._call(self._workflows.ListWorkflows, workflow_pb2.ListWorkflowsRequest(name=name))
        return [Workflow.from_pb(w) for w in resp.workflows]

    async def get_workflow(self, name: str, version: int = 0) -> Workflow:
        """One workflow definition (version 0: the newest)."""
        request = workflow_pb2.GetWorkflowRequest(name=name, version=version)
        return Workflow.from_pb(await self._call(self._workflows.GetWorkflow, request))

    async def start_workflow(self, name: str, input: Any = None, **kwargs: Any) -> Submitted:
        """Starts an instance of a workflow: submits its task type `workflow.<name>.run`."""
        return await self.submit(f"workflow.{name}.run", input, **kwargs)

    async def signal(self, task_id: str, name: str, payload: Any = None) -> Signalled:
        """Sends a signal to a workflow instance (operator role)."""
        resp = await self._call(self._workflows.Signal, signal_request(task_id, name, payload))
        return Signalled(int(resp.seq), Task.from_pb(resp.task))

    async def approve(self, task_id: str, name: str, comment: str = "") -> Signalled:
        """Approves an approval step (`name` is the step's id)."""
        return await self.signal(task_id, name, approval("approve", comment))

    async def reject(self, task_id: str, name: str, comment: str = "") -> Signalled:
        """Rejects an approval step (`name` is the step's id)."""
        return await self.signal(task_id, name, approval("reject", comment))
