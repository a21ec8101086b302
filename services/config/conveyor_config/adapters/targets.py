"""Client of the deployer's TargetService: does a pipeline's target workload and container exist, and may
the pipeline's image be deployed there (the cluster's policy)?

The channel and the generated stub are made by `app.py` (only edges and the composition root
import `*_pb2_grpc`); this adapter calls it with a short deadline and maps failures.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Protocol

import grpc

from conveyor.v1 import pipeline_pb2, target_service_pb2
from conveyor_config.usecases.ports import TargetLookupError


class TargetServiceStub(Protocol):
    """The part of the generated `TargetServiceStub` this adapter calls."""

    def GetWorkload(  # noqa: N802 (gRPC method name)
        self, request: target_service_pb2.GetWorkloadRequest, *, timeout: float | None = None
    ) -> Awaitable[target_service_pb2.Workload]: ...

    def ListClusters(  # noqa: N802
        self, request: target_service_pb2.ListClustersRequest, *, timeout: float | None = None
    ) -> Awaitable[target_service_pb2.ListClustersResponse]: ...

    def CheckTarget(  # noqa: N802
        self, request: target_service_pb2.CheckTargetRequest, *, timeout: float | None = None
    ) -> Awaitable[target_service_pb2.CheckTargetResponse]: ...


class DeployerTargets:
    """`WorkloadLookup` over gRPC, with a short deadline so a slow deployer never stalls a Create."""

    def __init__(self, stub: TargetServiceStub, *, address: str, timeout: float = 2.0) -> None:
        self._stub = stub
        # For error messages only: the stub's channel is already bound to it.
        self.address = address
        self.timeout = timeout

    async def get_workload(self, target: pipeline_pb2.Target) -> target_service_pb2.Workload:
        request = target_service_pb2.GetWorkloadRequest(
            cluster=target.cluster, namespace=target.namespace, kind=target.workload_kind, name=target.workload
        )
        try:
            return await self._stub.GetWorkload(request, timeout=self.timeout)
        except grpc.aio.AioRpcError as exc:
            raise self._error(exc) from None

    async def cluster_names(self) -> list[str]:
        try:
            reply = await self._stub.ListClusters(target_service_pb2.ListClustersRequest(), timeout=self.timeout)
        except grpc.aio.AioRpcError as exc:
            raise self._error(exc) from None
        return [cluster.name for cluster in reply.clusters]

    async def policy_denials(self, target: pipeline_pb2.Target, image: str) -> list[tuple[str, str]]:
        request = target_service_pb2.CheckTargetRequest(cluster=target.cluster, namespace=target.namespace, image=image)
        try:
            reply = await self._stub.CheckTarget(request, timeout=self.timeout)
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                return []  # an unknown cluster: the workload check says so
            raise self._error(exc) from None
        return [(denial.field, denial.description) for denial in reply.denials]

    def _error(self, exc: grpc.aio.AioRpcError) -> TargetLookupError:
        detail = exc.details() or exc.code().name
        if exc.code() == grpc.StatusCode.NOT_FOUND:
            return TargetLookupError("not_found", detail)
        # Unreachable, too slow, or anything unexpected: the target cannot be verified now.
        return TargetLookupError("unavailable", f"deployer at {self.address}: {exc.code().name}: {detail}")
