"""DeployerApp in-process on a real nats-server and the sandbox: consumer crash -> restart -> health, bounded stop."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from nats.aio.client import Client as NATS

from conveyor import bus
from conveyor.lifecycle import ShutdownPlan
from conveyor.retry import RetryPolicy
from conveyor.v1 import run_pb2
from conveyor_deployer.app import DeployerApp
from conveyor_deployer.edges.consumer import CONSUMER, DeployRequestConsumer, InboundDelivery
from conveyor_deployer.settings import DeployerSettings
from tests.integration.deployer.conftest import Stack, stored_run_events, terminal_states
from tests.support.kube import deploy_requested, patch_bodies
from tests.support.nats_server import NatsServer
from tests.support.net import eventually

Health = health_pb2.HealthCheckResponse
PLAN = ShutdownPlan(total=2.0)
# One restart wait long enough to see NOT_SERVING from outside.
RESTART = RetryPolicy(initial=1.0, maximum=1.0, jitter=0.0)

MakeApp = Callable[..., DeployerApp]


@pytest.fixture
async def make_app(stack: Stack, nats_server: NatsServer) -> AsyncIterator[MakeApp]:
    apps: list[DeployerApp] = []

    def make(**environ: str) -> DeployerApp:
        settings = DeployerSettings.from_env(
            {
                "CONVEYOR_DEPLOYER_ADDR": "127.0.0.1:0",
                "CONVEYOR_NATS_URL": nats_server.url,
                "CONVEYOR_DEPLOYER_ACK_WAIT": "1s",
                "CONVEYOR_DEPLOYER_POLL_INTERVAL": "50ms",
                **environ,
            }
        )
        app = DeployerApp(settings, {"KUBECONFIG": str(stack.kubeconfig)}, shutdown_plan=PLAN, consumer_restart=RESTART)
        apps.append(app)
        return app

    yield make
    for app in apps:
        await app.stop()  # a second stop finds everything stopped


async def health(app: DeployerApp) -> int:
    assert app.grpc is not None
    async with grpc.aio.insecure_channel(app.grpc.bound_address) as channel:
        reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""))
    return int(reply.status)


async def test_a_crashed_consumer_takes_health_down_until_it_is_restarted(
    stack: Stack, nc: NATS, make_app: MakeApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    handle = DeployRequestConsumer.handle
    crashes: list[str] = []

    async def crash_once(self: DeployRequestConsumer, delivery: InboundDelivery) -> None:
        if not crashes:
            crashes.append("crashed")
            raise RuntimeError("a bug in handling")
        await handle(self, delivery)

    monkeypatch.setattr(DeployRequestConsumer, "handle", crash_once)
    js = nc.jetstream()
    await bus.ensure_streams(js)
    app = make_app()
    await app.start()
    assert await health(app) == Health.SERVING

    message = deploy_requested(image="registry.example.com/demo/web:4.0.0")
    await bus.publish(js, bus.DEPLOY_REQUESTED_SUBJECT, message, message.run)

    async def down() -> None:
        assert crashes and await health(app) == Health.NOT_SERVING

    async def up_again() -> None:
        assert await health(app) == Health.SERVING

    await eventually(down, 10, interval=0.02)
    await eventually(up_again, 10)

    # The message the crash left unsettled comes back after the ack wait and is deployed once.
    async def finished() -> None:
        assert terminal_states(await stored_run_events(js), message.run) == [run_pb2.Run.SUCCEEDED]

    await eventually(finished, 20)
    assert len(patch_bodies(stack.sandbox, "Deployment", "demo", "web")) == 1


async def test_a_run_that_never_finishes_is_handed_back_within_the_stop_plan(
    stack: Stack, nc: NATS, make_app: MakeApp
) -> None:
    stack.sandbox.auto_rollout = False  # the rollout is followed until its timeout: never, in this test
    js = nc.jetstream()
    await bus.ensure_streams(js)
    app = make_app(CONVEYOR_DEPLOYER_SHUTDOWN_GRACE="1h", CONVEYOR_DEPLOYER_ACK_WAIT="30s")
    await app.start()
    message = deploy_requested(image="registry.example.com/demo/web:5.0.0", rollout_timeout=3600)
    await bus.publish(js, bus.DEPLOY_REQUESTED_SUBJECT, message, message.run)

    async def patched() -> None:
        assert patch_bodies(stack.sandbox, "Deployment", "demo", "web")

    await eventually(patched, 20)

    began = time.monotonic()
    await app.stop()
    assert time.monotonic() - began < PLAN.total + 0.5  # not the 1h grace

    assert terminal_states(await stored_run_events(js), message.run) == []
    # Handed back (nak), not left to the 30 s ack wait: the next fetch gets it at once, second delivery.
    subscription = await js.pull_subscribe_bind(CONSUMER, bus.DEPLOY_REQUESTS_STREAM)
    [again] = await subscription.fetch(1, timeout=2.0)
    assert again.metadata.num_delivered == 2
