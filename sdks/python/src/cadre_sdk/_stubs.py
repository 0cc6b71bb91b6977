"""The generated service stubs, typed as Any: grpcio-tools writes them without annotations, and
the clients wrap every call in typed methods."""

from __future__ import annotations

from typing import Any, cast

from ._proto import task_pb2_grpc, worker_pb2_grpc, workflow_pb2_grpc


def tasks(channel: Any) -> Any:
    """A TaskService stub on a sync or asyncio channel."""
    return cast(Any, task_pb2_grpc).TaskServiceStub(channel)


def workflows(channel: Any) -> Any:
    """A WorkflowService stub on a sync or asyncio channel."""
    return cast(Any, workflow_pb2_grpc).WorkflowServiceStub(channel)


def workers(channel: Any) -> Any:
    """A WorkerService stub on a sync or asyncio channel."""
    return cast(Any, worker_pb2_grpc).WorkerServiceStub(channel)
