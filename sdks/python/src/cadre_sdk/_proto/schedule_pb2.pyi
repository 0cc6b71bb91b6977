# mypy: ignore-errors
from . import task_pb2 as _task_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class MissedTickPolicy(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MISSED_TICK_POLICY_UNSPECIFIED: _ClassVar[MissedTickPolicy]
    MISSED_TICK_POLICY_SKIP: _ClassVar[MissedTickPolicy]
    MISSED_TICK_POLICY_RUN_ONCE: _ClassVar[MissedTickPolicy]

class OverlapPolicy(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    OVERLAP_POLICY_UNSPECIFIED: _ClassVar[OverlapPolicy]
    OVERLAP_POLICY_ALLOW: _ClassVar[OverlapPolicy]
    OVERLAP_POLICY_SKIP: _ClassVar[OverlapPolicy]
    OVERLAP_POLICY_CANCEL_PREVIOUS: _ClassVar[OverlapPolicy]
MISSED_TICK_POLICY_UNSPECIFIED: MissedTickPolicy
MISSED_TICK_POLICY_SKIP: MissedTickPolicy
MISSED_TICK_POLICY_RUN_ONCE: MissedTickPolicy
OVERLAP_POLICY_UNSPECIFIED: OverlapPolicy
OVERLAP_POLICY_ALLOW: OverlapPolicy
OVERLAP_POLICY_SKIP: OverlapPolicy
OVERLAP_POLICY_CANCEL_PREVIOUS: OverlapPolicy

class Schedule(_message.Message):
    __slots__ = ("id", "tenant", "name", "cron", "time_zone", "every_ms", "task", "missed", "overlap", "paused", "next_fire_at_ms", "created_at_ms", "created_by", "last_fire_at_ms", "last_task_id", "last_error", "fires", "skipped")
    ID_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    CRON_FIELD_NUMBER: _ClassVar[int]
    TIME_ZONE_FIELD_NUMBER: _ClassVar[int]
    EVERY_MS_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    MISSED_FIELD_NUMBER: _ClassVar[int]
    OVERLAP_FIELD_NUMBER: _ClassVar[int]
    PAUSED_FIELD_NUMBER: _ClassVar[int]
    NEXT_FIRE_AT_MS_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    CREATED_BY_FIELD_NUMBER: _ClassVar[int]
    LAST_FIRE_AT_MS_FIELD_NUMBER: _ClassVar[int]
    LAST_TASK_ID_FIELD_NUMBER: _ClassVar[int]
    LAST_ERROR_FIELD_NUMBER: _ClassVar[int]
    FIRES_FIELD_NUMBER: _ClassVar[int]
    SKIPPED_FIELD_NUMBER: _ClassVar[int]
    id: str
    tenant: str
    name: str
    cron: str
    time_zone: str
    every_ms: int
    task: _task_pb2.TaskSpec
    missed: MissedTickPolicy
    overlap: OverlapPolicy
    paused: bool
    next_fire_at_ms: _containers.RepeatedScalarFieldContainer[int]
    created_at_ms: int
    created_by: str
    last_fire_at_ms: int
    last_task_id: str
    last_error: str
    fires: int
    skipped: int
    def __init__(self, id: _Optional[str] = ..., tenant: _Optional[str] = ..., name: _Optional[str] = ..., cron: _Optional[str] = ..., time_zone: _Optional[str] = ..., every_ms: _Optional[int] = ..., task: _Optional[_Union[_task_pb2.TaskSpec, _Mapping]] = ..., missed: _Optional[_Union[MissedTickPolicy, str]] = ..., overlap: _Optional[_Union[OverlapPolicy, str]] = ..., paused: _Optional[bool] = ..., next_fire_at_ms: _Optional[_Iterable[int]] = ..., created_at_ms: _Optional[int] = ..., created_by: _Optional[str] = ..., last_fire_at_ms: _Optional[int] = ..., last_task_id: _Optional[str] = ..., last_error: _Optional[str] = ..., fires: _Optional[int] = ..., skipped: _Optional[int] = ...) -> None: ...

class CreateScheduleRequest(_message.Message):
    __slots__ = ("name", "cron", "time_zone", "every_ms", "task", "missed", "overlap", "paused", "tenant")
    NAME_FIELD_NUMBER: _ClassVar[int]
    CRON_FIELD_NUMBER: _ClassVar[int]
    TIME_ZONE_FIELD_NUMBER: _ClassVar[int]
    EVERY_MS_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    MISSED_FIELD_NUMBER: _ClassVar[int]
    OVERLAP_FIELD_NUMBER: _ClassVar[int]
    PAUSED_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    name: str
    cron: str
    time_zone: str
    every_ms: int
    task: _task_pb2.TaskSpec
    missed: MissedTickPolicy
    overlap: OverlapPolicy
    paused: bool
    tenant: str
    def __init__(self, name: _Optional[str] = ..., cron: _Optional[str] = ..., time_zone: _Optional[str] = ..., every_ms: _Optional[int] = ..., task: _Optional[_Union[_task_pb2.TaskSpec, _Mapping]] = ..., missed: _Optional[_Union[MissedTickPolicy, str]] = ..., overlap: _Optional[_Union[OverlapPolicy, str]] = ..., paused: _Optional[bool] = ..., tenant: _Optional[str] = ...) -> None: ...

class GetScheduleRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class ListSchedulesRequest(_message.Message):
    __slots__ = ("tenant", "limit", "after")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    AFTER_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    limit: int
    after: str
    def __init__(self, tenant: _Optional[str] = ..., limit: _Optional[int] = ..., after: _Optional[str] = ...) -> None: ...

class ListSchedulesResponse(_message.Message):
    __slots__ = ("schedules",)
    SCHEDULES_FIELD_NUMBER: _ClassVar[int]
    schedules: _containers.RepeatedCompositeFieldContainer[Schedule]
    def __init__(self, schedules: _Optional[_Iterable[_Union[Schedule, _Mapping]]] = ...) -> None: ...

class ScheduleIdRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class TriggerScheduleResponse(_message.Message):
    __slots__ = ("schedule", "task")
    SCHEDULE_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    schedule: Schedule
    task: _task_pb2.Task
    def __init__(self, schedule: _Optional[_Union[Schedule, _Mapping]] = ..., task: _Optional[_Union[_task_pb2.Task, _Mapping]] = ...) -> None: ...

class DeleteScheduleResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...
