import datetime

from conveyor.v1 import bus_pb2 as _bus_pb2
from google.api import field_behavior_pb2 as _field_behavior_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ListEventsRequest(_message.Message):
    __slots__ = ("page_size", "page_token", "registry", "repository", "tag", "decision")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    REGISTRY_FIELD_NUMBER: _ClassVar[int]
    REPOSITORY_FIELD_NUMBER: _ClassVar[int]
    TAG_FIELD_NUMBER: _ClassVar[int]
    DECISION_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    registry: str
    repository: str
    tag: str
    decision: MatchDecision.Outcome
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., registry: _Optional[str] = ..., repository: _Optional[str] = ..., tag: _Optional[str] = ..., decision: _Optional[_Union[MatchDecision.Outcome, str]] = ...) -> None: ...

class ListEventsResponse(_message.Message):
    __slots__ = ("events", "next_page_token")
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[RegistryEvent]
    next_page_token: str
    def __init__(self, events: _Optional[_Iterable[_Union[RegistryEvent, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class RegistryEvent(_message.Message):
    __slots__ = ("push", "receive_time", "decisions")
    PUSH_FIELD_NUMBER: _ClassVar[int]
    RECEIVE_TIME_FIELD_NUMBER: _ClassVar[int]
    DECISIONS_FIELD_NUMBER: _ClassVar[int]
    push: _bus_pb2.ImagePushed
    receive_time: _timestamp_pb2.Timestamp
    decisions: _containers.RepeatedCompositeFieldContainer[MatchDecision]
    def __init__(self, push: _Optional[_Union[_bus_pb2.ImagePushed, _Mapping]] = ..., receive_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., decisions: _Optional[_Iterable[_Union[MatchDecision, _Mapping]]] = ...) -> None: ...

class MatchDecision(_message.Message):
    __slots__ = ("pipeline", "outcome", "run", "reason")
    class Outcome(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        OUTCOME_UNSPECIFIED: _ClassVar[MatchDecision.Outcome]
        MATCHED: _ClassVar[MatchDecision.Outcome]
        TAG_MISMATCH: _ClassVar[MatchDecision.Outcome]
        ORIGIN_MISMATCH: _ClassVar[MatchDecision.Outcome]
        PIPELINE_DISABLED: _ClassVar[MatchDecision.Outcome]
        NO_PIPELINE: _ClassVar[MatchDecision.Outcome]
        DUPLICATE: _ClassVar[MatchDecision.Outcome]
    OUTCOME_UNSPECIFIED: MatchDecision.Outcome
    MATCHED: MatchDecision.Outcome
    TAG_MISMATCH: MatchDecision.Outcome
    ORIGIN_MISMATCH: MatchDecision.Outcome
    PIPELINE_DISABLED: MatchDecision.Outcome
    NO_PIPELINE: MatchDecision.Outcome
    DUPLICATE: MatchDecision.Outcome
    PIPELINE_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    RUN_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    pipeline: str
    outcome: MatchDecision.Outcome
    run: str
    reason: str
    def __init__(self, pipeline: _Optional[str] = ..., outcome: _Optional[_Union[MatchDecision.Outcome, str]] = ..., run: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class ListTagsRequest(_message.Message):
    __slots__ = ("pipeline", "registry", "repository", "page_size", "page_token", "include_digests")
    PIPELINE_FIELD_NUMBER: _ClassVar[int]
    REGISTRY_FIELD_NUMBER: _ClassVar[int]
    REPOSITORY_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_DIGESTS_FIELD_NUMBER: _ClassVar[int]
    pipeline: str
    registry: str
    repository: str
    page_size: int
    page_token: str
    include_digests: bool
    def __init__(self, pipeline: _Optional[str] = ..., registry: _Optional[str] = ..., repository: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., include_digests: _Optional[bool] = ...) -> None: ...

class ListTagsResponse(_message.Message):
    __slots__ = ("tags", "next_page_token")
    TAGS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    tags: _containers.RepeatedCompositeFieldContainer[ImageTag]
    next_page_token: str
    def __init__(self, tags: _Optional[_Iterable[_Union[ImageTag, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class ImageTag(_message.Message):
    __slots__ = ("tag", "digest")
    TAG_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    tag: str
    digest: str
    def __init__(self, tag: _Optional[str] = ..., digest: _Optional[str] = ...) -> None: ...
