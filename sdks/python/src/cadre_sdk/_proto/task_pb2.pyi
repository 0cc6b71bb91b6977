# mypy: ignore-errors
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class TaskState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TASK_STATE_UNSPECIFIED: _ClassVar[TaskState]
    TASK_STATE_QUEUED: _ClassVar[TaskState]
    TASK_STATE_RUNNING: _ClassVar[TaskState]
    TASK_STATE_RETRYING: _ClassVar[TaskState]
    TASK_STATE_SUCCEEDED: _ClassVar[TaskState]
    TASK_STATE_FAILED: _ClassVar[TaskState]
    TASK_STATE_CANCELLED: _ClassVar[TaskState]
    TASK_STATE_TIMED_OUT: _ClassVar[TaskState]

class SecurityLevel(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SECURITY_LEVEL_STANDARD: _ClassVar[SecurityLevel]
    SECURITY_LEVEL_VERIFIED: _ClassVar[SecurityLevel]
    SECURITY_LEVEL_FORTRESS: _ClassVar[SecurityLevel]
TASK_STATE_UNSPECIFIED: TaskState
TASK_STATE_QUEUED: TaskState
TASK_STATE_RUNNING: TaskState
TASK_STATE_RETRYING: TaskState
TASK_STATE_SUCCEEDED: TaskState
TASK_STATE_FAILED: TaskState
TASK_STATE_CANCELLED: TaskState
TASK_STATE_TIMED_OUT: TaskState
SECURITY_LEVEL_STANDARD: SecurityLevel
SECURITY_LEVEL_VERIFIED: SecurityLevel
SECURITY_LEVEL_FORTRESS: SecurityLevel

class RetryPolicy(_message.Message):
    __slots__ = ("max_attempts", "initial_backoff_ms", "max_backoff_ms", "multiplier", "retry_timeouts")
    MAX_ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    INITIAL_BACKOFF_MS_FIELD_NUMBER: _ClassVar[int]
    MAX_BACKOFF_MS_FIELD_NUMBER: _ClassVar[int]
    MULTIPLIER_FIELD_NUMBER: _ClassVar[int]
    RETRY_TIMEOUTS_FIELD_NUMBER: _ClassVar[int]
    max_attempts: int
    initial_backoff_ms: int
    max_backoff_ms: int
    multiplier: float
    retry_timeouts: bool
    def __init__(self, max_attempts: _Optional[int] = ..., initial_backoff_ms: _Optional[int] = ..., max_backoff_ms: _Optional[int] = ..., multiplier: _Optional[float] = ..., retry_timeouts: _Optional[bool] = ...) -> None: ...

class TaskSpec(_message.Message):
    __slots__ = ("task_type", "params_json", "priority", "timeout_ms", "retry", "idempotency_key", "parent_id", "security_level", "concurrency_key", "debounce_key", "debounce_window_ms")
    TASK_TYPE_FIELD_NUMBER: _ClassVar[int]
    PARAMS_JSON_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    RETRY_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    PARENT_ID_FIELD_NUMBER: _ClassVar[int]
    SECURITY_LEVEL_FIELD_NUMBER: _ClassVar[int]
    CONCURRENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    DEBOUNCE_KEY_FIELD_NUMBER: _ClassVar[int]
    DEBOUNCE_WINDOW_MS_FIELD_NUMBER: _ClassVar[int]
    task_type: str
    params_json: str
    priority: int
    timeout_ms: int
    retry: RetryPolicy
    idempotency_key: str
    parent_id: str
    security_level: SecurityLevel
    concurrency_key: str
    debounce_key: str
    debounce_window_ms: int
    def __init__(self, task_type: _Optional[str] = ..., params_json: _Optional[str] = ..., priority: _Optional[int] = ..., timeout_ms: _Optional[int] = ..., retry: _Optional[_Union[RetryPolicy, _Mapping]] = ..., idempotency_key: _Optional[str] = ..., parent_id: _Optional[str] = ..., security_level: _Optional[_Union[SecurityLevel, str]] = ..., concurrency_key: _Optional[str] = ..., debounce_key: _Optional[str] = ..., debounce_window_ms: _Optional[int] = ...) -> None: ...

class Task(_message.Message):
    __slots__ = ("id", "tenant", "spec", "state", "attempt", "supervisor", "worker_kind", "result_json", "error", "created_at_ms", "updated_at_ms", "seq", "children", "result_signature", "usage", "steps", "replay_of")
    ID_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    SUPERVISOR_FIELD_NUMBER: _ClassVar[int]
    WORKER_KIND_FIELD_NUMBER: _ClassVar[int]
    RESULT_JSON_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    CHILDREN_FIELD_NUMBER: _ClassVar[int]
    RESULT_SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    REPLAY_OF_FIELD_NUMBER: _ClassVar[int]
    id: str
    tenant: str
    spec: TaskSpec
    state: TaskState
    attempt: int
    supervisor: str
    worker_kind: str
    result_json: str
    error: str
    created_at_ms: int
    updated_at_ms: int
    seq: int
    children: _containers.RepeatedScalarFieldContainer[str]
    result_signature: str
    usage: _containers.RepeatedCompositeFieldContainer[ModelUsage]
    steps: _containers.RepeatedCompositeFieldContainer[WorkflowStep]
    replay_of: str
    def __init__(self, id: _Optional[str] = ..., tenant: _Optional[str] = ..., spec: _Optional[_Union[TaskSpec, _Mapping]] = ..., state: _Optional[_Union[TaskState, str]] = ..., attempt: _Optional[int] = ..., supervisor: _Optional[str] = ..., worker_kind: _Optional[str] = ..., result_json: _Optional[str] = ..., error: _Optional[str] = ..., created_at_ms: _Optional[int] = ..., updated_at_ms: _Optional[int] = ..., seq: _Optional[int] = ..., children: _Optional[_Iterable[str]] = ..., result_signature: _Optional[str] = ..., usage: _Optional[_Iterable[_Union[ModelUsage, _Mapping]]] = ..., steps: _Optional[_Iterable[_Union[WorkflowStep, _Mapping]]] = ..., replay_of: _Optional[str] = ...) -> None: ...

class WorkflowStep(_message.Message):
    __slots__ = ("id", "kind", "state", "output_json", "error", "task_ids", "waiting", "started_at_ms", "ended_at_ms")
    ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_JSON_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    TASK_IDS_FIELD_NUMBER: _ClassVar[int]
    WAITING_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    ENDED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    id: str
    kind: str
    state: str
    output_json: str
    error: str
    task_ids: _containers.RepeatedScalarFieldContainer[str]
    waiting: _containers.RepeatedCompositeFieldContainer[WorkflowWait]
    started_at_ms: int
    ended_at_ms: int
    def __init__(self, id: _Optional[str] = ..., kind: _Optional[str] = ..., state: _Optional[str] = ..., output_json: _Optional[str] = ..., error: _Optional[str] = ..., task_ids: _Optional[_Iterable[str]] = ..., waiting: _Optional[_Iterable[_Union[WorkflowWait, _Mapping]]] = ..., started_at_ms: _Optional[int] = ..., ended_at_ms: _Optional[int] = ...) -> None: ...

class WorkflowWait(_message.Message):
    __slots__ = ("signal", "kind", "role", "prompt", "due_at_ms")
    SIGNAL_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    DUE_AT_MS_FIELD_NUMBER: _ClassVar[int]
    signal: str
    kind: str
    role: str
    prompt: str
    due_at_ms: int
    def __init__(self, signal: _Optional[str] = ..., kind: _Optional[str] = ..., role: _Optional[str] = ..., prompt: _Optional[str] = ..., due_at_ms: _Optional[int] = ...) -> None: ...

class ModelUsage(_message.Message):
    __slots__ = ("model", "tokens_in", "tokens_out", "cost_usd", "tenant")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    TOKENS_IN_FIELD_NUMBER: _ClassVar[int]
    TOKENS_OUT_FIELD_NUMBER: _ClassVar[int]
    COST_USD_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    model: str
    tokens_in: int
    tokens_out: int
    cost_usd: float
    tenant: str
    def __init__(self, model: _Optional[str] = ..., tokens_in: _Optional[int] = ..., tokens_out: _Optional[int] = ..., cost_usd: _Optional[float] = ..., tenant: _Optional[str] = ...) -> None: ...

class TaskEvent(_message.Message):
    __slots__ = ("cursor", "task_id", "seq", "state", "attempt", "message", "progress", "result_json", "at_ms", "task_type", "tenant", "is_progress", "parent_id")
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    RESULT_JSON_FIELD_NUMBER: _ClassVar[int]
    AT_MS_FIELD_NUMBER: _ClassVar[int]
    TASK_TYPE_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    IS_PROGRESS_FIELD_NUMBER: _ClassVar[int]
    PARENT_ID_FIELD_NUMBER: _ClassVar[int]
    cursor: int
    task_id: str
    seq: int
    state: TaskState
    attempt: int
    message: str
    progress: float
    result_json: str
    at_ms: int
    task_type: str
    tenant: str
    is_progress: bool
    parent_id: str
    def __init__(self, cursor: _Optional[int] = ..., task_id: _Optional[str] = ..., seq: _Optional[int] = ..., state: _Optional[_Union[TaskState, str]] = ..., attempt: _Optional[int] = ..., message: _Optional[str] = ..., progress: _Optional[float] = ..., result_json: _Optional[str] = ..., at_ms: _Optional[int] = ..., task_type: _Optional[str] = ..., tenant: _Optional[str] = ..., is_progress: _Optional[bool] = ..., parent_id: _Optional[str] = ...) -> None: ...

class SubmitRequest(_message.Message):
    __slots__ = ("spec",)
    SPEC_FIELD_NUMBER: _ClassVar[int]
    spec: TaskSpec
    def __init__(self, spec: _Optional[_Union[TaskSpec, _Mapping]] = ...) -> None: ...

class SubmitResponse(_message.Message):
    __slots__ = ("task", "created")
    TASK_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    task: Task
    created: bool
    def __init__(self, task: _Optional[_Union[Task, _Mapping]] = ..., created: _Optional[bool] = ...) -> None: ...

class SubmitAndWaitRequest(_message.Message):
    __slots__ = ("spec", "wait_ms")
    SPEC_FIELD_NUMBER: _ClassVar[int]
    WAIT_MS_FIELD_NUMBER: _ClassVar[int]
    spec: TaskSpec
    wait_ms: int
    def __init__(self, spec: _Optional[_Union[TaskSpec, _Mapping]] = ..., wait_ms: _Optional[int] = ...) -> None: ...

class GetRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class CancelRequest(_message.Message):
    __slots__ = ("id", "reason")
    ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    id: str
    reason: str
    def __init__(self, id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class ListRequest(_message.Message):
    __slots__ = ("states", "task_type_prefix", "parent_id", "page_size", "page_token")
    STATES_FIELD_NUMBER: _ClassVar[int]
    TASK_TYPE_PREFIX_FIELD_NUMBER: _ClassVar[int]
    PARENT_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    states: _containers.RepeatedScalarFieldContainer[TaskState]
    task_type_prefix: str
    parent_id: str
    page_size: int
    page_token: str
    def __init__(self, states: _Optional[_Iterable[_Union[TaskState, str]]] = ..., task_type_prefix: _Optional[str] = ..., parent_id: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListResponse(_message.Message):
    __slots__ = ("tasks", "next_page_token")
    TASKS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    tasks: _containers.RepeatedCompositeFieldContainer[Task]
    next_page_token: str
    def __init__(self, tasks: _Optional[_Iterable[_Union[Task, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class WatchRequest(_message.Message):
    __slots__ = ("task_id", "task_type_prefix", "after_cursor", "states", "parent_id", "live_only")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    TASK_TYPE_PREFIX_FIELD_NUMBER: _ClassVar[int]
    AFTER_CURSOR_FIELD_NUMBER: _ClassVar[int]
    STATES_FIELD_NUMBER: _ClassVar[int]
    PARENT_ID_FIELD_NUMBER: _ClassVar[int]
    LIVE_ONLY_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    task_type_prefix: str
    after_cursor: int
    states: _containers.RepeatedScalarFieldContainer[TaskState]
    parent_id: str
    live_only: bool
    def __init__(self, task_id: _Optional[str] = ..., task_type_prefix: _Optional[str] = ..., after_cursor: _Optional[int] = ..., states: _Optional[_Iterable[_Union[TaskState, str]]] = ..., parent_id: _Optional[str] = ..., live_only: _Optional[bool] = ...) -> None: ...

class ListTaskTypesRequest(_message.Message):
    __slots__ = ("task_type_prefix",)
    TASK_TYPE_PREFIX_FIELD_NUMBER: _ClassVar[int]
    task_type_prefix: str
    def __init__(self, task_type_prefix: _Optional[str] = ...) -> None: ...

class TaskType(_message.Message):
    __slots__ = ("task_type", "supervisor", "worker_kind", "executor", "params_schema_json", "result_schema_json")
    TASK_TYPE_FIELD_NUMBER: _ClassVar[int]
    SUPERVISOR_FIELD_NUMBER: _ClassVar[int]
    WORKER_KIND_FIELD_NUMBER: _ClassVar[int]
    EXECUTOR_FIELD_NUMBER: _ClassVar[int]
    PARAMS_SCHEMA_JSON_FIELD_NUMBER: _ClassVar[int]
    RESULT_SCHEMA_JSON_FIELD_NUMBER: _ClassVar[int]
    task_type: str
    supervisor: str
    worker_kind: str
    executor: str
    params_schema_json: str
    result_schema_json: str
    def __init__(self, task_type: _Optional[str] = ..., supervisor: _Optional[str] = ..., worker_kind: _Optional[str] = ..., executor: _Optional[str] = ..., params_schema_json: _Optional[str] = ..., result_schema_json: _Optional[str] = ...) -> None: ...

class ListTaskTypesResponse(_message.Message):
    __slots__ = ("types",)
    TYPES_FIELD_NUMBER: _ClassVar[int]
    types: _containers.RepeatedCompositeFieldContainer[TaskType]
    def __init__(self, types: _Optional[_Iterable[_Union[TaskType, _Mapping]]] = ...) -> None: ...

class TaskQuery(_message.Message):
    __slots__ = ("states", "task_type_prefix", "tenant", "created_after_ms", "created_before_ms", "error_contains")
    STATES_FIELD_NUMBER: _ClassVar[int]
    TASK_TYPE_PREFIX_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    CREATED_AFTER_MS_FIELD_NUMBER: _ClassVar[int]
    CREATED_BEFORE_MS_FIELD_NUMBER: _ClassVar[int]
    ERROR_CONTAINS_FIELD_NUMBER: _ClassVar[int]
    states: _containers.RepeatedScalarFieldContainer[TaskState]
    task_type_prefix: str
    tenant: str
    created_after_ms: int
    created_before_ms: int
    error_contains: str
    def __init__(self, states: _Optional[_Iterable[_Union[TaskState, str]]] = ..., task_type_prefix: _Optional[str] = ..., tenant: _Optional[str] = ..., created_after_ms: _Optional[int] = ..., created_before_ms: _Optional[int] = ..., error_contains: _Optional[str] = ...) -> None: ...

class BulkRequest(_message.Message):
    __slots__ = ("query", "dry_run", "limit", "reason")
    QUERY_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    query: TaskQuery
    dry_run: bool
    limit: int
    reason: str
    def __init__(self, query: _Optional[_Union[TaskQuery, _Mapping]] = ..., dry_run: _Optional[bool] = ..., limit: _Optional[int] = ..., reason: _Optional[str] = ...) -> None: ...

class BulkFailure(_message.Message):
    __slots__ = ("task_id", "code", "message")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    code: str
    message: str
    def __init__(self, task_id: _Optional[str] = ..., code: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class BulkReplayed(_message.Message):
    __slots__ = ("original_id", "task_id")
    ORIGINAL_ID_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    original_id: str
    task_id: str
    def __init__(self, original_id: _Optional[str] = ..., task_id: _Optional[str] = ...) -> None: ...

class BulkResponse(_message.Message):
    __slots__ = ("matched", "more", "acted", "failed", "failures", "replays", "task_ids", "dry_run")
    MATCHED_FIELD_NUMBER: _ClassVar[int]
    MORE_FIELD_NUMBER: _ClassVar[int]
    ACTED_FIELD_NUMBER: _ClassVar[int]
    FAILED_FIELD_NUMBER: _ClassVar[int]
    FAILURES_FIELD_NUMBER: _ClassVar[int]
    REPLAYS_FIELD_NUMBER: _ClassVar[int]
    TASK_IDS_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    matched: int
    more: bool
    acted: int
    failed: int
    failures: _containers.RepeatedCompositeFieldContainer[BulkFailure]
    replays: _containers.RepeatedCompositeFieldContainer[BulkReplayed]
    task_ids: _containers.RepeatedScalarFieldContainer[str]
    dry_run: bool
    def __init__(self, matched: _Optional[int] = ..., more: _Optional[bool] = ..., acted: _Optional[int] = ..., failed: _Optional[int] = ..., failures: _Optional[_Iterable[_Union[BulkFailure, _Mapping]]] = ..., replays: _Optional[_Iterable[_Union[BulkReplayed, _Mapping]]] = ..., task_ids: _Optional[_Iterable[str]] = ..., dry_run: _Optional[bool] = ...) -> None: ...
