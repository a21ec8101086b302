"""The trigger's lifecycle with a real nats-server: crashed consumers restart and take health down
meanwhile; the stop keeps to one budget even when a webhook and a message never finish."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from nats.aio.client import Client as NATS

from conveyor import bus
from conveyor.lifecycle import ShutdownPlan
from conveyor.retry import RetryPolicy
from conveyor_trigger.adapters.pipeline_cache import PipelineCache
from conveyor_trigger.app import MATCHER, PIPELINE_CACHE, TriggerApp
from conveyor_trigger.edges.matcher_consumer import MatcherConsumer
from conveyor_trigger.settings import TriggerSettings
from tests.integration.trigger.test_trigger_matching_flow import HOST, distribution_push
from tests.integration.trigger.trigger_harness import TOKEN, FakeConfig, deploys_in_stream, post, trigger_env
from tests.support.nats_server import NatsServer
from tests.support.net import eventually
from tests.unit.trigger.trigger_factories import DIGEST_A, pipeline

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
# A crashed consumer stays down this long: long enough for the test to see health go down.
RESTART = RetryPolicy(initial=1.0, maximum=1.0, jitter=0.0)


@pytest.fixture
async def config() -> AsyncIterator[FakeConfig]:
    fake = await FakeConfig([pipeline("web", registry=HOST)]).start()
    yield fake
    await fake.stop()


def make_app(nats_server: NatsServer, config: FakeConfig, **env: str) -> TriggerApp:
    settings = TriggerSettings.from_env(trigger_env(nats_server.url, config.address, **env))
    return TriggerApp(settings, restart_policy=RESTART)


async def health(app: TriggerApp) -> int:
    async with grpc.aio.insecure_channel(app.grpc_address) as channel:
        reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""))
        return int(reply.status)


def health_is(app: TriggerApp, status: int, down: set[str]) -> Callable[[], Awaitable[None]]:
    async def check() -> None:
        assert await health(app) == status
        assert app.consumers_down == down

    return check


def crash_once(real: Callable[..., Awaitable[None]]) -> tuple[Callable[..., Awaitable[None]], list[int]]:
    calls: list[int] = []

    async def crashing(*args: Any, **kwargs: Any) -> None:
        calls.append(len(calls))
        if len(calls) == 1:
            raise RuntimeError("boom: a bug in the consumer")
        await real(*args, **kwargs)

    return crashing, calls


async def test_a_crashed_matcher_is_restarted_and_health_is_not_serving_meanwhile(
    nats_server: NatsServer, config: FakeConfig, nc: NATS, monkeypatch: pytest.MonkeyPatch
) -> None:
    crashing, calls = crash_once(bus.pull_loop)
    monkeypatch.setattr(bus, "pull_loop", crashing)
    app = make_app(nats_server, config)
    await app.start()
    try:
        await eventually(health_is(app, NOT_SERVING, {MATCHER}), timeout=10, interval=0.05)
        await eventually(health_is(app, SERVING, set()), timeout=10, interval=0.05)
        assert len(calls) == 2
        # The restarted matcher matches.
        await post(app, "distribution", distribution_push(("h1", "team/app", "v1", DIGEST_A)))

        async def deployed() -> None:
            assert [d.pipeline.name for _, d in await deploys_in_stream(nc.jetstream())] == ["pipelines/web"]

        await eventually(deployed, timeout=30)
    finally:
        await app.stop()


async def test_a_crashed_pipeline_cache_is_restarted_and_health_is_not_serving_meanwhile(
    nats_server: NatsServer, config: FakeConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    crashing, calls = crash_once(PipelineCache.run)
    monkeypatch.setattr(PipelineCache, "run", crashing)
    app = make_app(nats_server, config, CONVEYOR_TRIGGER_MATCHER_ENABLED="false")
    await app.start()
    try:
        await eventually(health_is(app, NOT_SERVING, {PIPELINE_CACHE}), timeout=10, interval=0.05)
        await eventually(health_is(app, SERVING, set()), timeout=10, interval=0.05)

        async def loaded() -> None:
            assert app.cache is not None and app.cache.current().get("pipelines/web") is not None

        await eventually(loaded)
        assert len(calls) == 2
    finally:
        await app.stop()


async def test_the_stop_keeps_to_one_budget_when_a_webhook_and_a_message_never_finish(
    nats_server: NatsServer, config: FakeConfig, nc: NATS, monkeypatch: pytest.MonkeyPatch
) -> None:
    handling = asyncio.Event()

    async def stuck(self: MatcherConsumer, msg: object) -> bus.Outcome:
        handling.set()
        await asyncio.Event().wait()  # e.g. a registry that never answers
        raise AssertionError("unreachable")

    monkeypatch.setattr(MatcherConsumer, "handle", stuck)
    # The grace alone would let each of them run 60 s (and the stop used to wait a grace per stage).
    app = make_app(nats_server, config, CONVEYOR_TRIGGER_SHUTDOWN_GRACE="60s")
    app.shutdown_plan = ShutdownPlan(total=3.0, final_slack=0.5)
    await app.start()
    stalled: asyncio.StreamWriter | None = None
    try:
        assert (await post(app, "distribution", distribution_push(("s1", "team/app", "v1", DIGEST_A)))).status == 200
        await asyncio.wait_for(handling.wait(), 30)
        # A webhook whose body never arrives: announced 1000 bytes, sent one.
        _, port = app.webhook_url.rsplit(":", 1)
        reader, stalled = await asyncio.open_connection("127.0.0.1", int(port))
        stalled.write(
            b"POST /webhooks/distribution HTTP/1.1\r\nHost: trigger\r\n"
            + f"Authorization: Bearer {TOKEN}\r\nContent-Length: 1000\r\n\r\n{{".encode()
        )
        await stalled.drain()
        await asyncio.sleep(0.3)  # the handler is reading the body
    finally:
        began = time.monotonic()
        await app.stop()
        elapsed = time.monotonic() - began
    assert elapsed < app.shutdown_plan.total + 0.3, elapsed
    assert stalled is not None
    assert await asyncio.wait_for(reader.read(), 5) == b""  # the stalled webhook's connection was closed
    stalled.close()
    # The message in hand was not acked: JetStream redelivers it after the ack wait.
    info = await nc.jetstream().consumer_info(bus.REGISTRY_EVENTS_STREAM, bus.TRIGGER_MATCHER_DURABLE)
    assert info.ack_floor.stream_seq == 0 and info.num_ack_pending == 1
