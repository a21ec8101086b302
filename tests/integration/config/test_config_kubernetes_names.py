"""Kubernetes names by the rule of each kind, end to end: the real config gRPC server checking its target against
the real deployer's TargetService, which serves the sandbox and deploys to it over a real nats-server.

A Deployment may be named like a DNS subdomain (`api.v2`, up to 253 characters); its namespace and
container may not, and both services say so in the API server's words.
"""

from __future__ import annotations

import pathlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc
import pytest

from conveyor.errors import field_violations
from conveyor.lifecycle import ShutdownPlan
from conveyor.v1 import (
    pipeline_pb2,
    pipeline_service_pb2,
    run_service_pb2,
    target_service_pb2 as tpb,
    target_service_pb2_grpc as tpb_grpc,
)
from conveyor.v1.run_pb2 import Run
from conveyor_config.app import ConfigApp
from conveyor_deployer.app import DeployerApp
from conveyor_deployer.settings import DeployerSettings
from conveyor_sandbox import SandboxCluster, samples
from tests.integration.config.conftest import Clients, StartConfig, connected
from tests.integration.config.support import rpc_error
from tests.support.kube import KubeClient, patch_bodies, sandbox_cluster
from tests.support.nats_server import NatsServer
from tests.support.net import eventually
from tests.unit.config.samples import sample_pipeline

Code = grpc.StatusCode
Target = pipeline_pb2.Target
LONGEST = "api." * 62 + "v2-01"  # 253 characters: the longest name Kubernetes allows a Deployment
LABEL_RULE = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-'"


@dataclass
class Cluster:
    sandbox: SandboxCluster
    kube: KubeClient
    deployer: DeployerApp

    @property
    def deployer_address(self) -> str:
        assert self.deployer.grpc is not None
        return self.deployer.grpc.bound_address


@pytest.fixture
async def cluster(tmp_path: pathlib.Path, nats_server: NatsServer) -> AsyncIterator[Cluster]:
    """The sandbox with Deployments `api.v2` and LONGEST in namespace demo, and a deployer for it."""
    assert len(LONGEST) == 253
    async with sandbox_cluster(tmp_path) as (sandbox, kubeconfig):
        kube = KubeClient(kubeconfig)
        for name in ("api.v2", LONGEST):
            body = samples.web()
            body["metadata"]["name"] = name
            await kube.create("Deployment", "demo", body)
        settings = DeployerSettings.from_env(
            {
                "CONVEYOR_DEPLOYER_ADDR": "127.0.0.1:0",
                "CONVEYOR_NATS_URL": nats_server.url,
                "CONVEYOR_DEPLOYER_POLL_INTERVAL": "50ms",
            }
        )
        deployer = DeployerApp(settings, {"KUBECONFIG": str(kubeconfig)}, shutdown_plan=ShutdownPlan(total=2.0))
        await deployer.start()
        try:
            yield Cluster(sandbox, kube, deployer)
        finally:
            await deployer.stop()
            kube.close()


def targeting(workload: str, **target: object) -> pipeline_pb2.Pipeline:
    fields: dict[str, object] = {
        "platform": Target.KUBERNETES,
        "region": "",
        "cluster": "sandbox",
        "namespace": "demo",
        "workload_kind": Target.DEPLOYMENT,
        "workload": workload,
        "container": "app",
        **target,
    }
    source = pipeline_pb2.Source(registry=samples.SAMPLE_REGISTRY, repository="demo/web")
    return sample_pipeline(source=source, target=pipeline_pb2.Target(**fields))  # type: ignore[arg-type]


async def create(clients: Clients, pipeline: pipeline_pb2.Pipeline) -> pipeline_pb2.Pipeline:
    return await clients.pipelines.CreatePipeline(pipeline_service_pb2.CreatePipelineRequest(pipeline=pipeline))


async def checked_config(start_config: StartConfig, cluster: Cluster, database_url: str | None = None) -> ConfigApp:
    return await start_config(database_url=database_url, env={"CONVEYOR_DEPLOYER_ADDR": cluster.deployer_address})


