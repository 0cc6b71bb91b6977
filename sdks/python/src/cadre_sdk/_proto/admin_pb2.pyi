# mypy: ignore-errors
from . import task_pb2 as _task_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class PoolStatus(_message.Message):
    __slots__ = ("worker_kind", "target_size", "live_workers", "busy_workers", "queue_depth", "restarts", "paused")
    WORKER_KIND_FIELD_NUMBER: _ClassVar[int]
    TARGET_SIZE_FIELD_NUMBER: _ClassVar[int]
    LIVE_WORKERS_FIELD_NUMBER: _ClassVar[int]
    BUSY_WORKERS_FIELD_NUMBER: _ClassVar[int]
    QUEUE_DEPTH_FIELD_NUMBER: _ClassVar[int]
    RESTARTS_FIELD_NUMBER: _ClassVar[int]
    PAUSED_FIELD_NUMBER: _ClassVar[int]
    worker_kind: str
    target_size: int
    live_workers: int
    busy_workers: int
    queue_depth: int
    restarts: int
    paused: bool
    def __init__(self, worker_kind: _Optional[str] = ..., target_size: _Optional[int] = ..., live_workers: _Optional[int] = ..., busy_workers: _Optional[int] = ..., queue_depth: _Optional[int] = ..., restarts: _Optional[int] = ..., paused: _Optional[bool] = ...) -> None: ...

class SupervisorStatus(_message.Message):
    __slots__ = ("name", "state", "restarts", "pools", "recent_restarts", "max_restarts", "node_id", "address")
    NAME_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    RESTARTS_FIELD_NUMBER: _ClassVar[int]
    POOLS_FIELD_NUMBER: _ClassVar[int]
    RECENT_RESTARTS_FIELD_NUMBER: _ClassVar[int]
    MAX_RESTARTS_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    name: str
    state: str
    restarts: int
    pools: _containers.RepeatedCompositeFieldContainer[PoolStatus]
    recent_restarts: int
    max_restarts: int
    node_id: str
    address: str
    def __init__(self, name: _Optional[str] = ..., state: _Optional[str] = ..., restarts: _Optional[int] = ..., pools: _Optional[_Iterable[_Union[PoolStatus, _Mapping]]] = ..., recent_restarts: _Optional[int] = ..., max_restarts: _Optional[int] = ..., node_id: _Optional[str] = ..., address: _Optional[str] = ...) -> None: ...

class StatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class StatusResponse(_message.Message):
    __slots__ = ("node_id", "version", "supervisors", "pending_tasks", "pauses")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    SUPERVISORS_FIELD_NUMBER: _ClassVar[int]
    PENDING_TASKS_FIELD_NUMBER: _ClassVar[int]
    PAUSES_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    version: str
    supervisors: _containers.RepeatedCompositeFieldContainer[SupervisorStatus]
    pending_tasks: int
    pauses: _containers.RepeatedCompositeFieldContainer[Pause]
    def __init__(self, node_id: _Optional[str] = ..., version: _Optional[str] = ..., supervisors: _Optional[_Iterable[_Union[SupervisorStatus, _Mapping]]] = ..., pending_tasks: _Optional[int] = ..., pauses: _Optional[_Iterable[_Union[Pause, _Mapping]]] = ...) -> None: ...

class ScaleRequest(_message.Message):
    __slots__ = ("supervisor", "worker_kind", "replicas")
    SUPERVISOR_FIELD_NUMBER: _ClassVar[int]
    WORKER_KIND_FIELD_NUMBER: _ClassVar[int]
    REPLICAS_FIELD_NUMBER: _ClassVar[int]
    supervisor: str
    worker_kind: str
    replicas: int
    def __init__(self, supervisor: _Optional[str] = ..., worker_kind: _Optional[str] = ..., replicas: _Optional[int] = ...) -> None: ...

class ScaleResponse(_message.Message):
    __slots__ = ("pool",)
    POOL_FIELD_NUMBER: _ClassVar[int]
    pool: PoolStatus
    def __init__(self, pool: _Optional[_Union[PoolStatus, _Mapping]] = ...) -> None: ...

class ReloadConfigRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ReloadConfigResponse(_message.Message):
    __slots__ = ("changes",)
    CHANGES_FIELD_NUMBER: _ClassVar[int]
    changes: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, changes: _Optional[_Iterable[str]] = ...) -> None: ...

class IssueTokenRequest(_message.Message):
    __slots__ = ("subject", "tenant", "role", "ttl_secs")
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    TTL_SECS_FIELD_NUMBER: _ClassVar[int]
    subject: str
    tenant: str
    role: str
    ttl_secs: int
    def __init__(self, subject: _Optional[str] = ..., tenant: _Optional[str] = ..., role: _Optional[str] = ..., ttl_secs: _Optional[int] = ...) -> None: ...

