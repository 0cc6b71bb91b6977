"""What the node answers, as typed dataclasses: JSON fields (params, results, outputs, payloads)
are decoded into Python objects, states are enums, and the generated protobuf messages stay
inside the SDK."""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass, field
from typing import Any, cast

from ._proto import task_pb2, workflow_pb2


def decode_json(text: str) -> Any:
    """JSON text from the node as a Python object; empty text is None."""
    return json.loads(text) if text else None


class TaskState(str, enum.Enum):
    """Lifecycle state of a task: QUEUED -> RUNNING -> SUCCEEDED | FAILED | CANCELLED |
    TIMED_OUT, with RETRYING between attempts."""

    UNSPECIFIED = "UNSPECIFIED"
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    RETRYING = "RETRYING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    TIMED_OUT = "TIMED_OUT"

    @property
    def is_terminal(self) -> bool:
        """Whether the task has ended for good (no further events)."""
        return self in _TERMINAL

    def to_pb(self) -> task_pb2.TaskState:
        """The protobuf enum value."""
        return cast(task_pb2.TaskState, task_pb2.TaskState.Value(f"TASK_STATE_{self.value}"))

    @classmethod
    def from_pb(cls, value: int) -> TaskState:
        """From the protobuf enum value (unknown values are UNSPECIFIED)."""
        try:
            return cls(task_pb2.TaskState.Name(value).removeprefix("TASK_STATE_"))
        except ValueError:
            return cls.UNSPECIFIED


_TERMINAL = {TaskState.SUCCEEDED, TaskState.FAILED, TaskState.CANCELLED, TaskState.TIMED_OUT}


class SecurityLevel(str, enum.Enum):
    """What the node guarantees about a task's result (see task.proto)."""

    STANDARD = "STANDARD"
    VERIFIED = "VERIFIED"
    FORTRESS = "FORTRESS"

    def to_pb(self) -> task_pb2.SecurityLevel:
        """The protobuf enum value."""
        return cast(task_pb2.SecurityLevel, task_pb2.SecurityLevel.Value(f"SECURITY_LEVEL_{self.value}"))

    @classmethod
    def from_pb(cls, value: int) -> SecurityLevel:
        """From the protobuf enum value (unknown values are STANDARD)."""
        try:
            return cls(task_pb2.SecurityLevel.Name(value).removeprefix("SECURITY_LEVEL_"))
        except ValueError:
            return cls.STANDARD


@dataclass(frozen=True)
class RetryPolicy:
    """How the node retries a failed attempt. Zero fields take the node's defaults."""

    #: Total attempts including the first; 1 means never retry.
    max_attempts: int = 0
    #: Delay before the second attempt, in milliseconds.
    initial_backoff_ms: int = 0
    #: Upper bound for one delay, in milliseconds.
    max_backoff_ms: int = 0
    #: Growth factor between attempts (>= 1.0).
    multiplier: float = 0.0
    #: Also retry an attempt that ran past its timeout (default: TIMED_OUT is final).
    retry_timeouts: bool = False

    def to_pb(self) -> task_pb2.RetryPolicy:
        """The protobuf message."""
        return task_pb2.RetryPolicy(
            max_attempts=self.max_attempts,
            initial_backoff_ms=self.initial_backoff_ms,
            max_backoff_ms=self.max_backoff_ms,
            multiplier=self.multiplier,
            retry_timeouts=self.retry_timeouts,
        )

    @classmethod
    def from_pb(cls, pb: task_pb2.RetryPolicy) -> RetryPolicy:
        """From the protobuf message."""
        return cls(pb.max_attempts, pb.initial_backoff_ms, pb.max_backoff_ms, pb.multiplier, pb.retry_timeouts)


@dataclass(frozen=True)
class ModelUsage:
    """Tokens and cost a task used on one model."""

    model: str
    tokens_in: int
    tokens_out: int
    cost_usd: float
    tenant: str = ""

    @classmethod
    def from_pb(cls, pb: task_pb2.ModelUsage) -> ModelUsage:
        """From the protobuf message."""
        return cls(pb.model, pb.tokens_in, pb.tokens_out, pb.cost_usd, pb.tenant)


