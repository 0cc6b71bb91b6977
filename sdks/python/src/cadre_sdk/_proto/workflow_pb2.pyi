# mypy: ignore-errors
from . import task_pb2 as _task_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class WorkflowDefinition(_message.Message):
    __slots__ = ("name", "version", "definition_json", "created_at_ms", "created_by", "task_type", "description")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    DEFINITION_JSON_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    CREATED_BY_FIELD_NUMBER: _ClassVar[int]
    TASK_TYPE_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: int
    definition_json: str
    created_at_ms: int
    created_by: str
    task_type: str
    description: str
    def __init__(self, name: _Optional[str] = ..., version: _Optional[int] = ..., definition_json: _Optional[str] = ..., created_at_ms: _Optional[int] = ..., created_by: _Optional[str] = ..., task_type: _Optional[str] = ..., description: _Optional[str] = ...) -> None: ...

class RegisterWorkflowRequest(_message.Message):
    __slots__ = ("definition_json",)
    DEFINITION_JSON_FIELD_NUMBER: _ClassVar[int]
    definition_json: str
    def __init__(self, definition_json: _Optional[str] = ...) -> None: ...

class RegisterWorkflowResponse(_message.Message):
    __slots__ = ("workflow", "created")
    WORKFLOW_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    workflow: WorkflowDefinition
    created: bool
    def __init__(self, workflow: _Optional[_Union[WorkflowDefinition, _Mapping]] = ..., created: _Optional[bool] = ...) -> None: ...

class ListWorkflowsRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class ListWorkflowsResponse(_message.Message):
    __slots__ = ("workflows",)
    WORKFLOWS_FIELD_NUMBER: _ClassVar[int]
    workflows: _containers.RepeatedCompositeFieldContainer[WorkflowDefinition]
    def __init__(self, workflows: _Optional[_Iterable[_Union[WorkflowDefinition, _Mapping]]] = ...) -> None: ...

class GetWorkflowRequest(_message.Message):
    __slots__ = ("name", "version")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: int
    def __init__(self, name: _Optional[str] = ..., version: _Optional[int] = ...) -> None: ...

class SignalRequest(_message.Message):
    __slots__ = ("task_id", "name", "payload_json")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_JSON_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    name: str
    payload_json: str
    def __init__(self, task_id: _Optional[str] = ..., name: _Optional[str] = ..., payload_json: _Optional[str] = ...) -> None: ...

class SignalResponse(_message.Message):
    __slots__ = ("seq", "task")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    seq: int
    task: _task_pb2.Task
    def __init__(self, seq: _Optional[int] = ..., task: _Optional[_Union[_task_pb2.Task, _Mapping]] = ...) -> None: ...
