"""What the configured clusters contain: the TargetService queries (a console's drop-downs).

Errors are `conveyor.errors` exceptions, mapped to gRPC codes in one place: an unknown
cluster, namespace or workload is NOT_FOUND with a message saying which; RBAC refusals are
PERMISSION_DENIED; an unreachable cluster is UNAVAILABLE.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from conveyor import errors
from conveyor.retry import RetryPolicy, retry as with_retries
from conveyor_deployer.domain.clusters import ClusterConfig
from conveyor_deployer.domain.kube_errors import ErrorKind, KubeApiError, is_transient
from conveyor_deployer.domain.policy import Denial
from conveyor_deployer.domain.workloads import Kind, WorkloadRef, WorkloadSummary, summarize
from conveyor_deployer.usecases.ports import KubeObject, WorkloadApi

T = TypeVar("T")


def to_conveyor_error(exc: KubeApiError) -> errors.ConveyorError:
    metadata = {"cluster": exc.cluster}
    kind = exc.kind
    if kind is ErrorKind.FORBIDDEN:
        return errors.PermissionDenied(exc.describe(), reason="KUBERNETES_FORBIDDEN", metadata=metadata)
    if kind in (ErrorKind.TRANSIENT, ErrorKind.UNAUTHORIZED):
        return errors.Unavailable(exc.describe(), reason="KUBERNETES_UNAVAILABLE", metadata=metadata)
    if kind is ErrorKind.NOT_FOUND:
        return errors.NotFound(exc.describe(), metadata=metadata)
    return errors.FailedPrecondition(exc.describe(), reason="KUBERNETES_ERROR", metadata=metadata)


class TargetQueries:
    def __init__(self, api: WorkloadApi, clusters: Sequence[ClusterConfig], retry: RetryPolicy) -> None:
        self.api = api
        self.clusters = {cluster.name: cluster for cluster in clusters}
        self.retry = retry

    async def _retrying(self, call: Callable[[], Awaitable[T]]) -> T:
        return await with_retries(call, policy=self.retry, retry_on=is_transient)

    def list_clusters(self) -> list[ClusterConfig]:
        return sorted(self.clusters.values(), key=lambda c: c.name)

    def _cluster(self, name: str) -> ClusterConfig:
        try:
            return self.clusters[name]
        except KeyError:
            known = ", ".join(sorted(self.clusters)) or "none"
            raise errors.NotFound(
                f"cluster {name!r} is not configured on the deployer (configured clusters: {known})",
                reason="CLUSTER_NOT_FOUND",
                metadata={"cluster": name},
            ) from None

    def check_target(self, cluster: str, namespace: str, image: str) -> list[Denial]:
        """What the cluster's policy denies of deploying `image` to `namespace` (empty: allowed)."""
        return self._cluster(cluster).policy.check(namespace, image)

    async def list_namespaces(self, cluster: str) -> list[str]:
        self._cluster(cluster)
        try:
            return await self._retrying(lambda: self.api.list_namespaces(cluster))
        except KubeApiError as exc:
            raise to_conveyor_error(exc) from None

    async def _require_namespace(self, cluster: str, namespace: str) -> None:
        try:
            exists = await self._retrying(lambda: self.api.namespace_exists(cluster, namespace))
        except KubeApiError as exc:
            if exc.kind is ErrorKind.FORBIDDEN:
                return  # may not read namespaces: let the workload call speak for itself
            raise to_conveyor_error(exc) from None
        if not exists:
            raise errors.NotFound(
                f"namespace {namespace!r} not found in cluster {cluster}",
                reason="NAMESPACE_NOT_FOUND",
                metadata={"cluster": cluster, "namespace": namespace},
            )

    async def list_workloads(self, cluster: str, namespace: str, kind: Kind | None) -> list[WorkloadSummary]:
        self._cluster(cluster)
        kinds = [kind] if kind is not None else list(Kind)

        def lister(kind: Kind) -> Callable[[], Awaitable[list[KubeObject]]]:
            return lambda: self.api.list_workloads(cluster, namespace, kind)

        try:
            results = await asyncio.gather(*(self._retrying(lister(k)) for k in kinds))
        except KubeApiError as exc:
            raise to_conveyor_error(exc) from None
        summaries = [
            summarize(WorkloadRef(cluster, namespace, k, str(item["metadata"]["name"])), item)
            for k, items in zip(kinds, results, strict=True)
            for item in items
        ]
        if not summaries:
            # An empty list is also what the API answers for a namespace that does not exist.
            await self._require_namespace(cluster, namespace)
        return sorted(summaries, key=lambda s: (s.ref.kind.value, s.ref.name))

    async def get_workload(self, ref: WorkloadRef) -> WorkloadSummary:
        self._cluster(ref.cluster)
        try:
            workload = await self._retrying(lambda: self.api.get_workload(ref))
        except KubeApiError as exc:
            if exc.kind is ErrorKind.NOT_FOUND:
                await self._require_namespace(ref.cluster, ref.namespace)
                raise errors.NotFound(
                    f"{ref.kind.value} {ref.name!r} not found in namespace {ref.namespace} of cluster {ref.cluster}",
                    reason="WORKLOAD_NOT_FOUND",
                    metadata={"cluster": ref.cluster, "namespace": ref.namespace, "kind": ref.kind.value},
                ) from None
            raise to_conveyor_error(exc) from None
        return summarize(ref, workload)
