"""Typed errors: every failed call raises a `CadreError`, of the subclass named for its gRPC
status code, carrying the node's message (`str(err)`, `err.message`) and the code (`err.code`)."""

from __future__ import annotations

import grpc


class CadreError(Exception):
    """A call to a cadre node failed. `code` is the gRPC status, `message` the node's words."""

    #: The status this class stands for (the base class: whatever the node said).
    status: grpc.StatusCode = grpc.StatusCode.UNKNOWN

    def __init__(self, message: str, code: grpc.StatusCode | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code if code is not None else type(self).status

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, code={self.code.name})"


class InvalidArgument(CadreError):
    """The request was malformed: bad params (the message names the failing path), bad id..."""

    status = grpc.StatusCode.INVALID_ARGUMENT


class NotFound(CadreError):
    """No such task, workflow or key in the caller's tenant (another tenant's task is not found)."""

    status = grpc.StatusCode.NOT_FOUND


class AlreadyExists(CadreError):
    """A name and version that exists with a different definition."""

    status = grpc.StatusCode.ALREADY_EXISTS


class PermissionDenied(CadreError):
    """The credential is valid but its role is too low for the call."""

    status = grpc.StatusCode.PERMISSION_DENIED


class Unauthenticated(CadreError):
    """No credential, or one the node does not accept (expired, revoked, badly signed)."""

    status = grpc.StatusCode.UNAUTHENTICATED


class ResourceExhausted(CadreError):
    """A quota, budget, rate or size limit refused the call."""

    status = grpc.StatusCode.RESOURCE_EXHAUSTED


class FailedPrecondition(CadreError):
    """The call does not fit the current state (e.g. a task that is already finished)."""

    status = grpc.StatusCode.FAILED_PRECONDITION


class Unavailable(CadreError):
    """The node could not be reached, or is shutting down; the SDK already retried where safe."""

    status = grpc.StatusCode.UNAVAILABLE


class DeadlineExceeded(CadreError):
    """The call took longer than its timeout."""

    status = grpc.StatusCode.DEADLINE_EXCEEDED


class Cancelled(CadreError):
    """The call was cancelled (by this process, or by the node)."""

    status = grpc.StatusCode.CANCELLED


class Aborted(CadreError):
    """The node gave up on the call because of a conflict; it may be retried."""

    status = grpc.StatusCode.ABORTED


class Unimplemented(CadreError):
    """The node does not serve this call (e.g. WorkerService on an orchestrator-only node)."""

    status = grpc.StatusCode.UNIMPLEMENTED


class Internal(CadreError):
    """The node failed while handling the call."""

    status = grpc.StatusCode.INTERNAL


_BY_CODE: dict[grpc.StatusCode, type[CadreError]] = {
    cls.status: cls
    for cls in (
        InvalidArgument,
        NotFound,
        AlreadyExists,
        PermissionDenied,
        Unauthenticated,
        ResourceExhausted,
        FailedPrecondition,
        Unavailable,
        DeadlineExceeded,
        Cancelled,
        Aborted,
        Unimplemented,
        Internal,
    )
}


def error_for(code: grpc.StatusCode, message: str) -> CadreError:
    """The `CadreError` subclass instance for a status code (the base class for other codes)."""
    return _BY_CODE.get(code, CadreError)(message, code)


def from_rpc_error(err: grpc.RpcError) -> CadreError:
    """Translates a grpc error (sync `grpc.RpcError` or `grpc.aio.AioRpcError`) into a CadreError."""
    code_fn = getattr(err, "code", None)
    details_fn = getattr(err, "details", None)
    code = code_fn() if callable(code_fn) else grpc.StatusCode.UNKNOWN
    details = details_fn() if callable(details_fn) else None
    if not isinstance(code, grpc.StatusCode):
        code = grpc.StatusCode.UNKNOWN
    return error_for(code, str(details) if details else code.name)
