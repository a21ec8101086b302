"""Each service's consumer dead-letters what it can never process, and goes on with the rest (real nats-server)."""

from __future__ import annotations

import asyncio
import pathlib
from dataclasses import dataclass, field
from typing import Any

import pytest
from google.protobuf import timestamp_pb2
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from conveyor import bus, dead_letters
from conveyor.v1 import bus_pb2, run_pb2, run_service_pb2
from conveyor_config.app import ConfigApp
from conveyor_config.settings import ConfigSettings
from conveyor_config.usecases.runs import RunUseCases
from conveyor_deployer.adapters.jetstream import JetStreamDeployRequests
from conveyor_deployer.edges.consumer import DeployRequestConsumer
from conveyor_trigger.adapters.jetstream import RegistryEventsConsumer
from conveyor_trigger.edges.matcher_consumer import MatcherConsumer
from conveyor_trigger.usecases.match import InvalidPush
from tests.integration.config.conftest import connected
from tests.integration.config.support import create_pipeline
from tests.support.kube import deploy_requested
from tests.support.nats_server import NatsServer
from tests.support.net import eventually

RUN = "pipelines/web/runs/01jq4ezk5y8v6p1x0m3d2c7b9a"


async def dead_letters_of(js: JetStreamContext, consumer: str, count: int) -> dict[str, dead_letters.DeadLetter]:
    """The consumer's dead letters by original msg id, once there are `count` of them."""

    async def stored() -> dict[str, dead_letters.DeadLetter]:
        found = await dead_letters.read(js, consumer=consumer)
        assert len(found) == count, found
        return {letter.msg_id: letter for letter in found}

    return await eventually(stored, timeout=30)


async def settled(js: JetStreamContext, stream: str, durable: str) -> None:
    info = await js.consumer_info(stream, durable)
    last = (await js.stream_info(stream)).state.last_seq
    assert (info.delivered.stream_seq, info.num_pending, info.num_ack_pending) == (last, 0, 0), info


