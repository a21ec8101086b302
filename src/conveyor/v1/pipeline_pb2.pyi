import datetime

from google.api import field_behavior_pb2 as _field_behavior_pb2
from google.api import resource_pb2 as _resource_pb2
from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ImageOrigin(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    IMAGE_ORIGIN_UNSPECIFIED: _ClassVar[ImageOrigin]
    IMAGE_ORIGIN_ANY: _ClassVar[ImageOrigin]
    IMAGE_ORIGIN_PLATFORM_BUILD: _ClassVar[ImageOrigin]
    IMAGE_ORIGIN_LOCAL_PUSH: _ClassVar[ImageOrigin]
IMAGE_ORIGIN_UNSPECIFIED: ImageOrigin
IMAGE_ORIGIN_ANY: ImageOrigin
IMAGE_ORIGIN_PLATFORM_BUILD: ImageOrigin
IMAGE_ORIGIN_LOCAL_PUSH: ImageOrigin

class Pipeline(_message.Message):
    __slots__ = ("name", "display_name", "description", "disabled", "source", "target", "options", "create_time", "update_time", "etag")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    DISABLED_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    ETAG_FIELD_NUMBER: _ClassVar[int]
    name: str
    display_name: str
    description: str
    disabled: bool
    source: Source
    target: Target
    options: Options
    create_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    etag: str
    def __init__(self, name: _Optional[str] = ..., display_name: _Optional[str] = ..., description: _Optional[str] = ..., disabled: _Optional[bool] = ..., source: _Optional[_Union[Source, _Mapping]] = ..., target: _Optional[_Union[Target, _Mapping]] = ..., options: _Optional[_Union[Options, _Mapping]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., etag: _Optional[str] = ...) -> None: ...

class Source(_message.Message):
    __slots__ = ("registry", "repository", "tag_filter", "origin")
    REGISTRY_FIELD_NUMBER: _ClassVar[int]
    REPOSITORY_FIELD_NUMBER: _ClassVar[int]
    TAG_FILTER_FIELD_NUMBER: _ClassVar[int]
    ORIGIN_FIELD_NUMBER: _ClassVar[int]
    registry: str
    repository: str
    tag_filter: TagFilter
    origin: ImageOrigin
    def __init__(self, registry: _Optional[str] = ..., repository: _Optional[str] = ..., tag_filter: _Optional[_Union[TagFilter, _Mapping]] = ..., origin: _Optional[_Union[ImageOrigin, str]] = ...) -> None: ...

class TagFilter(_message.Message):
    __slots__ = ("type", "value", "exclusions", "include_prereleases")
    class Type(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        TYPE_UNSPECIFIED: _ClassVar[TagFilter.Type]
        ANY: _ClassVar[TagFilter.Type]
        EXACT: _ClassVar[TagFilter.Type]
        REGEX: _ClassVar[TagFilter.Type]
        SEMVER: _ClassVar[TagFilter.Type]
    TYPE_UNSPECIFIED: TagFilter.Type
    ANY: TagFilter.Type
    EXACT: TagFilter.Type
    REGEX: TagFilter.Type
    SEMVER: TagFilter.Type
    TYPE_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    EXCLUSIONS_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_PRERELEASES_FIELD_NUMBER: _ClassVar[int]
    type: TagFilter.Type
    value: str
    exclusions: _containers.RepeatedScalarFieldContainer[str]
    include_prereleases: bool
    def __init__(self, type: _Optional[_Union[TagFilter.Type, str]] = ..., value: _Optional[str] = ..., exclusions: _Optional[_Iterable[str]] = ..., include_prereleases: _Optional[bool] = ...) -> None: ...

class Target(_message.Message):
    __slots__ = ("platform", "region", "cluster", "namespace", "workload_kind", "workload", "container")
    class Platform(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        PLATFORM_UNSPECIFIED: _ClassVar[Target.Platform]
        TKE: _ClassVar[Target.Platform]
        EKS: _ClassVar[Target.Platform]
        EDGE: _ClassVar[Target.Platform]
        KUBERNETES: _ClassVar[Target.Platform]
    PLATFORM_UNSPECIFIED: Target.Platform
    TKE: Target.Platform
    EKS: Target.Platform
    EDGE: Target.Platform
    KUBERNETES: Target.Platform
    class WorkloadKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        WORKLOAD_KIND_UNSPECIFIED: _ClassVar[Target.WorkloadKind]
        DEPLOYMENT: _ClassVar[Target.WorkloadKind]
        STATEFULSET: _ClassVar[Target.WorkloadKind]
        DAEMONSET: _ClassVar[Target.WorkloadKind]
    WORKLOAD_KIND_UNSPECIFIED: Target.WorkloadKind
    DEPLOYMENT: Target.WorkloadKind
    STATEFULSET: Target.WorkloadKind
    DAEMONSET: Target.WorkloadKind
    PLATFORM_FIELD_NUMBER: _ClassVar[int]
    REGION_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    WORKLOAD_KIND_FIELD_NUMBER: _ClassVar[int]
    WORKLOAD_FIELD_NUMBER: _ClassVar[int]
    CONTAINER_FIELD_NUMBER: _ClassVar[int]
    platform: Target.Platform
    region: str
    cluster: str
    namespace: str
    workload_kind: Target.WorkloadKind
    workload: str
    container: str
    def __init__(self, platform: _Optional[_Union[Target.Platform, str]] = ..., region: _Optional[str] = ..., cluster: _Optional[str] = ..., namespace: _Optional[str] = ..., workload_kind: _Optional[_Union[Target.WorkloadKind, str]] = ..., workload: _Optional[str] = ..., container: _Optional[str] = ...) -> None: ...

class Options(_message.Message):
    __slots__ = ("pin_digest", "verify_rollout", "rollout_timeout", "rollback_on_failure")
    PIN_DIGEST_FIELD_NUMBER: _ClassVar[int]
    VERIFY_ROLLOUT_FIELD_NUMBER: _ClassVar[int]
    ROLLOUT_TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    ROLLBACK_ON_FAILURE_FIELD_NUMBER: _ClassVar[int]
    pin_digest: bool
    verify_rollout: bool
    rollout_timeout: _duration_pb2.Duration
    rollback_on_failure: bool
    def __init__(self, pin_digest: _Optional[bool] = ..., verify_rollout: _Optional[bool] = ..., rollout_timeout: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., rollback_on_failure: _Optional[bool] = ...) -> None: ...