class IssueTokenResponse(_message.Message):
    __slots__ = ("token", "expires_at_ms", "token_id", "key_id")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_MS_FIELD_NUMBER: _ClassVar[int]
    TOKEN_ID_FIELD_NUMBER: _ClassVar[int]
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    token: str
    expires_at_ms: int
    token_id: str
    key_id: str
    def __init__(self, token: _Optional[str] = ..., expires_at_ms: _Optional[int] = ..., token_id: _Optional[str] = ..., key_id: _Optional[str] = ...) -> None: ...

class RevokeTokenRequest(_message.Message):
    __slots__ = ("token_id", "subject")
    TOKEN_ID_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    token_id: str
    subject: str
    def __init__(self, token_id: _Optional[str] = ..., subject: _Optional[str] = ...) -> None: ...

class RevokeTokenResponse(_message.Message):
    __slots__ = ("revoked_at_ms", "expires_at_ms")
    REVOKED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_MS_FIELD_NUMBER: _ClassVar[int]
    revoked_at_ms: int
    expires_at_ms: int
    def __init__(self, revoked_at_ms: _Optional[int] = ..., expires_at_ms: _Optional[int] = ...) -> None: ...

class RotateSigningKeyRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class RotateSigningKeyResponse(_message.Message):
    __slots__ = ("key_id", "previous_retires_at_ms")
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_RETIRES_AT_MS_FIELD_NUMBER: _ClassVar[int]
    key_id: str
    previous_retires_at_ms: int
    def __init__(self, key_id: _Optional[str] = ..., previous_retires_at_ms: _Optional[int] = ...) -> None: ...

class ApiKey(_message.Message):
    __slots__ = ("id", "name", "tenant", "role", "created_at_ms", "revoked_at_ms", "expires_at_ms")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    REVOKED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_MS_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    tenant: str
    role: str
    created_at_ms: int
    revoked_at_ms: int
    expires_at_ms: int
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., tenant: _Optional[str] = ..., role: _Optional[str] = ..., created_at_ms: _Optional[int] = ..., revoked_at_ms: _Optional[int] = ..., expires_at_ms: _Optional[int] = ...) -> None: ...

class CreateApiKeyRequest(_message.Message):
    __slots__ = ("name", "tenant", "role", "ttl_secs")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    TTL_SECS_FIELD_NUMBER: _ClassVar[int]
    name: str
    tenant: str
    role: str
    ttl_secs: int
    def __init__(self, name: _Optional[str] = ..., tenant: _Optional[str] = ..., role: _Optional[str] = ..., ttl_secs: _Optional[int] = ...) -> None: ...

class CreateApiKeyResponse(_message.Message):
    __slots__ = ("key", "secret")
    KEY_FIELD_NUMBER: _ClassVar[int]
    SECRET_FIELD_NUMBER: _ClassVar[int]
    key: ApiKey
    secret: str
    def __init__(self, key: _Optional[_Union[ApiKey, _Mapping]] = ..., secret: _Optional[str] = ...) -> None: ...

class ListApiKeysRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListApiKeysResponse(_message.Message):
    __slots__ = ("keys",)
    KEYS_FIELD_NUMBER: _ClassVar[int]
    keys: _containers.RepeatedCompositeFieldContainer[ApiKey]
    def __init__(self, keys: _Optional[_Iterable[_Union[ApiKey, _Mapping]]] = ...) -> None: ...

class RevokeApiKeyRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class UsageRequest(_message.Message):
    __slots__ = ("tenant", "day")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    DAY_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    day: str
    def __init__(self, tenant: _Optional[str] = ..., day: _Optional[str] = ...) -> None: ...

class UsageResponse(_message.Message):
    __slots__ = ("day", "usage")
    DAY_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    day: str
    usage: _containers.RepeatedCompositeFieldContainer[_task_pb2.ModelUsage]
    def __init__(self, day: _Optional[str] = ..., usage: _Optional[_Iterable[_Union[_task_pb2.ModelUsage, _Mapping]]] = ...) -> None: ...

