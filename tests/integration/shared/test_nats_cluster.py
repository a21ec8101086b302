"""The bus on a three-node JetStream cluster: replicated streams and buckets, and riding through a node's death."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from google.protobuf.wrappers_pb2 import StringValue
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from conveyor import bus
from tests.support.nats_cluster import NatsCluster
from tests.support.net import eventually


@pytest.fixture
async def cluster_nc(nats_cluster: NatsCluster) -> AsyncIterator[NATS]:
    """A client the way the services connect: every node's URL in one comma-separated setting."""
    client = await bus.connect(nats_cluster.url, "cluster-test")
    try:
        yield client
    finally:
        await client.close()


async def peers(js: JetStreamContext, stream: str) -> tuple[int, str, int]:
    """(configured replicas, leader, replicas the leader reports current) of a stream.

    Fails with AssertionError (which `eventually` retries) while the cluster cannot answer, e.g. electing.
    """
    try:
        info = await js.stream_info(stream)
    except Exception as exc:
        raise AssertionError(f"no stream info for {stream}: {exc!r}") from exc
    assert info.cluster is not None and info.cluster.leader, f"{stream} has no leader"
    current = [peer for peer in info.cluster.replicas or [] if peer.current]
    return info.config.num_replicas or 1, info.cluster.leader, 1 + len(current)


async def test_streams_consumers_and_buckets_are_created_with_three_replicas(cluster_nc: NATS) -> None:
    js = cluster_nc.jetstream()
    await bus.ensure_streams(js, replicas=3)
    await bus.ensure_pushes_bucket(js, 60.0, replicas=3)
    for stream in [*bus.STREAMS, f"KV_{bus.PUSHES_BUCKET}"]:

        async def replicated(stream: str = stream) -> None:
            configured, _, current = await peers(js, stream)
            assert (configured, current) == (3, 3), stream

        await eventually(replicated)

    spec = bus.ConsumerSpec(bus.DEPLOY_REQUESTS_STREAM, bus.DEPLOY_REQUESTED_SUBJECT, "cluster-test")
    await bus.ensure_consumer(js, spec)
    info = await js.consumer_info(spec.stream, spec.durable)
    assert info.cluster is not None and len(info.cluster.replicas or []) == 2  # inherited: leader + 2


async def test_single_replica_streams_and_buckets_are_scaled_up_never_down(cluster_nc: NATS) -> None:
    js = cluster_nc.jetstream()
    await bus.ensure_streams(js)
    await bus.ensure_pushes_bucket(js, 60.0)
    assert (await peers(js, bus.RUN_EVENTS_STREAM))[0] == 1
    assert (await peers(js, f"KV_{bus.PUSHES_BUCKET}"))[0] == 1
    spec = bus.ConsumerSpec(bus.DEPLOY_REQUESTS_STREAM, bus.DEPLOY_REQUESTED_SUBJECT, "cluster-test")
    await bus.ensure_consumer(js, spec)

    await bus.ensure_streams(js, replicas=3)  # the first service restarted with CONVEYOR_BUS_REPLICAS=3
    kv = await bus.ensure_pushes_bucket(js, 60.0, replicas=3)
    await bus.ensure_streams(js)  # one not restarted yet must not scale them back down
    await bus.ensure_pushes_bucket(js, 60.0)
    for stream in [*bus.STREAMS, f"KV_{bus.PUSHES_BUCKET}"]:
        assert (await peers(js, stream))[0] == 3, stream
    await kv.put("k", b"v")  # the bucket still works after the change
    assert (await kv.get("k")).value == b"v"

    async def consumer_followed() -> None:  # a consumer without a replica count of its own follows its stream
        info = await js.consumer_info(spec.stream, spec.durable)
        assert info.cluster is not None and len(info.cluster.replicas or []) == 2

    await eventually(consumer_followed)


async def test_publisher_and_pull_loop_ride_through_sigkill_of_the_stream_leader(
    nats_cluster: NatsCluster, cluster_nc: NATS
) -> None:
    js = cluster_nc.jetstream(timeout=1.0)  # short: a request lost with its node is retried sooner
    await bus.ensure_streams(js, replicas=3)
    consumer_nc = await bus.connect(nats_cluster.url, "cluster-test-consumer")
    # A short ack wait: an ack lost with its node comes back soon (handlers are idempotent).
    spec = bus.ConsumerSpec(bus.DEPLOY_REQUESTS_STREAM, bus.DEPLOY_REQUESTED_SUBJECT, "cluster-test", ack_wait=3.0)
    seen: list[str] = []

    async def handle(msg: Msg) -> bus.Outcome:
        seen.append(bus.decode(StringValue, msg.data).value)
        return bus.Outcome.ACK

    stop = asyncio.Event()
    loop = asyncio.create_task(bus.pull_loop(consumer_nc.jetstream(), spec, handle, stop))
    acknowledged: list[str] = []
    acknowledged_at: list[float] = []
    failed_publishes = 0

    async def publish(count: int) -> None:
        """Publish `count` messages, each retried (same dedup id) until JetStream acknowledges it."""
        nonlocal failed_publishes
        for _ in range(count):
            value = f"m{len(acknowledged)}"
            for _attempt in range(100):
                try:
                    await bus.publish(js, bus.DEPLOY_REQUESTED_SUBJECT, StringValue(value=value), value, timeout=1.0)
                    break
                except Exception:  # no responders / timeout while a leader is elected, reconnecting
                    failed_publishes += 1
                    await asyncio.sleep(0.1)
            else:
                raise AssertionError(f"{value} never acknowledged")
            acknowledged.append(value)
            acknowledged_at.append(time.monotonic())

    async def all_seen() -> None:
        assert set(acknowledged) <= set(seen), sorted(set(acknowledged) - set(seen))[:5]

    try:
        await publish(50)
        await eventually(all_seen)
        _, leader, _ = await peers(js, spec.stream)
        killed = nats_cluster.index_of(leader)

        nats_cluster.kill(killed)
        started = time.monotonic()
        during = asyncio.create_task(publish(100))

        async def new_leader() -> str:
            _, now, _ = await peers(js, spec.stream)
            assert now != leader
            return now

        elected = await eventually(new_leader, timeout=30.0, interval=0.1)
        leader_change = time.monotonic() - started
        await asyncio.wait_for(during, 60.0)
        first_publish = acknowledged_at[50] - started
        await eventually(all_seen, timeout=30.0)
        resumed = time.monotonic() - started

        nats_cluster.restart(killed)
        await publish(50)
        await eventually(all_seen, timeout=30.0)

        async def caught_up() -> None:
            assert (await peers(js, spec.stream))[2] == 3  # the restarted node is a current replica again

        await eventually(caught_up, timeout=30.0, interval=0.1)
        assert len(acknowledged) == 200
        assert (await js.stream_info(spec.stream)).state.messages == 200  # each stored once (dedup ids)
        assert not loop.done()
        print(
            f"\nstream leader {leader} SIGKILLed -> {elected} elected (in stream info) after {leader_change:.2f}s, "
            f"first publish acknowledged after {first_publish:.2f}s; "
            f"all acknowledged consumed {resumed:.2f}s after the kill; {failed_publishes} publish attempts retried; "
            f"{len(seen) - len(set(seen))} redeliveries"
        )
    finally:
        stop.set()
        await asyncio.wait_for(loop, 10.0)
        await consumer_nc.close()