async def test_config_dead_letters_run_events_it_can_never_store_and_stores_the_rest(
    nats_server: NatsServer, nc: NATS, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The defect: a RunEvent whose storage keeps failing was nak'ed forever, a traceback every second."""
    calls: dict[str, int] = {}
    real_record = RunUseCases.record_event

    async def record_event(self: RunUseCases, event: bus_pb2.RunEvent, fallback_id: str) -> Any:
        calls[event.event_id] = calls.get(event.event_id, 0) + 1
        if event.event_id == "storage-fails":
            raise RuntimeError("(sqlite3.DataError) value out of range")
        return await real_record(self, event, fallback_id)

    monkeypatch.setattr(RunUseCases, "record_event", record_event)

    # As when a batch's transaction fails: each event on its own, through the failing record_event above.
    async def record_events(self: RunUseCases, events: Any) -> list[Any]:
        return [await self._record_alone(event, event_id) for event, event_id, _trace in events]

    monkeypatch.setattr(RunUseCases, "record_events", record_events)
    environ = {
        "CONVEYOR_CONFIG_ADDR": "127.0.0.1:0",
        "CONVEYOR_NATS_URL": nats_server.url,
        "CONVEYOR_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'service.db'}",
        "CONVEYOR_CONFIG_SHUTDOWN_GRACE": "1s",
        "CONVEYOR_CONFIG_REGISTRY_CHECK": "false",
        "CONVEYOR_BUS_MAX_DELIVER": "2",
    }
    service = ConfigApp(ConfigSettings.from_env(environ))
    await service.start()
    try:
        js = nc.jetstream()
        async with connected(service.address) as clients:
            await create_pipeline(clients, "web")
            out_of_range = bus_pb2.RunEvent(run=RUN, event_id="nanos-1e9", state=run_pb2.Run.RUNNING)
            out_of_range.time.CopyFrom(timestamp_pb2.Timestamp(seconds=1_700_000_000, nanos=1_000_000_000))
            for event in (
                out_of_range,
                bus_pb2.RunEvent(run=RUN, event_id="storage-fails", state=run_pb2.Run.RUNNING),
                bus_pb2.RunEvent(run=RUN, event_id="good", state=run_pb2.Run.QUEUED, trigger=run_pb2.Run.PUSH),
            ):
                await bus.publish(js, bus.RUN_EVENTS_SUBJECT, event, event.event_id)
            found = await dead_letters_of(js, bus.CONFIG_RUN_EVENTS_DURABLE, 2)
            await eventually(lambda: settled(js, bus.RUN_EVENTS_STREAM, bus.CONFIG_RUN_EVENTS_DURABLE))
            run = await clients.runs.GetRun(run_service_pb2.GetRunRequest(name=RUN))
        assert run.state == run_pb2.Run.QUEUED  # the good event was stored
        await asyncio.sleep(1.5)  # past the next redelivery wait: neither comes back
        assert calls["storage-fails"] == 2 and calls["good"] == 1
        assert calls.get("nanos-1e9", 0) <= 2
    finally:
        await service.stop()
    failing = found["storage-fails"]
    assert (failing.reason, failing.deliveries, failing.subject) == (dead_letters.FAILED, 2, bus.RUN_EVENTS_SUBJECT)
    assert "RuntimeError: (sqlite3.DataError) value out of range" in failing.error
    assert found["nanos-1e9"].reason in (dead_letters.INVALID, dead_letters.FAILED)


@dataclass
class NakingDispatcher:
    """Hands every deploy request straight back, as a deployer that keeps failing (or stopping) does."""

    held: int = 0
    settled: asyncio.Event = field(default_factory=asyncio.Event)
    submitted: list[str] = field(default_factory=list)

    async def submit(self, request: Any, delivery: Any) -> None:
        self.submitted.append(request.run_id)
        await delivery.nak(0.0)


async def test_the_deployer_dead_letters_bad_requests_and_those_it_gave_back_on_every_delivery(nc: NATS) -> None:
    js = nc.jetstream()
    await bus.ensure_streams(js)
    dispatcher = NakingDispatcher()
    requests = JetStreamDeployRequests(js, ack_wait=2.0, max_held=10, max_deliver=2)
    consumer = DeployRequestConsumer(requests, dispatcher, None, max_held=10, default_rollout_timeout=30.0)  # type: ignore[arg-type]
    await consumer.prepare()
    stop = asyncio.Event()
    task = asyncio.create_task(consumer.run(stop))
    try:
        await js.publish(bus.DEPLOY_REQUESTED_SUBJECT, b"\xff\x00 not protobuf", headers={bus.MSG_ID_HEADER: "junk"})
        nameless = deploy_requested()
        nameless.run = "not a run name"
        await bus.publish(js, bus.DEPLOY_REQUESTED_SUBJECT, nameless, "nameless")
        given_back = deploy_requested()
        await bus.publish(js, bus.DEPLOY_REQUESTED_SUBJECT, given_back, given_back.run)
        found = await dead_letters_of(js, bus.DEPLOYER_DURABLE, 3)
        await eventually(lambda: settled(js, bus.DEPLOY_REQUESTS_STREAM, bus.DEPLOYER_DURABLE))
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
    assert (found["junk"].reason, found["junk"].deliveries) == (dead_letters.UNDECODABLE, 1)
    assert found["junk"].error.startswith("not a DeployRequested")
    assert (found["nameless"].reason, found["nameless"].deliveries) == (dead_letters.INVALID, 1)
    assert (found[given_back.run].reason, found[given_back.run].deliveries) == (dead_letters.DELIVERY_LIMIT, 2)
    assert len(dispatcher.submitted) == 2  # delivered twice, then no more


class Matcher:
    """Rejects one push for good, fails on another every time, matches the rest."""

    def __init__(self) -> None:
        self.matched: list[str] = []
        self.failures = 0

    async def handle(self, push: bus_pb2.ImagePushed, **_: Any) -> None:
        if push.tag == "no-repository":
            raise InvalidPush("the push names no repository")
        if push.tag == "flaky-forever":
            self.failures += 1
            raise ConnectionError("pushes bucket unavailable")
        self.matched.append(push.tag)


async def test_the_trigger_matcher_dead_letters_what_never_matches_and_matches_the_rest(nc: NATS) -> None:
    js = nc.jetstream()
    await bus.ensure_streams(js)
    matcher = Matcher()
    handle = MatcherConsumer(matcher).handle  # type: ignore[arg-type]
    consumer = RegistryEventsConsumer(js, handle, ack_wait=5.0, max_deliver=3)
    for tag in ("v1", "no-repository", "flaky-forever", "v2"):
        await bus.publish(js, bus.IMAGE_PUSHED_SUBJECT, bus_pb2.ImagePushed(event_id=tag, tag=tag), tag)
    await js.publish(bus.IMAGE_PUSHED_SUBJECT, b"\xff junk", headers={bus.MSG_ID_HEADER: "junk"})
    ready, stop = asyncio.Event(), asyncio.Event()
    ready.set()
    task = asyncio.create_task(consumer.run(stop, ready))
    try:
        found = await dead_letters_of(js, bus.TRIGGER_MATCHER_DURABLE, 3)
        await eventually(lambda: settled(js, bus.REGISTRY_EVENTS_STREAM, bus.TRIGGER_MATCHER_DURABLE))
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
    assert matcher.matched == ["v1", "v2"] and matcher.failures == 3
    assert (found["no-repository"].reason, found["no-repository"].error) == (
        dead_letters.INVALID,
        "the push names no repository",
    )
    assert (found["flaky-forever"].reason, found["flaky-forever"].deliveries) == (dead_letters.FAILED, 3)
    assert "ConnectionError: pushes bucket unavailable" in found["flaky-forever"].error
    assert found["junk"].reason == dead_letters.UNDECODABLE
