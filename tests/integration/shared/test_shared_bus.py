"""conveyor.bus against a real nats-server: connecting, streams, dedup ids, the pull loop's outcomes."""

from __future__ import annotations

import asyncio
import pathlib
import time

import pytest
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from conveyor import bus
from conveyor.v1 import bus_pb2
from tests.support.nats_server import NatsServer
from tests.support.net import eventually, free_port


async def test_connect_takes_one_server_or_several_and_keeps_reconnecting(nats_server: NatsServer) -> None:
    dead = f"nats://127.0.0.1:{free_port()}"
    for url in (nats_server.url, f"{dead}, {nats_server.url}", [dead, nats_server.url]):
        nc = await bus.connect(url, "test-connect", connect_timeout=10)
        try:
            assert nc.is_connected and nc.connected_url is not None
            assert nc.connected_url.port == nats_server.port
            expected = {nats_server.port} if url == nats_server.url else {nats_server.port, int(dead.rsplit(":", 1)[1])}
            assert {server.port for server in nc.servers} == expected  # every server stays a reconnect candidate
        finally:
            await nc.close()

    # The bounded first connection does not bound reconnects: down for several reconnect rounds, then back.
    nc = await bus.connect(f"{dead},{nats_server.url}", "test-connect")
    try:
        nats_server.kill()
        await asyncio.sleep(3)
        assert not nc.is_closed
        nats_server.start()

        async def reconnected() -> None:
            assert nc.is_connected

        await eventually(reconnected, timeout=20)
    finally:
        await nc.close()


async def test_connect_retries_until_the_server_is_up(tmp_path: pathlib.Path) -> None:
    server = NatsServer(tmp_path / "nats")
    task = asyncio.create_task(bus.connect(server.url, "test-connect", connect_timeout=20))
    await asyncio.sleep(1.5)
    assert not task.done()
    await asyncio.to_thread(server.start)
    try:
        nc = await asyncio.wait_for(task, 20)
        assert nc.connected_url is not None and nc.connected_url.port == server.port
        await nc.close()
    finally:
        server.kill()


async def test_connect_gives_up_after_its_timeout_with_growing_waits() -> None:
    url = f"nats://127.0.0.1:{free_port()}"
    waits: list[float] = []

    async def sleep(delay: float) -> None:
        waits.append(delay)

    started = time.monotonic()
    with pytest.raises(ConnectionError, match=f"cannot connect to NATS at {url}"):
        await bus.connect(url, "test-connect", connect_timeout=1.5, sleep=sleep)
    # Each attempt tries the server twice, half a second apart; the waits between attempts double from 0.2 s.
    assert 1 <= len(waits) <= 3
    assert waits == [0.2, 0.4, 0.8][: len(waits)]
    assert time.monotonic() - started < 1.5 + 2


def test_server_urls_split_a_comma_separated_setting() -> None:
    assert bus.server_urls("nats://a:4222") == ["nats://a:4222"]
    assert bus.server_urls(" nats://a:4222 , nats://b:4222,") == ["nats://a:4222", "nats://b:4222"]
    assert bus.server_urls(["nats://a:4222", " "]) == ["nats://a:4222"]
    with pytest.raises(ValueError, match="no NATS server URL"):
        bus.server_urls(" , ")


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
