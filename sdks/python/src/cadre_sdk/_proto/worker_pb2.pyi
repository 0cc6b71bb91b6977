# mypy: ignore-errors
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class WorkerMessage(_message.Message):
    __slots__ = ("register", "heartbeat", "progress", "result")
    REGISTER_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    register: WorkerRegister
    heartbeat: WorkerHeartbeat
    progress: WorkerProgress
    result: WorkerResult
    def __init__(self, register: _Optional[_Union[WorkerRegister, _Mapping]] = ..., heartbeat: _Optional[_Union[WorkerHeartbeat, _Mapping]] = ..., progress: _Optional[_Union[WorkerProgress, _Mapping]] = ..., result: _Optional[_Union[WorkerResult, _Mapping]] = ...) -> None: ...

class WorkerRegister(_message.Message):
    __slots__ = ("worker_id", "kinds", "max_concurrency")
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    KINDS_FIELD_NUMBER: _ClassVar[int]
    MAX_CONCURRENCY_FIELD_NUMBER: _ClassVar[int]
    worker_id: str
    kinds: _containers.RepeatedScalarFieldContainer[str]
    max_concurrency: int
    def __init__(self, worker_id: _Optional[str] = ..., kinds: _Optional[_Iterable[str]] = ..., max_concurrency: _Optional[int] = ...) -> None: ...

class WorkerHeartbeat(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class WorkerProgress(_message.Message):
    __slots__ = ("task_id", "attempt", "fraction", "message")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    FRACTION_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    attempt: int
    fraction: float
    message: str
    def __init__(self, task_id: _Optional[str] = ..., attempt: _Optional[int] = ..., fraction: _Optional[float] = ..., message: _Optional[str] = ...) -> None: ...

class WorkerResult(_message.Message):
    __slots__ = ("task_id", "attempt", "result_json", "error")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    RESULT_JSON_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    attempt: int
    result_json: str
    error: WorkerError
    def __init__(self, task_id: _Optional[str] = ..., attempt: _Optional[int] = ..., result_json: _Optional[str] = ..., error: _Optional[_Union[WorkerError, _Mapping]] = ...) -> None: ...

class WorkerError(_message.Message):
    __slots__ = ("message", "retryable")
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    RETRYABLE_FIELD_NUMBER: _ClassVar[int]
    message: str
    retryable: bool
    def __init__(self, message: _Optional[str] = ..., retryable: _Optional[bool] = ...) -> None: ...

class ServerMessage(_message.Message):
    __slots__ = ("registered", "task", "cancel")
    REGISTERED_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    CANCEL_FIELD_NUMBER: _ClassVar[int]
    registered: ServerRegistered
    task: ServerTask
    cancel: ServerCancel
    def __init__(self, registered: _Optional[_Union[ServerRegistered, _Mapping]] = ..., task: _Optional[_Union[ServerTask, _Mapping]] = ..., cancel: _Optional[_Union[ServerCancel, _Mapping]] = ...) -> None: ...

class ServerRegistered(_message.Message):
    __slots__ = ("heartbeat_interval_ms", "session_id")
    HEARTBEAT_INTERVAL_MS_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    heartbeat_interval_ms: int
    session_id: int
    def __init__(self, heartbeat_interval_ms: _Optional[int] = ..., session_id: _Optional[int] = ...) -> None: ...

class ServerTask(_message.Message):
    __slots__ = ("task_id", "task_type", "attempt", "params_json")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    TASK_TYPE_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    PARAMS_JSON_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    task_type: str
    attempt: int
    params_json: str
    def __init__(self, task_id: _Optional[str] = ..., task_type: _Optional[str] = ..., attempt: _Optional[int] = ..., params_json: _Optional[str] = ...) -> None: ...

class ServerCancel(_message.Message):
    __slots__ = ("task_id", "attempt")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    attempt: int
    def __init__(self, task_id: _Optional[str] = ..., attempt: _Optional[int] = ...) -> None: ...
