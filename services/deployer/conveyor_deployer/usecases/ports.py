"""What the use cases need from the outside world, as Protocols (real adapters and test fakes)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable
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


class LeaseLost(Exception):
    """The workload's lease is no longer this replica's (expired, or taken over): it must not write to it."""


# Called right before every write to a workload: raises `LeaseLost` when this replica may no longer write.
Fence = Callable[[], Awaitable[None]]


class Lease(Protocol):
    """One replica's hold on one workload, at one revision of its lease entry."""

    @property
    def revision(self) -> int: ...

    async def renew(self) -> None:
        """Extend it, only if it is still ours at `revision` (which it then advances); raises `LeaseLost`."""
        ...

    async def release(self) -> None: ...


class Leases(Protocol):
    """Per-workload leases shared by every deployer replica (a JetStream KV bucket in production)."""

    @property
    def renew_interval(self) -> float: ...

    async def acquire(self, workload: str, holder: str) -> Lease | None:
        """The lease of `workload` (cluster/namespace/kind/name) if no one holds it; None when someone does."""
        ...


# (requested_at, run id), run name, image: the newest request applied (or found applied) to one container.
AppliedEntry = tuple[tuple[dt.datetime, str], str, str]


class AppliedOrders(Protocol):
    """The newest request applied per container, shared by every replica (a JetStream KV bucket).

    Covers what the workload's deploy record cannot: an "already up to date" run does not patch,
    so it leaves no record, yet an older request handled by another replica must not overwrite it.
    """

    async def latest(self, slot: str) -> AppliedEntry | None: ...

    async def note(self, slot: str, entry: AppliedEntry) -> None:
        """Store `entry` unless a newer one is stored already."""
        ...
