"""Dead letters against a real nats-server: bounded deliveries, what lands in CONVEYOR_DEAD_LETTERS, replay."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError
from prometheus_client import REGISTRY

from conveyor import bus, dead_letters
from conveyor.v1 import bus_pb2
from tests.support.net import eventually

Handler = Callable[[Msg], Awaitable[bus.Outcome]]


def dead_lettered(consumer: str, reason: str) -> float:
    return REGISTRY.get_sample_value("conveyor_dead_letters_total", {"consumer": consumer, "reason": reason}) or 0.0


@contextlib.asynccontextmanager
async def consuming(js: JetStreamContext, spec: bus.ConsumerSpec, handle: Handler) -> AsyncIterator[list[bus.Outcome]]:
    outcomes: list[bus.Outcome] = []
    stop = asyncio.Event()
    loop = asyncio.create_task(bus.pull_loop(js, spec, handle, stop, nak_delay=0.05, on_outcome=outcomes.append))
    try:
        yield outcomes
    finally:
        stop.set()
        await asyncio.wait_for(loop, 10)


async def letters(js: JetStreamContext, count: int) -> list[dead_letters.DeadLetter]:
    async def stored() -> list[dead_letters.DeadLetter]:
        found = await dead_letters.read(js)
        assert len(found) == count, found
        return found

    return await eventually(stored, timeout=20)


async def settled(js: JetStreamContext, stream: str, durable: str) -> None:
    info = await js.consumer_info(stream, durable)
    assert (info.num_ack_pending, info.num_pending) == (0, 0), info


async def test_a_poison_message_among_good_ones_is_dead_lettered_after_max_deliver(nc: NATS) -> None:
    js = nc.jetstream()
    await bus.ensure_streams(js)
    spec = bus.ConsumerSpec(bus.REGISTRY_EVENTS_STREAM, bus.IMAGE_PUSHED_SUBJECT, "poison", ack_wait=5, max_deliver=3)
    tags = ["good-1", "poison", "good-2", "good-3"]
    acks = {}
    for tag in tags:
        event = bus_pb2.ImagePushed(event_id=tag, repository="team/app", tag=tag)
        acks[tag] = await js.publish(
            bus.IMAGE_PUSHED_SUBJECT,
            event.SerializeToString(),
            headers={bus.MSG_ID_HEADER: tag, bus.TYPE_HEADER: "conveyor.v1.ImagePushed", "X-Origin": "ci"},
        )
    deliveries: dict[str, int] = {}
    handled: list[str] = []

    async def handle(msg: Msg) -> bus.Outcome:
        tag = bus.decode(bus_pb2.ImagePushed, msg.data).tag
        deliveries[tag] = deliveries.get(tag, 0) + 1
        if tag == "poison":
            raise RuntimeError("storage says: timestamp out of range")
        handled.append(tag)
        return bus.Outcome.ACK

    before = dead_lettered("poison", dead_letters.FAILED)
    async with consuming(js, spec, handle) as outcomes:
        [letter] = await letters(js, 1)
        assert sorted(handled) == ["good-1", "good-2", "good-3"]  # each once, the poison did not hold them up
        await eventually(lambda: settled(js, spec.stream, spec.durable))
        await asyncio.sleep(1.0)  # longer than any redelivery wait here: nothing comes back
    assert deliveries == {"good-1": 1, "poison": 3, "good-2": 1, "good-3": 1}
    assert outcomes.count(bus.Outcome.NAK) == 2 and outcomes.count(bus.Outcome.TERM) == 1
    assert dead_lettered("poison", dead_letters.FAILED) - before == 1

    assert (letter.consumer, letter.stream, letter.subject) == ("poison", bus.REGISTRY_EVENTS_STREAM, spec.subject)
    assert (letter.stream_sequence, letter.deliveries, letter.reason) == (acks["poison"].seq, 3, dead_letters.FAILED)
    assert "RuntimeError: storage says: timestamp out of range" in letter.error
    assert letter.msg_id == "poison"
    assert letter.headers == {bus.TYPE_HEADER: "conveyor.v1.ImagePushed", "X-Origin": "ci"}
    assert bus.decode(bus_pb2.ImagePushed, letter.data).tag == "poison"
    assert letter.time is not None
    info = await js.stream_info(bus.DEAD_LETTERS_STREAM)
    assert info.config.subjects == [bus.DEAD_LETTERS_SUBJECTS]


async def test_undecodable_and_rejected_messages_are_dead_lettered_at_once(nc: NATS) -> None:
    js = nc.jetstream()
    await bus.ensure_streams(js)
    spec = bus.ConsumerSpec(bus.RUN_EVENTS_STREAM, bus.RUN_EVENTS_SUBJECT, "rejects", ack_wait=5)
    await js.publish(bus.RUN_EVENTS_SUBJECT, b"\xff\xff not protobuf", headers={bus.MSG_ID_HEADER: "junk"})
    for event_id in ("term", "unprocessable", "fine"):
        await bus.publish(js, bus.RUN_EVENTS_SUBJECT, bus_pb2.RunEvent(event_id=event_id), event_id)
    deliveries: list[str] = []

    async def handle(msg: Msg) -> bus.Outcome:
        event = bus.decode(bus_pb2.RunEvent, msg.data)  # DecodeError for the junk
        deliveries.append(event.event_id)
        if event.event_id == "term":
            return bus.Outcome.TERM
        if event.event_id == "unprocessable":
            raise bus.Unprocessable("time: nanos must be below 1e9, got 1000000000")
        return bus.Outcome.ACK

    async with consuming(js, spec, handle):
        found = await letters(js, 3)
        await eventually(lambda: settled(js, spec.stream, spec.durable))
    assert sorted(deliveries) == ["fine", "term", "unprocessable"]  # no retries for any of them
    by_id = {letter.msg_id: letter for letter in found}
    assert (by_id["junk"].reason, by_id["junk"].deliveries) == (dead_letters.UNDECODABLE, 1)
    assert by_id["junk"].error.startswith("cannot be decoded") and by_id["junk"].data == b"\xff\xff not protobuf"
    assert by_id["term"].reason == dead_letters.INVALID and "terminated by the handler" in by_id["term"].error
    assert by_id["unprocessable"].reason == dead_letters.INVALID
    assert by_id["unprocessable"].error == "time: nanos must be below 1e9, got 1000000000"


async def test_consumers_get_a_bounded_delivery_count_even_if_created_unbounded(nc: NATS) -> None:
    js = nc.jetstream()
    await bus.ensure_streams(js)
    old = bus.ConsumerSpec(bus.RUN_EVENTS_STREAM, bus.RUN_EVENTS_SUBJECT, "upgraded", max_deliver=-1)
    await bus.ensure_consumer(js, old)
    assert (await js.consumer_info(old.stream, old.durable)).config.max_deliver == -1
    await bus.ensure_consumer(js, bus.ConsumerSpec(bus.RUN_EVENTS_STREAM, bus.RUN_EVENTS_SUBJECT, "upgraded"))
    assert (await js.consumer_info(old.stream, old.durable)).config.max_deliver == bus.DEFAULT_MAX_DELIVER == 5


async def test_what_the_server_stops_redelivering_is_dead_lettered_once_by_the_watchers(nc: NATS) -> None:
    """Nak'ed (or crashed on, or timed out) on its last delivery: the MAX_DELIVERIES advisory brings it in."""
    js = nc.jetstream()
    await bus.ensure_streams(js)
    spec = bus.ConsumerSpec(bus.DEPLOY_REQUESTS_STREAM, bus.DEPLOY_REQUESTED_SUBJECT, "limited", max_deliver=2)
    await bus.ensure_consumer(js, spec)
    # Two replicas of the consumer each hear the advisory; the dead letter's id stores it once.
    watchers = [await dead_letters.DeadLetters(js, spec.durable).watch(spec.stream) for _ in range(2)]
    before = dead_lettered("limited", dead_letters.DELIVERY_LIMIT)
    request = bus_pb2.DeployRequested(run="pipelines/web/runs/r1")
    await bus.publish(js, bus.DEPLOY_REQUESTED_SUBJECT, request, "r1")
    pull = await js.pull_subscribe_bind(spec.durable, spec.stream)
    try:
        for _ in range(2):
            [msg] = await pull.fetch(1, timeout=5)
            await msg.nak()  # handed back, as a stopping deployer does
        [letter] = await eventually(lambda: _fetch_until_letter(js, pull), timeout=20)
    finally:
        await pull.unsubscribe()
        for watcher in watchers:
            await watcher.unsubscribe()
    assert (letter.reason, letter.deliveries, letter.consumer) == (dead_letters.DELIVERY_LIMIT, 2, "limited")
    assert letter.subject == bus.DEPLOY_REQUESTED_SUBJECT and letter.msg_id == "r1"
    assert bus.decode(bus_pb2.DeployRequested, letter.data).run == request.run
    assert "delivered 2 times without being settled" in letter.error
    assert dead_lettered("limited", dead_letters.DELIVERY_LIMIT) - before == 1


