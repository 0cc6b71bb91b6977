"""What the sync and asyncio clients share: building requests from Python values, and the rules
of the two retry loops (submit on UNAVAILABLE with one idempotency key; watch resuming from the
last cursor)."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import grpc

from ._proto import task_pb2, workflow_pb2
from .errors import CadreError, Unavailable
from .models import RetryPolicy, SecurityLevel, TaskEvent, TaskState

#: Statuses after which a watch reconnects and resumes: the node went away or restarted.
RESUMABLE = {grpc.StatusCode.UNAVAILABLE}


def encode_json(value: Any, what: str) -> str:
    """A Python value as JSON text; a clear error for values JSON cannot hold."""
    try:
        return json.dumps(value, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as e:
        raise TypeError(f"{what} must be JSON-serialisable: {e}") from None


def task_spec(
    task_type: str,
    params: Any,
    *,
    priority: int,
    timeout_ms: int,
    idempotency_key: str | None,
    retry: RetryPolicy | None,
    parent_id: str,
    security_level: SecurityLevel,
    concurrency_key: str = "",
    debounce_key: str = "",
    debounce_window_ms: int = 0,
) -> task_pb2.TaskSpec:
    """A TaskSpec; without an idempotency key it gets a fresh one, so that a retried submit
    cannot create a second task."""
    return task_pb2.TaskSpec(
        task_type=task_type,
        params_json=encode_json({} if params is None else params, "params"),
        priority=priority,
        timeout_ms=timeout_ms,
        retry=retry.to_pb() if retry is not None else None,
        idempotency_key=idempotency_key or f"sdk-{uuid.uuid4()}",
        parent_id=parent_id,
        security_level=security_level.to_pb(),
        concurrency_key=concurrency_key,
        debounce_key=debounce_key,
        debounce_window_ms=debounce_window_ms,
    )


def states_pb(states: Iterable[TaskState | str] | None) -> list[task_pb2.TaskState]:
    """States (enum members or their names) as protobuf values."""
    return [TaskState(s).to_pb() for s in (states or ())]


def list_request(
    states: Iterable[TaskState | str] | None,
    task_type_prefix: str,
    parent_id: str,
    page_size: int,
    page_token: str,
) -> task_pb2.ListRequest:
    """A ListRequest."""
    return task_pb2.ListRequest(
        states=states_pb(states),
        task_type_prefix=task_type_prefix,
        parent_id=parent_id,
        page_size=page_size,
        page_token=page_token,
    )


def signal_request(task_id: str, name: str, payload: Any) -> workflow_pb2.SignalRequest:
    """A SignalRequest with the payload as JSON."""
    return workflow_pb2.SignalRequest(
        task_id=task_id, name=name, payload_json=encode_json({} if payload is None else payload, "payload")
    )


def approval(decision: str, comment: str) -> dict[str, str]:
    """The payload of an approval signal."""
    out = {"decision": decision}
    if comment:
        out["comment"] = comment
    return out


def definition_json(definition: Any) -> str:
    """A workflow definition given as a dict or as JSON text."""
    return definition if isinstance(definition, str) else encode_json(definition, "definition")


@dataclass
class Backoff:
    """Exponential backoff with a total time budget, for the retry loops."""

    initial: float = 0.2
    maximum: float = 2.0
    budget: float = 30.0
    _delay: float = 0.0
    _deadline: float | None = None

    def reset(self) -> None:
        """Progress was made: the next failure starts over."""
        self._delay = 0.0
        self._deadline = None

    def next_delay(self, err: CadreError) -> float:
        """How long to sleep before the next try; raises `err` when the budget is spent."""
        now = time.monotonic()
        if self._deadline is None:
            self._deadline = now + self.budget
        if now >= self._deadline:
            raise err
        self._delay = min(self.maximum, self._delay * 2 if self._delay else self.initial)
        return min(self._delay, max(0.0, self._deadline - now))


@dataclass
class WatchState:
    """Where a watch is: the last cursor delivered, so a resumed stream skips what was already
    yielded (never the same event twice), and whether a one-task watch saw its end."""

    task_id: str
    task_type_prefix: str
    states: list[task_pb2.TaskState]
    parent_id: str
    cursor: int
    #: Start from now (no replay) until the first event; later resumes go on from its cursor.
    live_only: bool = False
    done: bool = False
    backoff: Backoff = field(default_factory=Backoff)

    def request(self) -> task_pb2.WatchRequest:
        """The WatchRequest that resumes after the last delivered cursor."""
        return task_pb2.WatchRequest(
            task_id=self.task_id,
            task_type_prefix=self.task_type_prefix,
            after_cursor=self.cursor,
            states=self.states,
            parent_id=self.parent_id,
            live_only=self.live_only,
        )

    def accept(self, pb: task_pb2.TaskEvent) -> TaskEvent | None:
        """The event to yield, or None for one already delivered."""
        if pb.cursor <= self.cursor:
            return None
        self.cursor = pb.cursor
        self.live_only = False  # from here on, resume from the cursor
        self.backoff.reset()
        event = TaskEvent.from_pb(pb)
        if self.task_id and event.is_terminal:
            self.done = True
        return event

    def on_error(self, err: CadreError, resume: bool) -> float:
        """After a broken stream: the delay before resuming, or raises when it must not resume."""
        if not resume or not isinstance(err, Unavailable):
            raise err
        return self.backoff.next_delay(err)
