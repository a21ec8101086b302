import datetime

from conveyor.v1 import pipeline_pb2 as _pipeline_pb2
from conveyor.v1 import run_pb2 as _run_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ImagePushed(_message.Message):
    __slots__ = ("event_id", "registry", "repository", "tag", "digest", "media_type", "origin", "pushed_at", "actor", "source_format")
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    REGISTRY_FIELD_NUMBER: _ClassVar[int]
    REPOSITORY_FIELD_NUMBER: _ClassVar[int]
    TAG_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    MEDIA_TYPE_FIELD_NUMBER: _ClassVar[int]
    ORIGIN_FIELD_NUMBER: _ClassVar[int]
    PUSHED_AT_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FORMAT_FIELD_NUMBER: _ClassVar[int]
    event_id: str
    registry: str
    repository: str
    tag: str
    digest: str
    media_type: str
    origin: _pipeline_pb2.ImageOrigin
    pushed_at: _timestamp_pb2.Timestamp
    actor: str
    source_format: str
    def __init__(self, event_id: _Optional[str] = ..., registry: _Optional[str] = ..., repository: _Optional[str] = ..., tag: _Optional[str] = ..., digest: _Optional[str] = ..., media_type: _Optional[str] = ..., origin: _Optional[_Union[_pipeline_pb2.ImageOrigin, str]] = ..., pushed_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., actor: _Optional[str] = ..., source_format: _Optional[str] = ...) -> None: ...

class DeployRequested(_message.Message):
    __slots__ = ("run", "pipeline", "image", "tag", "digest", "trigger", "requested_at", "event_id", "pushed_at")
    RUN_FIELD_NUMBER: _ClassVar[int]
    PIPELINE_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    TAG_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    TRIGGER_FIELD_NUMBER: _ClassVar[int]
    REQUESTED_AT_FIELD_NUMBER: _ClassVar[int]
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    PUSHED_AT_FIELD_NUMBER: _ClassVar[int]
    run: str
    pipeline: _pipeline_pb2.Pipeline
    image: str
    tag: str
    digest: str
    trigger: _run_pb2.Run.Trigger
    requested_at: _timestamp_pb2.Timestamp
    event_id: str
    pushed_at: _timestamp_pb2.Timestamp
    def __init__(self, run: _Optional[str] = ..., pipeline: _Optional[_Union[_pipeline_pb2.Pipeline, _Mapping]] = ..., image: _Optional[str] = ..., tag: _Optional[str] = ..., digest: _Optional[str] = ..., trigger: _Optional[_Union[_run_pb2.Run.Trigger, str]] = ..., requested_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., event_id: _Optional[str] = ..., pushed_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class RunEvent(_message.Message):
    __slots__ = ("run", "event_id", "time", "state", "log_entries", "error", "previous_image", "trigger", "image", "tag", "digest", "source_event_id")
    RUN_FIELD_NUMBER: _ClassVar[int]
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    LOG_ENTRIES_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_IMAGE_FIELD_NUMBER: _ClassVar[int]
    TRIGGER_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    TAG_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    SOURCE_EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    run: str
    event_id: str
    time: _timestamp_pb2.Timestamp
    state: _run_pb2.Run.State
    log_entries: _containers.RepeatedCompositeFieldContainer[_run_pb2.RunLogEntry]
    error: str
    previous_image: str
    trigger: _run_pb2.Run.Trigger
    image: str
    tag: str
    digest: str
    source_event_id: str
    def __init__(self, run: _Optional[str] = ..., event_id: _Optional[str] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., state: _Optional[_Union[_run_pb2.Run.State, str]] = ..., log_entries: _Optional[_Iterable[_Union[_run_pb2.RunLogEntry, _Mapping]]] = ..., error: _Optional[str] = ..., previous_image: _Optional[str] = ..., trigger: _Optional[_Union[_run_pb2.Run.Trigger, str]] = ..., image: _Optional[str] = ..., tag: _Optional[str] = ..., digest: _Optional[str] = ..., source_event_id: _Optional[str] = ...) -> None: ...

class PipelineChanged(_message.Message):
    __slots__ = ("change", "pipeline", "time")
    class Change(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        CHANGE_UNSPECIFIED: _ClassVar[PipelineChanged.Change]
        CREATED: _ClassVar[PipelineChanged.Change]
        UPDATED: _ClassVar[PipelineChanged.Change]
        DELETED: _ClassVar[PipelineChanged.Change]
    CHANGE_UNSPECIFIED: PipelineChanged.Change
    CREATED: PipelineChanged.Change
    UPDATED: PipelineChanged.Change
    DELETED: PipelineChanged.Change
    CHANGE_FIELD_NUMBER: _ClassVar[int]
    PIPELINE_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    change: PipelineChanged.Change
    pipeline: _pipeline_pb2.Pipeline
    time: _timestamp_pb2.Timestamp
    def __init__(self, change: _Optional[_Union[PipelineChanged.Change, str]] = ..., pipeline: _Optional[_Union[_pipeline_pb2.Pipeline, _Mapping]] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...
