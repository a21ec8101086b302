"""TargetService over gRPC against the sandbox: what a console's drop-downs and config's validation see."""

from __future__ import annotations

import pathlib
from collections.abc import AsyncIterator

import grpc
import pytest

from conveyor import errors
from conveyor.retry import RetryPolicy
from conveyor.server import GrpcServer
from conveyor.v1 import pipeline_pb2, target_service_pb2 as pb, target_service_pb2_grpc as pb_grpc
from conveyor_deployer.adapters.clusters import load_clusters
from conveyor_deployer.adapters.kube import KubeWorkloadApi
from conveyor_deployer.edges.grpc_api import SERVICE_NAME, TargetServicer
from conveyor_deployer.usecases.targets import TargetQueries
from conveyor_sandbox import SandboxCluster

Target = pipeline_pb2.Target


@pytest.fixture
async def targets(
    sandbox: tuple[SandboxCluster, pathlib.Path], tmp_path: pathlib.Path
) -> AsyncIterator[pb_grpc.TargetServiceStub]:
    _, kubeconfig = sandbox
    clusters_file = tmp_path / "clusters.yaml"
    clusters_file.write_text(
        f"clusters:\n"
        f"  - name: sandbox\n    platform: KUBERNETES\n    kubeconfig: {kubeconfig}\n"
        f"  - name: prod-gz\n    platform: TKE\n    region: ap-guangzhou\n    kubeconfig: {kubeconfig}\n"
        f"    context: sandbox\n"
    )
    clusters = load_clusters(clusters_file, {})
    api = KubeWorkloadApi.from_clusters(clusters, concurrency=4, timeout=5.0)
    server = GrpcServer("127.0.0.1:0", [SERVICE_NAME])
    server.add(
        pb_grpc.add_TargetServiceServicer_to_server,
        TargetServicer(TargetQueries(api, clusters, RetryPolicy(initial=0.01, jitter=0.5, max_attempts=2))),
    )
    await server.start()
    channel = grpc.aio.insecure_channel(server.bound_address)
    try:
        yield pb_grpc.TargetServiceStub(channel)
    finally:
        await channel.close()
        await server.stop(0)
        api.close()


async def test_clusters_are_listed_without_credentials(targets: pb_grpc.TargetServiceStub) -> None:
    reply = await targets.ListClusters(pb.ListClustersRequest())

    assert [(c.name, c.platform, c.region, c.sandbox) for c in reply.clusters] == [
        ("prod-gz", Target.TKE, "ap-guangzhou", True),
        ("sandbox", Target.KUBERNETES, "", True),
    ]
    assert "token" not in str(reply)


async def test_namespaces_and_workloads_of_every_kind(targets: pb_grpc.TargetServiceStub) -> None:
    namespaces = await targets.ListNamespaces(pb.ListNamespacesRequest(cluster="sandbox"))
    assert list(namespaces.namespaces) == ["demo"]

    everything = await targets.ListWorkloads(pb.ListWorkloadsRequest(cluster="sandbox", namespace="demo"))
    assert [(w.kind, w.name) for w in everything.workloads] == [
        (Target.DAEMONSET, "agent"),
        (Target.DEPLOYMENT, "web"),
        (Target.STATEFULSET, "db"),
    ]
    only_sets = await targets.ListWorkloads(
        pb.ListWorkloadsRequest(cluster="sandbox", namespace="demo", kind=Target.STATEFULSET)
    )
    assert [w.name for w in only_sets.workloads] == ["db"]


async def test_a_workload_shows_its_containers_and_init_containers(targets: pb_grpc.TargetServiceStub) -> None:
    web = await targets.GetWorkload(
        pb.GetWorkloadRequest(cluster="sandbox", namespace="demo", kind=Target.DEPLOYMENT, name="web")
    )

    assert (web.cluster, web.namespace, web.kind, web.name) == ("sandbox", "demo", Target.DEPLOYMENT, "web")
    assert [(c.name, c.image) for c in web.containers] == [
        ("app", "registry.example.com/demo/web:1.0.0"),
        ("log-shipper", "docker.io/fluent/fluent-bit:3.0.7"),
    ]
    assert [(c.name, c.image) for c in web.init_containers] == [
        ("migrate", "registry.example.com/demo/web-migrate:1.0.0")
    ]


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        (
            pb.GetWorkloadRequest(cluster="prod", namespace="demo", kind=Target.DEPLOYMENT, name="web"),
            "cluster 'prod' is not configured on the deployer (configured clusters: prod-gz, sandbox)",
        ),
        (
            pb.GetWorkloadRequest(cluster="sandbox", namespace="nowhere", kind=Target.DEPLOYMENT, name="web"),
            "namespace 'nowhere' not found in cluster sandbox",
        ),
        (
            pb.GetWorkloadRequest(cluster="sandbox", namespace="demo", kind=Target.STATEFULSET, name="web"),
            "StatefulSet 'web' not found in namespace demo of cluster sandbox",
        ),
    ],
)
async def test_unknown_targets_are_not_found_with_a_message_saying_which(
    targets: pb_grpc.TargetServiceStub, request_: pb.GetWorkloadRequest, message: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await targets.GetWorkload(request_)

    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert caught.value.details() == message


async def test_listing_an_unknown_namespace_or_cluster_is_not_found(targets: pb_grpc.TargetServiceStub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await targets.ListWorkloads(pb.ListWorkloadsRequest(cluster="sandbox", namespace="nowhere"))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await targets.ListNamespaces(pb.ListNamespacesRequest(cluster="nope"))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


async def test_incomplete_requests_are_invalid_with_field_violations(targets: pb_grpc.TargetServiceStub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await targets.GetWorkload(pb.GetWorkloadRequest(cluster="sandbox"))

    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert {v.field for v in errors.field_violations(caught.value)} == {"namespace", "name", "kind"}
