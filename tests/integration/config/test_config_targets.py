"""The target check against a fake deployer TargetService served over real gRPC in this process."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import pytest
from google.protobuf import field_mask_pb2

from conveyor.errors import NotFound, field_violations
from conveyor.server import GrpcServer
from conveyor.v1 import pipeline_pb2, pipeline_service_pb2, target_service_pb2, target_service_pb2_grpc
from tests.integration.config.conftest import Clients, StartConfig, connected
from tests.integration.config.support import create_pipeline, rpc_error
from tests.support.net import free_port
from tests.unit.config.samples import sample_pipeline

Code = grpc.StatusCode
Kind = pipeline_pb2.Target


class FakeTargets(target_service_pb2_grpc.TargetServiceServicer):
    """Clusters and workloads held in memory, answering like the deployer does."""

    def __init__(self) -> None:
        self.clusters = {"prod", "staging"}
        self.workloads: dict[tuple[str, str, int, str], target_service_pb2.Workload] = {}
        self.delay = 0.0
        self.calls = 0
        # CheckTarget: what the cluster policy denies, by namespace and by `registry/repository`.
        self.denied_namespaces: set[str] = set()
        self.denied_images: set[str] = set()
        self.policy_checks: list[tuple[str, str, str]] = []
        self.policy_unimplemented = False  # a deployer older than CheckTarget
        self.add("prod", "web", Kind.DEPLOYMENT, "frontend", containers=["app", "sidecar"], init=["migrate"])

    def add(
        self, cluster: str, namespace: str, kind: int, name: str, *, containers: list[str], init: list[str]
    ) -> None:
        self.workloads[(cluster, namespace, kind, name)] = target_service_pb2.Workload(
            cluster=cluster,
            namespace=namespace,
            kind=kind,  # type: ignore[arg-type]
            name=name,
            containers=[target_service_pb2.Container(name=c, image=f"old/{c}:1") for c in containers],
            init_containers=[target_service_pb2.Container(name=c, image=f"old/{c}:1") for c in init],
        )

    async def GetWorkload(self, request, context):  # noqa: N802 - gRPC method name
        self.calls += 1
        await asyncio.sleep(self.delay)
        if request.cluster not in self.clusters:
            raise NotFound(f"cluster {request.cluster!r} is not configured")
        workload = self.workloads.get((request.cluster, request.namespace, request.kind, request.name))
        if workload is None:
            raise NotFound(f"deployments.apps {request.name!r} not found in namespace {request.namespace!r}")
        return workload

    async def CheckTarget(self, request, context):  # noqa: N802
        self.policy_checks.append((request.cluster, request.namespace, request.image))
        if self.policy_unimplemented:
            await context.abort(grpc.StatusCode.UNIMPLEMENTED, "Method not implemented!")
        denials = []
        if request.namespace in self.denied_namespaces:
            denials.append(target_service_pb2.PolicyDenial(field="namespace", description="namespace not allowed"))
        if request.image in self.denied_images:
            denials.append(target_service_pb2.PolicyDenial(field="image", description="image not allowed"))
        return target_service_pb2.CheckTargetResponse(denials=denials)

    async def ListClusters(self, request, context):  # noqa: N802
        return target_service_pb2.ListClustersResponse(
            clusters=[target_service_pb2.Cluster(name=name) for name in sorted(self.clusters)]
        )


@pytest.fixture
async def deployer() -> AsyncIterator[tuple[FakeTargets, str]]:
    fake = FakeTargets()
    server = GrpcServer("127.0.0.1:0", ["conveyor.v1.TargetService"])
    server.add(target_service_pb2_grpc.add_TargetServiceServicer_to_server, fake)
    await server.start()
    try:
        yield fake, server.bound_address
    finally:
        await server.stop(0)


@pytest.fixture
async def checked(start_config: StartConfig, deployer: tuple[FakeTargets, str]) -> AsyncIterator[Clients]:
    service = await start_config(
        env={"CONVEYOR_DEPLOYER_ADDR": deployer[1], "CONVEYOR_CONFIG_TARGET_CHECK_TIMEOUT": "300ms"}
    )
    async with connected(service.address) as clients:
        yield clients


def target(**fields: object) -> pipeline_pb2.Target:
    value = sample_pipeline().target
    for name, field_value in fields.items():
        setattr(value, name, field_value)
    return value


async def test_existing_workload_and_container_are_accepted(
    checked: Clients, deployer: tuple[FakeTargets, str]
) -> None:
    await create_pipeline(checked, "app", target=target(container="app"))
    await create_pipeline(checked, "init", target=target(container="migrate"))  # an init container counts too
    assert deployer[0].calls == 2


async def test_missing_workload_is_a_field_violation(checked: Clients) -> None:
    error = await rpc_error(create_pipeline(checked, "web", target=target(workload="backend")), Code.INVALID_ARGUMENT)
    [violation] = field_violations(error)
    assert violation.field == "pipeline.target.workload"
    assert "deployment web/backend does not exist in cluster prod" in violation.description
    assert "never creates them" in violation.description


async def test_missing_container_lists_the_ones_there_are(checked: Clients) -> None:
    error = await rpc_error(create_pipeline(checked, "web", target=target(container="nginx")), Code.INVALID_ARGUMENT)
    [violation] = field_violations(error)
    assert violation.field == "pipeline.target.container"
    assert violation.description == (
        "deployment web/frontend in cluster prod has no container 'nginx' "
        "(containers: app, sidecar; init containers: migrate)"
    )


async def test_unknown_cluster_is_a_field_violation_on_cluster(checked: Clients) -> None:
    error = await rpc_error(create_pipeline(checked, "web", target=target(cluster="mars")), Code.INVALID_ARGUMENT)
    [violation] = field_violations(error)
    assert violation.field == "pipeline.target.cluster"
    assert violation.description == "cluster 'mars' is not configured on the deployer (clusters: prod, staging)"


async def test_update_checks_a_changed_target_only(checked: Clients, deployer: tuple[FakeTargets, str]) -> None:
    await create_pipeline(checked, "web")
    fake = deployer[0]
    del fake.workloads[("prod", "web", Kind.DEPLOYMENT, "frontend")]  # the workload disappears later
    calls = fake.calls
    rename = pipeline_pb2.Pipeline(name="pipelines/web", display_name="renamed")
    Update = pipeline_service_pb2.UpdatePipelineRequest  # noqa: N806
    await checked.pipelines.UpdatePipeline(
        Update(pipeline=rename, update_mask=field_mask_pb2.FieldMask(paths=["display_name"]))
    )
    assert fake.calls == calls  # the target did not change: no question asked
    move = pipeline_pb2.Pipeline(name="pipelines/web", target=pipeline_pb2.Target(namespace="other"))
    error = await rpc_error(
        checked.pipelines.UpdatePipeline(
            Update(pipeline=move, update_mask=field_mask_pb2.FieldMask(paths=["target.namespace"]))
        ),
        Code.INVALID_ARGUMENT,
    )
    assert [v.field for v in field_violations(error)] == ["pipeline.target.workload"]


async def test_slow_deployer_does_not_block_creation(checked: Clients, deployer: tuple[FakeTargets, str]) -> None:
    deployer[0].delay = 2.0  # far beyond the 300ms deadline
    created = await create_pipeline(checked, "web", target=target(workload="unknown-yet"))
    assert created.target.workload == "unknown-yet"


async def test_unreachable_deployer_does_not_block_creation(start_config: StartConfig) -> None:
    service = await start_config(env={"CONVEYOR_DEPLOYER_ADDR": f"127.0.0.1:{free_port()}"})
    async with connected(service.address) as clients:
        created = await create_pipeline(clients, "web", target=target(workload="whatever"))
        assert created.name == "pipelines/web"


async def test_create_outside_the_cluster_policy_is_refused_per_field(
    checked: Clients, deployer: tuple[FakeTargets, str]
) -> None:
    fake = deployer[0]
    fake.denied_namespaces = {"web"}
    fake.denied_images = {"demo.tencentcloudcr.com/team/app"}
    error = await rpc_error(create_pipeline(checked, "web"), Code.INVALID_ARGUMENT)
    assert [(v.field, v.description) for v in field_violations(error)] == [
        ("pipeline.target.namespace", "denied by the policy of cluster prod: namespace not allowed"),
        ("pipeline.source.repository", "denied by the policy of cluster prod: image not allowed"),
    ]
    assert fake.policy_checks == [("prod", "web", "demo.tencentcloudcr.com/team/app")]
    fake.denied_namespaces = set()
    fake.denied_images = set()
    assert (await create_pipeline(checked, "web")).name == "pipelines/web"


async def test_update_of_the_source_asks_the_policy_again(checked: Clients, deployer: tuple[FakeTargets, str]) -> None:
    await create_pipeline(checked, "web")
    fake = deployer[0]
    fake.denied_images = {"demo.tencentcloudcr.com/other/app"}
    move = pipeline_pb2.Pipeline(name="pipelines/web", source=pipeline_pb2.Source(repository="other/app"))
    error = await rpc_error(
        checked.pipelines.UpdatePipeline(
            pipeline_service_pb2.UpdatePipelineRequest(
                pipeline=move, update_mask=field_mask_pb2.FieldMask(paths=["source.repository"])
            )
        ),
        Code.INVALID_ARGUMENT,
    )
    assert [v.field for v in field_violations(error)] == ["pipeline.source.repository"]
    assert fake.policy_checks[-1] == ("prod", "web", "demo.tencentcloudcr.com/other/app")


async def test_a_deployer_without_check_target_still_lets_creation_through(
    checked: Clients, deployer: tuple[FakeTargets, str]
) -> None:
    fake = deployer[0]
    fake.policy_unimplemented = True
    fake.denied_namespaces = {"web"}  # never consulted
    assert (await create_pipeline(checked, "web")).name == "pipelines/web"
    assert len(fake.policy_checks) == 1  # asked, and the deploy-time check is left to decide