@dataclass(frozen=True)
class WorkflowWait:
    """An open wait of a workflow step: what signal ends it."""

    signal: str
    #: signal, approval or timer.
    kind: str
    #: For an approval: the lowest role that may decide it.
    role: str
    #: For an approval: what the approver is asked.
    prompt: str
    #: When it times out or fires, Unix milliseconds (0: never).
    due_at_ms: int

    @classmethod
    def from_pb(cls, pb: task_pb2.WorkflowWait) -> WorkflowWait:
        """From the protobuf message."""
        return cls(pb.signal, pb.kind, pb.role, pb.prompt, pb.due_at_ms)


@dataclass(frozen=True)
class WorkflowStep:
    """One step of a workflow instance."""

    id: str
    #: task, wait, approval, sleep or agent.
    kind: str
    #: PENDING, RUNNING, WAITING, SUCCEEDED, FAILED or SKIPPED.
    state: str
    #: Its output once done, decoded from JSON.
    output: Any
    error: str
    task_ids: list[str]
    waiting: list[WorkflowWait]
    started_at_ms: int
    ended_at_ms: int

    @classmethod
    def from_pb(cls, pb: task_pb2.WorkflowStep) -> WorkflowStep:
        """From the protobuf message."""
        return cls(
            id=pb.id,
            kind=pb.kind,
            state=pb.state,
            output=decode_json(pb.output_json),
            error=pb.error,
            task_ids=list(pb.task_ids),
            waiting=[WorkflowWait.from_pb(w) for w in pb.waiting],
            started_at_ms=pb.started_at_ms,
            ended_at_ms=pb.ended_at_ms,
        )


@dataclass(frozen=True)
class Task:
    """A task as the node stores it, with params and result decoded from JSON."""

    id: str
    tenant: str
    task_type: str
    params: Any
    state: TaskState
    #: Attempt number of the current or last run (1-based; 0 = not yet run).
    attempt: int
    #: The result (decoded JSON) when SUCCEEDED, else None.
    result: Any
    #: Why it FAILED, was CANCELLED or TIMED_OUT; while RETRYING, the last attempt's error.
    error: str
    priority: int
    timeout_ms: int
    idempotency_key: str
    retry: RetryPolicy | None
    parent_id: str
    security_level: SecurityLevel
    supervisor: str
    worker_kind: str
    created_at_ms: int
    updated_at_ms: int
    #: Sequence number of the task's latest event.
    seq: int
    children: list[str] = field(default_factory=list)
    result_signature: str = ""
    usage: list[ModelUsage] = field(default_factory=list)
    #: For a workflow instance: its steps, in definition order.
    steps: list[WorkflowStep] = field(default_factory=list)
    #: The concurrency key it shares a running limit with ("" for none).
    concurrency_key: str = ""
    #: Its debounce key ("" for none) and window in milliseconds.
    debounce_key: str = ""
    debounce_window_ms: int = 0

    @property
    def is_terminal(self) -> bool:
        """Whether the task has ended for good."""
        return self.state.is_terminal

    @classmethod
    def from_pb(cls, pb: task_pb2.Task) -> Task:
        """From the protobuf message."""
        spec = pb.spec
        return cls(
            id=pb.id,
            tenant=pb.tenant,
            task_type=spec.task_type,
            params=decode_json(spec.params_json),
            state=TaskState.from_pb(pb.state),
            attempt=pb.attempt,
            result=decode_json(pb.result_json),
            error=pb.error,
            priority=spec.priority,
            timeout_ms=spec.timeout_ms,
            idempotency_key=spec.idempotency_key,
            retry=RetryPolicy.from_pb(spec.retry) if spec.HasField("retry") else None,
            parent_id=spec.parent_id,
            security_level=SecurityLevel.from_pb(spec.security_level),
            supervisor=pb.supervisor,
            worker_kind=pb.worker_kind,
            created_at_ms=pb.created_at_ms,
            updated_at_ms=pb.updated_at_ms,
            seq=pb.seq,
            children=list(pb.children),
            result_signature=pb.result_signature,
            usage=[ModelUsage.from_pb(u) for u in pb.usage],
            steps=[WorkflowStep.from_pb(s) for s in pb.steps],
            concurrency_key=spec.concurrency_key,
            debounce_key=spec.debounce_key,
            debounce_window_ms=spec.debounce_window_ms,
        )