async def _fetch_until_letter(js: JetStreamContext, pull: JetStreamContext.PullSubscription) -> list[object]:
    # The server decides "no more deliveries" (and advises) when a pull asks for the message again.
    with contextlib.suppress(TimeoutError):
        assert await pull.fetch(1, timeout=0.2) == [], "delivered past max_deliver"
    found = await dead_letters.read(js)
    assert found, "not dead-lettered yet"
    return list(found)


async def test_a_dead_letter_that_cannot_be_stored_leaves_the_message_for_later(nc: NATS) -> None:
    js = nc.jetstream()
    await bus.ensure_streams(js)
    await js.delete_stream(bus.DEAD_LETTERS_STREAM)  # e.g. an operator removed it
    spec = bus.ConsumerSpec(bus.REGISTRY_EVENTS_STREAM, bus.IMAGE_PUSHED_SUBJECT, "later")
    await js.publish(bus.IMAGE_PUSHED_SUBJECT, b"\xff junk", headers={bus.MSG_ID_HEADER: "junk"})
    seen = 0

    async def handle(msg: Msg) -> bus.Outcome:
        nonlocal seen
        seen += 1
        raise bus.Unprocessable("junk", reason=dead_letters.UNDECODABLE)

    async with consuming(js, spec, handle):

        async def tried_twice() -> None:
            assert seen >= 2

        await eventually(tried_twice, timeout=30)  # nak'ed, not dropped: it comes back
        await bus.ensure_streams(js)  # the next service start recreates it
        [letter] = await letters(js, 1)
        await eventually(lambda: settled(js, spec.stream, spec.durable))
    assert (letter.reason, letter.msg_id) == (dead_letters.UNDECODABLE, "junk")
    assert letter.deliveries >= 2


