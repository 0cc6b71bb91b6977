"""cadre_sdk: the Python SDK of the cadre task orchestrator.

- `Client` (blocking) and `AsyncClient` (asyncio): submit, submit_and_wait, get, list_tasks,
  iter_tasks, cancel, watch (resuming after disconnects), wait, task_types, workflows and
  signals, over gRPC.
- `Worker`: serve task types over WorkerService from decorated functions.
- `CadreError` and one subclass per gRPC status (`NotFound`, `InvalidArgument`, ...).
- Results as dataclasses: `Task`, `TaskEvent`, `TaskType`, `Workflow`, ...
"""

from .aio import AsyncClient
from .client import Client, connect
from .errors import (
    Aborted,
    AlreadyExists,
    CadreError,
    Cancelled,
    DeadlineExceeded,
    FailedPrecondition,
    Internal,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
    Unimplemented,
)
from .models import (
    ModelUsage,
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
    WorkflowStep,
    WorkflowWait,
)
from .worker import TaskCancelled, TaskContext, TaskError, Worker

__version__ = "0.1.0"

__all__ = [
    "Aborted",
    "AlreadyExists",
    "AsyncClient",
    "CadreError",
    "Cancelled",
    "Client",
    "DeadlineExceeded",
    "FailedPrecondition",
    "Internal",
    "InvalidArgument",
    "ModelUsage",
    "NotFound",
    "PermissionDenied",
    "Registered",
    "ResourceExhausted",
    "RetryPolicy",
    "SecurityLevel",
    "Signalled",
    "Submitted",
    "Task",
    "TaskCancelled",
    "TaskContext",
    "TaskError",
    "TaskEvent",
    "TaskPage",
    "TaskState",
    "TaskType",
    "Unauthenticated",
    "Unavailable",
    "Unimplemented",
    "Worker",
    "Workflow",
    "WorkflowStep",
    "WorkflowWait",
    "connect",
]