async def test_a_deployment_named_api_v2_is_targeted_and_deployed_to(
    start_config: StartConfig, cluster: Cluster
) -> None:
    config = await checked_config(start_config, cluster)
    async with connected(config.address) as clients:
        created = await create(clients, targeting("api.v2"))
        assert created.target.workload == "api.v2"

        run = await clients.pipelines.StartPipeline(
            pipeline_service_pb2.StartPipelineRequest(name=created.name, tag="2.0.0")
        )

        async def succeeded() -> None:
            got = await clients.runs.GetRun(run_service_pb2.GetRunRequest(name=run.name))
            assert got.state == Run.SUCCEEDED, Run.State.Name(got.state)

        await eventually(succeeded, 30)
    deployed = await cluster.kube.get("Deployment", "demo", "api.v2")
    images = {c["name"]: c["image"] for c in deployed["spec"]["template"]["spec"]["containers"]}
    assert images["app"] == f"{samples.SAMPLE_REGISTRY}/demo/web:2.0.0"
    assert len(patch_bodies(cluster.sandbox, "Deployment", "demo", "api.v2")) == 1
    untouched = await cluster.kube.get("Deployment", "demo", "web")
    assert untouched["spec"]["template"]["spec"]["containers"][0]["image"] == samples.SAMPLE_WEB_IMAGE


async def test_the_longest_deployment_name_is_stored_on_every_database(
    start_config: StartConfig, cluster: Cluster, database_url: str
) -> None:
    config = await checked_config(start_config, cluster, database_url)
    async with connected(config.address) as clients:
        created = await create(clients, targeting(LONGEST))
        got = await clients.pipelines.GetPipeline(pipeline_service_pb2.GetPipelineRequest(name=created.name))
        assert got.target.workload == LONGEST
        listed = await clients.pipelines.ListPipelines(
            pipeline_service_pb2.ListPipelinesRequest(filter=f'target.workload = "{LONGEST}"')
        )
        assert [p.name for p in listed.pipelines] == [created.name]


async def test_a_dotted_namespace_or_container_is_refused_in_kubernetes_words(
    start_config: StartConfig, cluster: Cluster
) -> None:
    config = await checked_config(start_config, cluster)
    async with connected(config.address) as clients:
        error = await rpc_error(
            create(clients, targeting("api.v2", namespace="api.v2", container="api.v2")), Code.INVALID_ARGUMENT
        )
    found = {v.field: v.description for v in field_violations(error)}
    assert set(found) == {"pipeline.target.namespace", "pipeline.target.container"}
    assert found["pipeline.target.namespace"].startswith("'api.v2' is not a valid namespace name (DNS-1123 label): ")
    assert LABEL_RULE in found["pipeline.target.container"]

    # The deployer's TargetService applies the same rules to what it is asked.
    async with grpc.aio.insecure_channel(cluster.deployer_address) as channel:
        targets = tpb_grpc.TargetServiceStub(channel)
        workload = await targets.GetWorkload(
            tpb.GetWorkloadRequest(cluster="sandbox", namespace="demo", kind=Target.DEPLOYMENT, name="api.v2")
        )
        assert workload.name == "api.v2"
        error = await rpc_error(
            targets.GetWorkload(
                tpb.GetWorkloadRequest(cluster="sandbox", namespace="api.v2", kind=Target.DEPLOYMENT, name="API.v2")
            ),
            Code.INVALID_ARGUMENT,
        )
        found = {v.field: v.description for v in field_violations(error)}
        assert set(found) == {"namespace", "name"}
        assert LABEL_RULE in found["namespace"]
        assert "a lowercase RFC 1123 subdomain must consist of" in found["name"]
        error = await rpc_error(
            targets.ListWorkloads(tpb.ListWorkloadsRequest(cluster="sandbox", namespace="api.v2")),
            Code.INVALID_ARGUMENT,
        )
        assert [v.field for v in field_violations(error)] == ["namespace"]