async def test_replay_republishes_the_original_with_its_headers_and_deletes_the_letter(nc: NATS) -> None:
    js = nc.jetstream()
    await bus.ensure_streams(js)
    spec = bus.ConsumerSpec(bus.RUN_EVENTS_STREAM, bus.RUN_EVENTS_SUBJECT, "replayed", ack_wait=5)
    fixed = asyncio.Event()
    handled: list[dict[str, str]] = []

    async def handle(msg: Msg) -> bus.Outcome:
        if not fixed.is_set():
            raise bus.Unprocessable("unknown pipeline")
        handled.append(dict(msg.headers or {}))
        return bus.Outcome.ACK

    event = bus_pb2.RunEvent(run="pipelines/web/runs/r1", event_id="e1")
    async with consuming(js, spec, handle):
        await bus.publish(js, bus.RUN_EVENTS_SUBJECT, event, "e1")
        [letter] = await letters(js, 1)
        fixed.set()  # the operator fixed the cause
        replayed, ack = await dead_letters.replay(js, letter.sequence)
        assert (replayed.sequence, ack.stream) == (letter.sequence, bus.RUN_EVENTS_STREAM)
        assert await dead_letters.read(js) == []

        async def handled_once() -> None:
            assert len(handled) == 1

        await eventually(handled_once)
    # Its own headers, a msg id of its own: the original id is still inside the duplicate window.
    assert handled[0][bus.TYPE_HEADER] == "conveyor.v1.RunEvent"
    assert handled[0][bus.MSG_ID_HEADER] == f"e1.replay-{letter.sequence}"
    stored = await js.get_msg(bus.RUN_EVENTS_STREAM, ack.seq)
    assert stored.data == event.SerializeToString() and stored.subject == bus.RUN_EVENTS_SUBJECT
    assert not any(name.startswith("Conveyor-Dead-") for name in stored.headers or {})


async def test_read_filters_by_consumer_and_limit(nc: NATS) -> None:
    js = nc.jetstream()
    await bus.ensure_streams(js)
    original = dead_letters.Original(bus.RUN_EVENTS_STREAM, bus.RUN_EVENTS_SUBJECT, 1, b"x")
    for consumer, sequence in (("a", 1), ("b", 2), ("a", 3)):
        box = dead_letters.DeadLetters(js, consumer)
        assert await box.store(
            dead_letters.Original(original.stream, original.subject, sequence, b"x"), "invalid", "line one\nline two"
        )
    assert not await dead_letters.DeadLetters(js, "a").store(original, "invalid", "again")  # stored once
    assert [letter.stream_sequence for letter in await dead_letters.read(js, consumer="a")] == [1, 3]
    assert [letter.consumer for letter in await dead_letters.read(js, limit=2)] == ["a", "b"]
    assert (await dead_letters.get(js, 2)).error == "line one line two"
    with pytest.raises(NotFoundError):
        await dead_letters.get(js, 99)
    await js.delete_stream(bus.DEAD_LETTERS_STREAM)
    with pytest.raises(NotFoundError):  # no service has started on this NATS: not "no dead letters"
        await dead_letters.read(js)