@dataclass(frozen=True)
class Submitted:
    """What `submit` returns: the task, and whether this call created it (False when the
    idempotency key matched a task submitted before, which is returned instead)."""

    task: Task
    created: bool

    @property
    def id(self) -> str:
        """The task's id."""
        return self.task.id


@dataclass(frozen=True)
class TaskPage:
    """One page of `list_tasks`: tasks newest first, and the token of the next page ("" at the end)."""

    tasks: list[Task]
    next_page_token: str


@dataclass(frozen=True)
class TaskEvent:
    """One transition or progress report of one task."""

    #: Global, strictly increasing position in the node's event log; watches resume from it.
    cursor: int
    task_id: str
    #: Per-task sequence, 1 for the QUEUED event.
    seq: int
    state: TaskState
    attempt: int
    #: Progress text, error, retry delay.
    message: str
    #: Progress in [0, 1] for progress events.
    progress: float
    #: The result (decoded JSON) on the SUCCEEDED event, else None.
    result: Any
    at_ms: int
    task_type: str
    tenant: str
    #: True for progress reports that do not change the state.
    is_progress: bool
    #: The delegating task, for events of sub-tasks.
    parent_id: str

    @property
    def is_terminal(self) -> bool:
        """Whether this is the task's last event (a terminal state, not a progress report)."""
        return self.state.is_terminal and not self.is_progress

    @classmethod
    def from_pb(cls, pb: task_pb2.TaskEvent) -> TaskEvent:
        """From the protobuf message."""
        return cls(
            cursor=pb.cursor,
            task_id=pb.task_id,
            seq=pb.seq,
            state=TaskState.from_pb(pb.state),
            attempt=pb.attempt,
            message=pb.message,
            progress=pb.progress,
            result=decode_json(pb.result_json),
            at_ms=pb.at_ms,
            task_type=pb.task_type,
            tenant=pb.tenant,
            is_progress=pb.is_progress,
            parent_id=pb.parent_id,
        )


@dataclass(frozen=True)
class TaskType:
    """A task type the node accepts: where it runs and the JSON Schemas of params and result."""

    task_type: str
    supervisor: str
    worker_kind: str
    executor: str
    params_schema: Any
    result_schema: Any

    @classmethod
    def from_pb(cls, pb: task_pb2.TaskType) -> TaskType:
        """From the protobuf message."""
        return cls(
            task_type=pb.task_type,
            supervisor=pb.supervisor,
            worker_kind=pb.worker_kind,
            executor=pb.executor,
            params_schema=decode_json(pb.params_schema_json),
            result_schema=decode_json(pb.result_schema_json),
        )


@dataclass(frozen=True)
class Workflow:
    """A registered workflow definition."""

    name: str
    version: int
    #: The definition as registered, decoded from JSON.
    definition: Any
    created_at_ms: int
    #: Who registered it (a subject, or `config`).
    created_by: str
    #: The task type that starts an instance: `workflow.<name>.run`.
    task_type: str
    description: str

    @classmethod
    def from_pb(cls, pb: workflow_pb2.WorkflowDefinition) -> Workflow:
        """From the protobuf message."""
        return cls(
            name=pb.name,
            version=pb.version,
            definition=decode_json(pb.definition_json),
            created_at_ms=pb.created_at_ms,
            created_by=pb.created_by,
            task_type=pb.task_type,
            description=pb.description,
        )


@dataclass(frozen=True)
class Registered:
    """What `register_workflow` returns: the definition, and False in `created` when this exact
    definition was registered before."""

    workflow: Workflow
    created: bool


@dataclass(frozen=True)
class Signalled:
    """What `signal` returns: the signal's place in the instance's inbox and the instance."""

    seq: int
    task: Task
