from conveyor.v1 import pipeline_pb2 as _pipeline_pb2
from google.api import field_behavior_pb2 as _field_behavior_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Cluster(_message.Message):
    __slots__ = ("name", "platform", "region", "sandbox")
    NAME_FIELD_NUMBER: _ClassVar[int]
    PLATFORM_FIELD_NUMBER: _ClassVar[int]
    REGION_FIELD_NUMBER: _ClassVar[int]
    SANDBOX_FIELD_NUMBER: _ClassVar[int]
    name: str
    platform: _pipeline_pb2.Target.Platform
    region: str
    sandbox: bool
    def __init__(self, name: _Optional[str] = ..., platform: _Optional[_Union[_pipeline_pb2.Target.Platform, str]] = ..., region: _Optional[str] = ..., sandbox: _Optional[bool] = ...) -> None: ...

class ListClustersRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListClustersResponse(_message.Message):
    __slots__ = ("clusters",)
    CLUSTERS_FIELD_NUMBER: _ClassVar[int]
    clusters: _containers.RepeatedCompositeFieldContainer[Cluster]
    def __init__(self, clusters: _Optional[_Iterable[_Union[Cluster, _Mapping]]] = ...) -> None: ...

class ListNamespacesRequest(_message.Message):
    __slots__ = ("cluster",)
    CLUSTER_FIELD_NUMBER: _ClassVar[int]
    cluster: str
    def __init__(self, cluster: _Optional[str] = ...) -> None: ...

class ListNamespacesResponse(_message.Message):
    __slots__ = ("namespaces",)
    NAMESPACES_FIELD_NUMBER: _ClassVar[int]
    namespaces: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, namespaces: _Optional[_Iterable[str]] = ...) -> None: ...

class ListWorkloadsRequest(_message.Message):
    __slots__ = ("cluster", "namespace", "kind")
    CLUSTER_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    cluster: str
    namespace: str
    kind: _pipeline_pb2.Target.WorkloadKind
    def __init__(self, cluster: _Optional[str] = ..., namespace: _Optional[str] = ..., kind: _Optional[_Union[_pipeline_pb2.Target.WorkloadKind, str]] = ...) -> None: ...

class ListWorkloadsResponse(_message.Message):
    __slots__ = ("workloads",)
    WORKLOADS_FIELD_NUMBER: _ClassVar[int]
    workloads: _containers.RepeatedCompositeFieldContainer[Workload]
    def __init__(self, workloads: _Optional[_Iterable[_Union[Workload, _Mapping]]] = ...) -> None: ...

class GetWorkloadRequest(_message.Message):
    __slots__ = ("cluster", "namespace", "kind", "name")
    CLUSTER_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    cluster: str
    namespace: str
    kind: _pipeline_pb2.Target.WorkloadKind
    name: str
    def __init__(self, cluster: _Optional[str] = ..., namespace: _Optional[str] = ..., kind: _Optional[_Union[_pipeline_pb2.Target.WorkloadKind, str]] = ..., name: _Optional[str] = ...) -> None: ...

class Workload(_message.Message):
    __slots__ = ("cluster", "namespace", "kind", "name", "containers", "init_containers")
    CLUSTER_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    CONTAINERS_FIELD_NUMBER: _ClassVar[int]
    INIT_CONTAINERS_FIELD_NUMBER: _ClassVar[int]
    cluster: str
    namespace: str
    kind: _pipeline_pb2.Target.WorkloadKind
    name: str
    containers: _containers.RepeatedCompositeFieldContainer[Container]
    init_containers: _containers.RepeatedCompositeFieldContainer[Container]
    def __init__(self, cluster: _Optional[str] = ..., namespace: _Optional[str] = ..., kind: _Optional[_Union[_pipeline_pb2.Target.WorkloadKind, str]] = ..., name: _Optional[str] = ..., containers: _Optional[_Iterable[_Union[Container, _Mapping]]] = ..., init_containers: _Optional[_Iterable[_Union[Container, _Mapping]]] = ...) -> None: ...

class Container(_message.Message):
    __slots__ = ("name", "image")
    NAME_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    name: str
    image: str
    def __init__(self, name: _Optional[str] = ..., image: _Optional[str] = ...) -> None: ...

class CheckTargetRequest(_message.Message):
    __slots__ = ("cluster", "namespace", "image")
    CLUSTER_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    cluster: str
    namespace: str
    image: str
    def __init__(self, cluster: _Optional[str] = ..., namespace: _Optional[str] = ..., image: _Optional[str] = ...) -> None: ...

class CheckTargetResponse(_message.Message):
    __slots__ = ("denials",)
    DENIALS_FIELD_NUMBER: _ClassVar[int]
    denials: _containers.RepeatedCompositeFieldContainer[PolicyDenial]
    def __init__(self, denials: _Optional[_Iterable[_Union[PolicyDenial, _Mapping]]] = ...) -> None: ...

class PolicyDenial(_message.Message):
    __slots__ = ("field", "description")
    FIELD_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    field: str
    description: str
    def __init__(self, field: _Optional[str] = ..., description: _Optional[str] = ...) -> None: ...
