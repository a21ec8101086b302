"""One malformed deploy request must not stop all deploys (issue 12, section 0), through a real nats-server.

A DeployRequested with an out-of-range timestamp used to raise a plain ValueError out of the consumer: the
fetch loop died, and every later request -- redelivered behind the bad one -- waited forever.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from nats.aio.client import Client as NATS
from prometheus_client import REGISTRY

from conveyor import bus
from conveyor.lifecycle import ShutdownPlan
from conveyor.retry import RetryPolicy
from conveyor.v1 import run_pb2
from conveyor_deployer.app import DeployerApp
from conveyor_deployer.edges.consumer import CONSUMER
from conveyor_deployer.settings import DeployerSettings
from tests.integration.deployer.conftest import Stack, stored_run_events, terminal_states
from tests.support.kube import deploy_requested, patch_bodies
from tests.support.nats_server import NatsServer
from tests.support.net import eventually

Health = health_pb2.HealthCheckResponse


def bad_input(reason: str) -> float:
    labels = {"source": "deploy_requested", "reason": reason}
    return REGISTRY.get_sample_value("conveyor_bad_input_total", labels) or 0.0


@pytest.fixture
async def app(stack: Stack, nats_server: NatsServer) -> AsyncIterator[DeployerApp]:
    settings = DeployerSettings.from_env(
        {
            "CONVEYOR_DEPLOYER_ADDR": "127.0.0.1:0",
            "CONVEYOR_NATS_URL": nats_server.url,
            "CONVEYOR_DEPLOYER_ACK_WAIT": "1s",  # a message left unsettled would be back within the test
            "CONVEYOR_DEPLOYER_POLL_INTERVAL": "50ms",
        }
    )
    deployer = DeployerApp(
        settings,
        {"KUBECONFIG": str(stack.kubeconfig)},
        shutdown_plan=ShutdownPlan(total=2.0),
        consumer_restart=RetryPolicy(initial=0.5, maximum=0.5, jitter=0.0),
    )
    yield deployer  # started by the test
    await deployer.stop()


async def health(app: DeployerApp) -> int:
    assert app.grpc is not None
    async with grpc.aio.insecure_channel(app.grpc.bound_address) as channel:
        reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""))
    return int(reply.status)


async def test_a_malformed_request_is_dropped_with_its_reason_and_the_next_one_deploys(
    stack: Stack, nc: NATS, app: DeployerApp, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="conveyor_deployer")
    js = nc.jetstream()
    await bus.ensure_streams(js)
    malformed = deploy_requested(image="registry.example.com/demo/web:6.6.6")
    malformed.requested_at.nanos = 1_000_000_000
    good = deploy_requested(image="registry.example.com/demo/web:7.0.0")
    counted = bad_input("malformed")

    # Both waiting before the deployer starts: one fetch brings them, the malformed one first.
    await bus.publish(js, bus.DEPLOY_REQUESTED_SUBJECT, malformed, malformed.run)
    await bus.publish(js, bus.DEPLOY_REQUESTED_SUBJECT, good, good.run)
    await app.start()

    async def good_deployed() -> None:
        assert terminal_states(await stored_run_events(js), good.run) == [run_pb2.Run.SUCCEEDED]

    await eventually(good_deployed, 20)
    images = [op["value"] for ops in patch_bodies(stack.sandbox, "Deployment", "demo", "web") for op in ops]
    assert "registry.example.com/demo/web:7.0.0" in images
    assert "registry.example.com/demo/web:6.6.6" not in images
    assert terminal_states(await stored_run_events(js), malformed.run) == []  # not reported on the run it names
    assert bad_input("malformed") - counted == 1
    (line,) = [r for r in caplog.records if "malformed deploy request" in r.getMessage()]
    assert "requested_at: nanos 1000000000 is out of range" in str(getattr(line, "error", ""))

    async def nothing_left_to_redeliver() -> None:
        info = await js.consumer_info(bus.DEPLOY_REQUESTS_STREAM, CONSUMER)
        assert info.num_ack_pending == 0 and info.num_pending == 0

    await eventually(nothing_left_to_redeliver)
    assert await health(app) == Health.SERVING
    assert bad_input("malformed") - counted == 1  # settled once, never redelivered
