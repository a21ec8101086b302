"""What the use cases need from the outside world, as Protocols (real adapters and test fakes)."""

from __future__ import annotations

from typing import Any, Protocol

from conveyor.v1 import bus_pb2
from conveyor_deployer.domain.patch import JsonPatch
from conveyor_deployer.domain.workloads import Kind, WorkloadRef

KubeObject = dict[str, Any]


class WorkloadApi(Protocol):
    """The Kubernetes API of the configured clusters.

    Every method raises `conveyor_deployer.domain.kube_errors.KubeApiError` when the cluster
    answers with an error or cannot be reached, and `UnknownCluster` for a cluster it does not
    know.
    """

    async def list_namespaces(self, cluster: str) -> list[str]: ...

    async def namespace_exists(self, cluster: str, namespace: str) -> bool: ...

    async def list_workloads(self, cluster: str, namespace: str, kind: Kind) -> list[KubeObject]: ...

    async def get_workload(self, ref: WorkloadRef) -> KubeObject: ...

    async def patch_workload(self, ref: WorkloadRef, patch: JsonPatch) -> KubeObject: ...

    async def list_pods(self, cluster: str, namespace: str, label_selector: str) -> list[KubeObject]: ...


class UnknownCluster(KeyError):
    pass


class RunEventSink(Protocol):
    """Where run events go (JetStream in production). Returns once the event is stored."""

    async def publish(self, event: bus_pb2.RunEvent) -> bool:
        """True when stored now, False when an event with the same id was already stored."""
        ...


class Delivery(Protocol):
    """One delivery of a message (JetStream in production, a fake in tests)."""

    @property
    def attempt(self) -> int: ...

    async def in_progress(self) -> None: ...

    async def ack(self) -> None: ...

    async def nak(self, delay: float = 0.0) -> None: ...
