"""Cluster policy (issue 11 §4): a DeployRequested published straight on a real nats-server, outside the policy of
its cluster, ends FAILED with the reason and the Kubernetes emulator sees no PATCH; CheckTarget answers the same."""

from __future__ import annotations

import pathlib
from collections.abc import AsyncIterator

import grpc
import pytest
from nats.aio.client import Client as NATS

from conveyor import bus
from conveyor.errors import field_violations
from conveyor.lifecycle import ShutdownPlan
from conveyor.v1 import bus_pb2, run_pb2, target_service_pb2 as pb, target_service_pb2_grpc as pb_grpc
from conveyor_deployer.app import DeployerApp
from conveyor_deployer.settings import DeployerSettings
from tests.integration.deployer.conftest import Stack, stored_run_events, terminal_states
from tests.support.kube import deploy_requested, patch_bodies
from tests.support.nats_server import NatsServer
from tests.support.net import eventually

POLICY = "{namespaces: [demo, 'team-*'], images: ['registry.example.com/demo/*']}"


@pytest.fixture
async def app(stack: Stack, nats_server: NatsServer, tmp_path: pathlib.Path) -> AsyncIterator[DeployerApp]:
    clusters_file = tmp_path / "clusters.yaml"
    clusters_file.write_text(
        f"clusters:\n  - name: sandbox\n    kubeconfig: {stack.kubeconfig}\n    policy: {POLICY}\n"
    )
    settings = DeployerSettings.from_env(
        {
            "CONVEYOR_DEPLOYER_ADDR": "127.0.0.1:0",
            "CONVEYOR_NATS_URL": nats_server.url,
            "CONVEYOR_CLUSTERS_FILE": str(clusters_file),
            "CONVEYOR_DEPLOYER_POLL_INTERVAL": "50ms",
        }
    )
    deployer = DeployerApp(settings, {"KUBECONFIG": str(stack.kubeconfig)}, shutdown_plan=ShutdownPlan(total=2.0))
    await deployer.start()
    yield deployer
    await deployer.stop()


def result(events: list[bus_pb2.RunEvent], run: str) -> bus_pb2.RunEvent:
    [event] = [e for e in events if e.run == run and e.state in (run_pb2.Run.SUCCEEDED, run_pb2.Run.FAILED)]
    return event


async def test_requests_outside_the_policy_fail_without_any_patch(stack: Stack, nc: NATS, app: DeployerApp) -> None:
    js = nc.jetstream()
    wrong_namespace = deploy_requested(namespace="kube-system", image="registry.example.com/demo/web:3.0.0")
    wrong_registry = deploy_requested(image="docker.io/evil/web:1.0.0")
    allowed = deploy_requested(image="registry.example.com/demo/web:2.0.0")
    for message in (wrong_namespace, wrong_registry, allowed):
        await bus.publish(js, bus.DEPLOY_REQUESTED_SUBJECT, message, message.run)

    async def all_ended() -> None:
        events = await stored_run_events(js)
        for message in (wrong_namespace, wrong_registry, allowed):
            assert terminal_states(events, message.run), message.run

    await eventually(all_ended, 20)
    events = await stored_run_events(js)
    assert result(events, allowed.run).state == run_pb2.Run.SUCCEEDED  # the policy lets the right ones through
    denied_namespace = result(events, wrong_namespace.run)
    assert denied_namespace.state == run_pb2.Run.FAILED
    assert denied_namespace.error == (
        "denied by the policy of cluster sandbox: namespace 'kube-system' is not allowed (namespaces: demo, team-*)"
    )
    denied_image = result(events, wrong_registry.run)
    assert denied_image.state == run_pb2.Run.FAILED
    assert denied_image.error == (
        "denied by the policy of cluster sandbox: image 'docker.io/evil/web' is not allowed "
        "(images: registry.example.com/demo/*)"
    )
    [allowed_patch] = patch_bodies(stack.sandbox, "Deployment", "demo", "web")  # the allowed run's only
    assert "registry.example.com/demo/web:2.0.0" in [op["value"] for op in allowed_patch]
    assert stack.sandbox.requests(method="PATCH", namespace="kube-system") == []
    assert len(stack.sandbox.requests(method="PATCH")) == len(stack.sandbox.requests(method="PATCH", name="web"))


async def test_check_target_gives_the_policy_verdict(app: DeployerApp) -> None:
    assert app.grpc is not None
    async with grpc.aio.insecure_channel(app.grpc.bound_address) as channel:
        targets = pb_grpc.TargetServiceStub(channel)
        allowed = await targets.CheckTarget(
            pb.CheckTargetRequest(cluster="sandbox", namespace="team-a", image="registry.example.com/demo/web")
        )
        assert list(allowed.denials) == []
        denied = await targets.CheckTarget(
            pb.CheckTargetRequest(cluster="sandbox", namespace="other", image="quay.io/x/y:1")
        )
        assert [d.field for d in denied.denials] == ["namespace", "image"]
        assert "namespace 'other' is not allowed" in denied.denials[0].description
        with pytest.raises(grpc.aio.AioRpcError) as unknown:
            await targets.CheckTarget(pb.CheckTargetRequest(cluster="mars", namespace="demo", image="r/a"))
        assert unknown.value.code() == grpc.StatusCode.NOT_FOUND
        with pytest.raises(grpc.aio.AioRpcError) as missing:
            await targets.CheckTarget(pb.CheckTargetRequest(cluster="sandbox"))
        assert missing.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert [v.field for v in field_violations(missing.value)] == ["namespace", "image"]
