"""The blocking client: `Client(endpoint, token)` and one method per operation of the node's
TaskService and WorkflowService. Every failure raises a `CadreError` subclass."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
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
from .errors import CadreError, Unavailable, from_rpc_error
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


class Client:
    """A connection to one cadre node. Thread-safe; close it (or use `with`) when done.

    `endpoint` is `http://host:port`, `https://host:port` or `host:port` (default
    $CADRE_ENDPOINT, else http://127.0.0.1:50051); `token` a JWT or API key (default
    $CADRE_TOKEN). TLS: `ca_cert` (PEM bytes, text or path) verifies the node; `client_cert` and
    `client_key` add a client certificate for mutual TLS; `tls_domain` overrides the name checked.
    `timeout` bounds each unary call in seconds (None: no bound); `retry_budget` is how long a
    submit keeps retrying UNAVAILABLE, and how long a watch keeps trying to resume."""

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
        self._channel = self.connection.channel()
        self._metadata = self.connection.metadata()
        self._tasks = _stubs.tasks(self._channel)
        self._workflows = _stubs.workflows(self._channel)

    def close(self) -> None:
        """Closes the channel; calls in flight are cancelled."""
        self._channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _call(self, method: Any, request: Any, *, unbounded: bool = False) -> Any:
        try:
            return method(request, metadata=self._metadata, timeout=None if unbounded else self.timeout)
        except grpc.RpcError as e:
            raise from_rpc_error(e) from None

    def _retrying(self, attempt: Callable[[], T]) -> T:
        """Runs `attempt` again while it fails with UNAVAILABLE, within the retry budget."""
        backoff = Backoff(budget=self.retry_budget)
        while True:
            try:
                return attempt()
            except Unavailable as e:
                time.sleep(backoff.next_delay(e))

    # -- tasks ------------------------------------------------------------------------------

    def submit(
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
        """Submits a task; returns once the node stored it. `params` is any JSON-serialisable
        value (default {}). A submit that fails with UNAVAILABLE is sent again with the same
        idempotency key (one is generated when none is given), so it creates at most one task.
        With `debounce_key` and `debounce_window_ms` the task waits that long before it runs,
        and a submit with the same key (same tenant) meanwhile replaces it (it ends CANCELLED
        naming its replacement); `concurrency_key` shares the running limit the node sets."""
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
        resp = self._retrying(lambda: self._call(self._tasks.Submit, request))
        return Submitted(Task.from_pb(resp.task), bool(resp.created))

    def submit_and_wait(
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
        """Submits a task and returns it once it ended (any terminal state: check `state`).
        `wait_ms` bounds the wait (0: the task's timeout plus retries); retried on UNAVAILABLE
        with the same idempotency key like `submit`."""
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
        # The node bounds the wait itself; the call gets no client-side deadline of its own.
        pb = self._retrying(lambda: self._call(self._tasks.SubmitAndWait, request, unbounded=True))
        return Task.from_pb(pb)

    def get(self, task_id: str) -> Task:
        """One task of the caller's tenant (NotFound for another tenant's)."""
        return Task.from_pb(self._call(self._tasks.Get, task_pb2.GetRequest(id=task_id)))

    def cancel(self, task_id: str, reason: str = "") -> Task:
        """Cancels a queued or running task; returns it as it is after the request."""
        return Task.from_pb(self._call(self._tasks.Cancel, task_pb2.CancelRequest(id=task_id, reason=reason)))

    def list_tasks(
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
        resp = self._call(self._tasks.List, request)
        return TaskPage([Task.from_pb(t) for t in resp.tasks], resp.next_page_token)

    def iter_tasks(
        self,
        *,
        states: Iterable[TaskState | str] | None = None,
        task_type_prefix: str = "",
        parent_id: str = "",
        page_size: int = 0,
    ) -> Iterator[Task]:
        """Every task that fits the filters, newest first, fetching page after page."""
        states = list(states or ())
        token = ""
        while True:
            page = self.list_tasks(
                states=states, task_type_prefix=task_type_prefix, parent_id=parent_id,
                page_size=page_size, page_token=token,
            )
            yield from page.tasks
            if not page.next_page_token:
                return
            token = page.next_page_token

    def watch(
        self,
        task_id: str = "",
        *,
        task_type_prefix: str = "",
        after_cursor: int = 0,
        states: Iterable[TaskState | str] | None = None,
        parent_id: str = "",
        live_only: bool = False,
        resume: bool = True,
    ) -> Iterator[TaskEvent]:
        """Events in cursor order: the stored ones after `after_cursor`, then live ones. With
        `task_id` it ends after that task's terminal event; otherwise it runs until closed.
        `live_only` skips the stored events: only events from now on (not with `after_cursor`).
        When the stream breaks (UNAVAILABLE: the node went away or restarted) it reconnects
        and resumes after the last cursor it yielded, so no event is yielded twice (a live-only
        watch that broke before its first event starts from "now" again); it gives up (raising
        Unavailable) after `retry_budget` seconds without a connection."""
        state = WatchState(task_id, task_type_prefix, states_pb(states), parent_id, after_cursor, live_only)
        state.backoff.budget = self.retry_budget
        while True:
            call = self._tasks.Watch(state.request(), metadata=self._metadata)
            try:
                for pb in call:
                    event = state.accept(pb)
                    if event is not None:
                        yield event
                        if state.done:
                            return
                if task_id and self._ended(task_id):
                    return
                if not resume:
                    return
                delay = state.backoff.next_delay(Unavailable("the node ended the watch stream"))
            except grpc.RpcError as e:
                delay = state.on_error(from_rpc_error(e), resume)
            finally:
                call.cancel()
            time.sleep(delay)

    def _ended(self, task_id: str) -> bool:
        try:
            return self.get(task_id).is_terminal
        except Unavailable:
            return False

    def wait(self, task_id: str) -> Task:
        """Waits (watching, with resume) until the task ended; returns it."""
        for _ in self.watch(task_id, states=[s for s in TaskState if s.is_terminal]):
            pass
        return self.get(task_id)

    def task_types(self, task_type_prefix: str = "") -> list[TaskType]:
        """The task types the node accepts, with their params and result schemas."""
        resp = self._call(self._tasks.ListTaskTypes, task_pb2.ListTaskTypesRequest(task_type_prefix=task_type_prefix))
        return [TaskType.from_pb(t) for t in resp.types]

    # -- workflows --------------------------------------------------------------------------

    def register_workflow(self, definition: Any) -> Registered:
        """Registers a workflow definition (a dict, or JSON text); supervisor role."""
        request = workflow_pb2.RegisterWorkflowRequest(definition_json=definition_json(definition))
        resp = self._call(self._workflows.RegisterWorkflow, request)
        return Registered(Workflow.from_pb(resp.workflow), bool(resp.created))

    def list_workflows(self, name: str = "") -> list[Workflow]:
        """The newest version of each workflow, or every version of `name`."""
        resp = self._call(self._workflows.ListWorkflows, workflow_pb2.ListWorkflowsRequest(name=name))
        return [Workflow.from_pb(w) for w in resp.workflows]

    def get_workflow(self, name: str, version: int = 0) -> Workflow:
        """One workflow definition (version 0: the newest)."""
        pb = self._call(self._workflows.GetWorkflow, workflow_pb2.GetWorkflowRequest(name=name, version=version))
        return Workflow.from_pb(pb)

    def start_workflow(self, name: str, input: Any = None, **kwargs: Any) -> Submitted:
        """Starts an instance of a workflow: submits its task type `workflow.<name>.run`."""
        return self.submit(f"workflow.{name}.run", input, **kwargs)

    def signal(self, task_id: str, name: str, payload: Any = None) -> Signalled:
        """Sends a signal to a workflow instance (operator role)."""
        resp = self._call(self._workflows.Signal, signal_request(task_id, name, payload))
        return Signalled(int(resp.seq), Task.from_pb(resp.task))

    def approve(self, task_id: str, name: str, comment: str = "") -> Signalled:
        """Approves an approval step (`name` is the step's id)."""
        return self.signal(task_id, name, approval("approve", comment))

    def reject(self, task_id: str, name: str, comment: str = "") -> Signalled:
        """Rejects an approval step (`name` is the step's id)."""
        return self.signal(task_id, name, approval("reject", comment))


def connect(endpoint: str | None = None, token: str | None = None, **kwargs: Any) -> Client:
    """A `Client`; see its documentation for the arguments."""
    return Client(endpoint, token, **kwargs)