class Pause(_message.Message):
    __slots__ = ("scope", "supervisor", "worker_kind", "prefix", "tenant", "paused_at_ms", "paused_by", "reason")
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    SUPERVISOR_FIELD_NUMBER: _ClassVar[int]
    WORKER_KIND_FIELD_NUMBER: _ClassVar[int]
    PREFIX_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    PAUSED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    PAUSED_BY_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    scope: str
    supervisor: str
    worker_kind: str
    prefix: str
    tenant: str
    paused_at_ms: int
    paused_by: str
    reason: str
    def __init__(self, scope: _Optional[str] = ..., supervisor: _Optional[str] = ..., worker_kind: _Optional[str] = ..., prefix: _Optional[str] = ..., tenant: _Optional[str] = ..., paused_at_ms: _Optional[int] = ..., paused_by: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class PauseRequest(_message.Message):
    __slots__ = ("pause",)
    PAUSE_FIELD_NUMBER: _ClassVar[int]
    pause: Pause
    def __init__(self, pause: _Optional[_Union[Pause, _Mapping]] = ...) -> None: ...

class PauseResponse(_message.Message):
    __slots__ = ("pause", "created")
    PAUSE_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    pause: Pause
    created: bool
    def __init__(self, pause: _Optional[_Union[Pause, _Mapping]] = ..., created: _Optional[bool] = ...) -> None: ...

class ResumeRequest(_message.Message):
    __slots__ = ("pause",)
    PAUSE_FIELD_NUMBER: _ClassVar[int]
    pause: Pause
    def __init__(self, pause: _Optional[_Union[Pause, _Mapping]] = ...) -> None: ...

class ResumeResponse(_message.Message):
    __slots__ = ("resumed",)
    RESUMED_FIELD_NUMBER: _ClassVar[int]
    resumed: bool
    def __init__(self, resumed: _Optional[bool] = ...) -> None: ...

class ListPausesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListPausesResponse(_message.Message):
    __slots__ = ("pauses",)
    PAUSES_FIELD_NUMBER: _ClassVar[int]
    pauses: _containers.RepeatedCompositeFieldContainer[Pause]
    def __init__(self, pauses: _Optional[_Iterable[_Union[Pause, _Mapping]]] = ...) -> None: ...

class LlmFallback(_message.Message):
    __slots__ = ("provider", "model", "error")
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    provider: str
    model: str
    error: str
    def __init__(self, provider: _Optional[str] = ..., model: _Optional[str] = ..., error: _Optional[str] = ...) -> None: ...

class LlmCall(_message.Message):
    __slots__ = ("id", "task_id", "tenant", "attempt", "provider", "model_requested", "model_used", "fallbacks", "started_at_ms", "first_token_ms", "total_ms", "tokens_in", "tokens_out", "cost_usd", "finish_reason", "cache_hit", "trace_id", "prompt", "reply")
    ID_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    MODEL_REQUESTED_FIELD_NUMBER: _ClassVar[int]
    MODEL_USED_FIELD_NUMBER: _ClassVar[int]
    FALLBACKS_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    FIRST_TOKEN_MS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_MS_FIELD_NUMBER: _ClassVar[int]
    TOKENS_IN_FIELD_NUMBER: _ClassVar[int]
    TOKENS_OUT_FIELD_NUMBER: _ClassVar[int]
    COST_USD_FIELD_NUMBER: _ClassVar[int]
    FINISH_REASON_FIELD_NUMBER: _ClassVar[int]
    CACHE_HIT_FIELD_NUMBER: _ClassVar[int]
    TRACE_ID_FIELD_NUMBER: _ClassVar[int]
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    REPLY_FIELD_NUMBER: _ClassVar[int]
    id: int
    task_id: str
    tenant: str
    attempt: int
    provider: str
    model_requested: str
    model_used: str
    fallbacks: _containers.RepeatedCompositeFieldContainer[LlmFallback]
    started_at_ms: int
    first_token_ms: int
    total_ms: int
    tokens_in: int
    tokens_out: int
    cost_usd: float
    finish_reason: str
    cache_hit: bool
    trace_id: str
    prompt: str
    reply: str
    def __init__(self, id: _Optional[int] = ..., task_id: _Optional[str] = ..., tenant: _Optional[str] = ..., attempt: _Optional[int] = ..., provider: _Optional[str] = ..., model_requested: _Optional[str] = ..., model_used: _Optional[str] = ..., fallbacks: _Optional[_Iterable[_Union[LlmFallback, _Mapping]]] = ..., started_at_ms: _Optional[int] = ..., first_token_ms: _Optional[int] = ..., total_ms: _Optional[int] = ..., tokens_in: _Optional[int] = ..., tokens_out: _Optional[int] = ..., cost_usd: _Optional[float] = ..., finish_reason: _Optional[str] = ..., cache_hit: _Optional[bool] = ..., trace_id: _Optional[str] = ..., prompt: _Optional[str] = ..., reply: _Optional[str] = ...) -> None: ...

class ListLlmCallsRequest(_message.Message):
    __slots__ = ("task_id", "tenant", "model", "provider", "since_ms", "until_ms", "limit", "cursor")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    SINCE_MS_FIELD_NUMBER: _ClassVar[int]
    UNTIL_MS_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    tenant: str
    model: str
    provider: str
    since_ms: int
    until_ms: int
    limit: int
    cursor: str
    def __init__(self, task_id: _Optional[str] = ..., tenant: _Optional[str] = ..., model: _Optional[str] = ..., provider: _Optional[str] = ..., since_ms: _Optional[int] = ..., until_ms: _Optional[int] = ..., limit: _Optional[int] = ..., cursor: _Optional[str] = ...) -> None: ...

class ListLlmCallsResponse(_message.Message):
    __slots__ = ("calls", "next_cursor")
    CALLS_FIELD_NUMBER: _ClassVar[int]
    NEXT_CURSOR_FIELD_NUMBER: _ClassVar[int]
    calls: _containers.RepeatedCompositeFieldContainer[LlmCall]
    next_cursor: str
    def __init__(self, calls: _Optional[_Iterable[_Union[LlmCall, _Mapping]]] = ..., next_cursor: _Optional[str] = ...) -> None: ...
