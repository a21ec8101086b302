import datetime

from google.api import field_behavior_pb2 as _field_behavior_pb2
from google.api import resource_pb2 as _resource_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Run(_message.Message):
    __slots__ = ("name", "trigger", "image", "tag", "digest", "previous_image", "state", "error", "create_time", "start_time", "end_time", "event_id")
    class Trigger(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        TRIGGER_UNSPECIFIED: _ClassVar[Run.Trigger]
        PUSH: _ClassVar[Run.Trigger]
        MANUAL: _ClassVar[Run.Trigger]
    TRIGGER_UNSPECIFIED: Run.Trigger
    PUSH: Run.Trigger
    MANUAL: Run.Trigger
    class State(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        STATE_UNSPECIFIED: _ClassVar[Run.State]
        QUEUED: _ClassVar[Run.State]
        RUNNING: _ClassVar[Run.State]
        SUCCEEDED: _ClassVar[Run.State]
        FAILED: _ClassVar[Run.State]
        SUPERSEDED: _ClassVar[Run.State]
        CANCELLED: _ClassVar[Run.State]
    STATE_UNSPECIFIED: Run.State
    QUEUED: Run.State
    RUNNING: Run.State
    SUCCEEDED: Run.State
    FAILED: Run.State
    SUPERSEDED: Run.State
    CANCELLED: Run.State
    NAME_FIELD_NUMBER: _ClassVar[int]
    TRIGGER_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    TAG_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_IMAGE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    name: str
    trigger: Run.Trigger
    image: str
    tag: str
    digest: str
    previous_image: str
    state: Run.State
    error: str
    create_time: _timestamp_pb2.Timestamp
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    event_id: str
    def __init__(self, name: _Optional[str] = ..., trigger: _Optional[_Union[Run.Trigger, str]] = ..., image: _Optional[str] = ..., tag: _Optional[str] = ..., digest: _Optional[str] = ..., previous_image: _Optional[str] = ..., state: _Optional[_Union[Run.State, str]] = ..., error: _Optional[str] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., event_id: _Optional[str] = ...) -> None: ...

class RunLogEntry(_message.Message):
    __slots__ = ("time", "level", "step", "message")
    class Level(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        LEVEL_UNSPECIFIED: _ClassVar[RunLogEntry.Level]
        DEBUG: _ClassVar[RunLogEntry.Level]
        INFO: _ClassVar[RunLogEntry.Level]
        WARNING: _ClassVar[RunLogEntry.Level]
        ERROR: _ClassVar[RunLogEntry.Level]
    LEVEL_UNSPECIFIED: RunLogEntry.Level
    DEBUG: RunLogEntry.Level
    INFO: RunLogEntry.Level
    WARNING: RunLogEntry.Level
    ERROR: RunLogEntry.Level
    TIME_FIELD_NUMBER: _ClassVar[int]
    LEVEL_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    time: _timestamp_pb2.Timestamp
    level: RunLogEntry.Level
    step: str
    message: str
    def __init__(self, time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., level: _Optional[_Union[RunLogEntry.Level, str]] = ..., step: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...
