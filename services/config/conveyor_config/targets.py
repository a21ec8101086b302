"""Client of the deployer's TargetService: does a pipeline's target workload and container exist?"""

from __future__ import annotations

import grpc

from conveyor.v1 import pipeline_pb2, target_service_pb2, target_service_pb2_grpc
from conveyor_config.usecases import TargetLookupError


class DeployerTargets:
    """`WorkloadLookup` over gRPC, with a short deadline so a slow deployer never stalls a Create."""

    def __init__(self, address: str, timeout: float = 2.0) -> None:
        self.address = address
        self.timeout = timeout
        self._channel = grpc.aio.insecure_channel(address)
        self._stub = target_service_pb2_grpc.TargetServiceStub(self._channel)

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

    def _error(self, exc: grpc.aio.AioRpcError) -> TargetLookupError:
        detail = exc.details() or exc.code().name
        if exc.code() == grpc.StatusCode.NOT_FOUND:
            return TargetLookupError("not_found", detail)
        # Unreachable, too slow, or anything unexpected: the target cannot be verified now.
        return TargetLookupError("unavailable", f"deployer at {self.address}: {exc.code().name}: {detail}")

    async def close(self) -> None:
        await self._channel.close()
