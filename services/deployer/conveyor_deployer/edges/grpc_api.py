"""The TargetService gRPC edge: validate the request, call the use case, build the reply."""

from __future__ import annotations

import grpc

from conveyor.errors import FieldViolation, InvalidArgument
from conveyor.names import kubernetes_name_violations
from conveyor.v1 import target_service_pb2 as pb, target_service_pb2_grpc as pb_grpc
from conveyor_deployer.domain.workloads import Kind, WorkloadRef, WorkloadSummary
from conveyor_deployer.usecases.targets import TargetQueries

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["TargetService"].full_name


def _required(request: object, *fields: str) -> None:
    violations = [FieldViolation(f, "required") for f in fields if not getattr(request, f)]
    if violations:
        raise InvalidArgument.from_violations(violations)


def _kind(value: int, *, required: bool) -> Kind | None:
    kind = Kind.from_proto(value)
    if kind is None and (required or value != 0):
        raise InvalidArgument.from_violations([FieldViolation("kind", "must be DEPLOYMENT, STATEFULSET or DAEMONSET")])
    return kind


def _workload(summary: WorkloadSummary) -> pb.Workload:
    return pb.Workload(
        cluster=summary.ref.cluster,
        namespace=summary.ref.namespace,
        kind=summary.ref.kind.proto,  # type: ignore[arg-type]
        name=summary.ref.name,
        containers=[pb.Container(name=c.name, image=c.image) for c in summary.containers],
        init_containers=[pb.Container(name=c.name, image=c.image) for c in summary.init_containers],
    )


class TargetServicer(pb_grpc.TargetServiceServicer):
    def __init__(self, queries: TargetQueries) -> None:
        self.queries = queries

    async def ListClusters(  # noqa: N802 (gRPC method name)
        self, request: pb.ListClustersRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListClustersResponse:
        return pb.ListClustersResponse(
            clusters=[
                pb.Cluster(name=c.name, platform=c.platform, region=c.region, sandbox=c.sandbox)  # type: ignore[arg-type]
                for c in self.queries.list_clusters()
            ]
        )

    async def CheckTarget(  # noqa: N802 (gRPC method name)
        self, request: pb.CheckTargetRequest, context: grpc.aio.ServicerContext
    ) -> pb.CheckTargetResponse:
        _required(request, "cluster", "namespace", "image")
        denials = self.queries.check_target(request.cluster, request.namespace, request.image)
        return pb.CheckTargetResponse(denials=[pb.PolicyDenial(field=d.field, description=d.reason) for d in denials])

    async def ListNamespaces(  # noqa: N802 (gRPC method name)
        self, request: pb.ListNamespacesRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListNamespacesResponse:
        _required(request, "cluster")
        return pb.ListNamespacesResponse(namespaces=await self.queries.list_namespaces(request.cluster))

    async def ListWorkloads(  # noqa: N802 (gRPC method name)
        self, request: pb.ListWorkloadsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListWorkloadsResponse:
        _required(request, "cluster")
        violations = kubernetes_name_violations("Namespace", request.namespace, "namespace")
        if violations:
            raise InvalidArgument.from_violations(violations)
        kind = _kind(request.kind, required=False)
        summaries = await self.queries.list_workloads(request.cluster, request.namespace, kind)
        return pb.ListWorkloadsResponse(workloads=[_workload(s) for s in summaries])

    async def GetWorkload(  # noqa: N802 (gRPC method name)
        self, request: pb.GetWorkloadRequest, context: grpc.aio.ServicerContext
    ) -> pb.Workload:
        kind = Kind.from_proto(request.kind)
        violations = [FieldViolation("cluster", "required")] if not request.cluster else []
        violations += kubernetes_name_violations("Namespace", request.namespace, "namespace")
        # Every workload kind names its objects by the same rule, so `name` is checked even when `kind` is bad.
        violations += kubernetes_name_violations(kind.value if kind else "Deployment", request.name, "name")
        if kind is None:
            violations.append(FieldViolation("kind", "must be DEPLOYMENT, STATEFULSET or DAEMONSET"))
        if violations:
            raise InvalidArgument.from_violations(violations)
        assert kind is not None
        summary = await self.queries.get_workload(WorkloadRef(request.cluster, request.namespace, kind, request.name))
        return _workload(summary)
