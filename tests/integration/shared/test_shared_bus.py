"""conveyor.bus against a real nats-server: streams, dedup ids, the pull loop's outcomes."""

from __future__ import annotations

import asyncio

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from conveyor import bus
from conveyor.v1 import bus_pb2
from tests.support.nats_server import NatsServer
from tests.support.net import eventually


async def test_streams_are_idempotent_and_publish_dedups(nc: NATS) -> None:
    js = nc.jetstream()
    await bus.ensure_streams(js)
    await bus.ensure_streams(js)  # second call updates, does not fail
    event = bus_pb2.ImagePushed(event_id="e-1", registry="r.io", repository="team/app", tag="v1")
    assert await bus.publish(js, bus.IMAGE_PUSHED_SUBJECT, event, "e-1") is True
    assert await bus.publish(js, bus.IMAGE_PUSHED_SUBJECT, event, "e-1") is False
    info = await js.stream_info(bus.REGISTRY_EVENTS_STREAM)
    assert info.state.messages == 1


async def test_pull_loop_settles_by_outcome_and_survives_bad_messages(nc: NATS) -> None:
    js = nc.jetstream()
    await bus.ensure_streams(js)
    spec = bus.ConsumerSpec(bus.REGISTRY_EVENTS_STREAM, bus.IMAGE_PUSHED_SUBJECT, "test-loop", ack_wait=5)
    await js.publish(bus.IMAGE_PUSHED_SUBJECT, b"\xff\xff not protobuf")
    for tag in ("ok", "flaky", "ok2"):
        await bus.publish(js, bus.IMAGE_PUSHED_SUBJECT, bus_pb2.ImagePushed(event_id=tag, tag=tag), tag)

    handled: list[str] = []
    attempts: dict[str, int] = {}
    outcomes: list[bus.Outcome] = []

    async def handle(msg: Msg) -> bus.Outcome:
        event = bus.decode(bus_pb2.ImagePushed, msg.data)
        attempts[event.tag] = attempts.get(event.tag, 0) + 1
        if event.tag == "flaky" and attempts[event.tag] == 1:
            raise RuntimeError("transient")
        handled.append(event.tag)
        return bus.Outcome.ACK

    stop = asyncio.Event()
    loop = asyncio.create_task(bus.pull_loop(js, spec, handle, stop, nak_delay=0.1, on_outcome=outcomes.append))

    async def all_handled() -> None:
        assert sorted(handled) == ["flaky", "ok", "ok2"]

    await eventually(all_handled)
    stop.set()
    await asyncio.wait_for(loop, 10)
    assert attempts["flaky"] == 2
    assert bus.Outcome.TERM in outcomes and bus.Outcome.NAK in outcomes
    info = await js.consumer_info(bus.REGISTRY_EVENTS_STREAM, "test-loop")
    assert info.num_ack_pending == 0 and info.num_pending == 0


async def test_pull_loop_continues_across_a_server_restart(nats_server: NatsServer, nc: NATS) -> None:
    js = nc.jetstream()
    await bus.ensure_streams(js)
    spec = bus.ConsumerSpec(bus.REGISTRY_EVENTS_STREAM, bus.IMAGE_PUSHED_SUBJECT, "test-restart", ack_wait=5)
    seen: list[str] = []

    async def handle(msg: Msg) -> bus.Outcome:
        seen.append(bus.decode(bus_pb2.ImagePushed, msg.data).tag)
        return bus.Outcome.ACK

    stop = asyncio.Event()
    loop = asyncio.create_task(bus.pull_loop(js, spec, handle, stop))
    await bus.publish(js, bus.IMAGE_PUSHED_SUBJECT, bus_pb2.ImagePushed(tag="before"), "before")
    await eventually(lambda: _contains(seen, "before"))
    nats_server.kill()
    nats_server.start()

    async def published_after() -> None:
        try:
            await bus.publish(js, bus.IMAGE_PUSHED_SUBJECT, bus_pb2.ImagePushed(tag="after"), "after", timeout=1)
        except Exception as exc:
            raise AssertionError(f"not reconnected yet: {exc}") from exc

    await eventually(published_after, timeout=20)
    await eventually(lambda: _contains(seen, "after"), timeout=20)
    stop.set()
    await asyncio.wait_for(loop, 10)
    assert seen.count("before") == 1


async def _contains(items: list[str], item: str) -> None:
    assert item in items
