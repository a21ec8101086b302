"""The consumer lag gauges (conveyor_bus_consumer_pending / _ack_pending) against a real nats-server."""

from __future__ import annotations

import asyncio

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from prometheus_client import REGISTRY

from conveyor import bus
from conveyor.v1 import bus_pb2
from tests.support.net import eventually


def lag(durable: str) -> tuple[float | None, float | None]:
    return (
        REGISTRY.get_sample_value("conveyor_bus_consumer_pending", {"consumer": durable}),
        REGISTRY.get_sample_value("conveyor_bus_consumer_ack_pending", {"consumer": durable}),
    )


async def publish(nc: NATS, *tags: str) -> None:
    js = nc.jetstream()
    for tag in tags:
        await bus.publish(js, bus.IMAGE_PUSHED_SUBJECT, bus_pb2.ImagePushed(event_id=tag, tag=tag), tag)


async def test_the_gauges_follow_the_backlog_and_the_unacknowledged(nc: NATS) -> None:
    js = nc.jetstream()
    await bus.ensure_streams(js)
    spec = bus.ConsumerSpec(bus.REGISTRY_EVENTS_STREAM, bus.IMAGE_PUSHED_SUBJECT, "lag-test", ack_wait=30)
    await bus.ensure_consumer(js, spec)
    await publish(nc, "a", "b", "c")
    tracker = asyncio.create_task(bus.track_consumer_lag(js, spec.stream, spec.durable, interval=0.05))
    try:

        async def is_(expected: tuple[float, float]) -> None:
            assert lag("lag-test") == expected

        await eventually(lambda: is_((3.0, 0.0)), 10)
        subscription = await js.pull_subscribe_bind(spec.durable, spec.stream)
        fetched = await subscription.fetch(2, timeout=5)
        await eventually(lambda: is_((1.0, 2.0)), 10)
        for msg in fetched:
            await msg.ack_sync()
        await eventually(lambda: is_((1.0, 0.0)), 10)
        await subscription.unsubscribe()
    finally:
        tracker.cancel()


async def test_the_pull_loop_tracks_its_consumer_while_it_runs(nc: NATS) -> None:
    js = nc.jetstream()
    await bus.ensure_streams(js)
    spec = bus.ConsumerSpec(bus.REGISTRY_EVENTS_STREAM, bus.IMAGE_PUSHED_SUBJECT, "lag-loop", ack_wait=30)
    await publish(nc, "x")
    handled = asyncio.Event()

    async def handle(msg: Msg) -> bus.Outcome:
        handled.set()
        return bus.Outcome.ACK

    stop = asyncio.Event()
    loop = asyncio.create_task(bus.pull_loop(js, spec, handle, stop))

    async def reported() -> None:
        assert lag("lag-loop")[0] is not None

    await eventually(reported, 10)
    await asyncio.wait_for(handled.wait(), 10)
    stop.set()
    await asyncio.wait_for(loop, 10)
    await asyncio.sleep(0)  # let the cancellation land
    # Stopped with the loop: no task left polling a consumer nobody reads.
    assert not [t for t in asyncio.all_tasks() if "track_consumer_lag" in repr(t.get_coro())]
