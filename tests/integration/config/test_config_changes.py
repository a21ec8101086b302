"""The change-notice follower on the real nats-server, run as app.py runs it: under bus.consume_forever."""

from __future__ import annotations

import asyncio

from nats.aio.client import Client as NATS

from conveyor import bus
from conveyor.retry import RetryPolicy
from conveyor.v1 import bus_pb2, pipeline_pb2
from conveyor_config.edges.changes import ChangeFollower
from tests.support.net import eventually


async def notice(nc: NATS, name: str) -> None:
    change = bus_pb2.PipelineChanged(change=bus_pb2.PipelineChanged.UPDATED, pipeline=pipeline_pb2.Pipeline(name=name))
    await nc.publish(bus.PIPELINE_CHANGED_SUBJECT, change.SerializeToString())


async def test_a_crashed_follower_is_restarted_and_reports_that_it_may_have_missed_notices(nc: NATS) -> None:
    seen: list[str | None] = []
    health: list[bool] = []

    def on_change(pipeline_id: str | None) -> None:
        if pipeline_id == "boom":
            raise RuntimeError("a cache bug")
        seen.append(pipeline_id)

    follower = ChangeFollower(nc, on_change)
    await follower.subscribe()
    await notice(nc, "pipelines/web")  # subscribed before following: not missed
    stop = asyncio.Event()
    policy = RetryPolicy(initial=0.05, maximum=0.05, jitter=0.0)
    task = asyncio.create_task(
        bus.consume_forever(
            "change-notices", lambda: follower.follow(stop), policy=policy, on_health=health.append, stop=stop
        )
    )

    async def got(expected: list[str | None]) -> None:
        assert seen == expected

    await eventually(lambda: got(["web"]))
    await nc.publish(bus.PIPELINE_CHANGED_SUBJECT, b"\xff not protobuf")  # ignored, not a crash
    await notice(nc, "not-a-pipeline-name")
    await eventually(lambda: got(["web", None]))
    await notice(nc, "pipelines/boom")
    # Restarted: "anything may have changed" (None) first, then notices again.
    await eventually(lambda: got(["web", None, None]))
    assert health == [False, True]
    await notice(nc, "pipelines/api")
    await eventually(lambda: got(["web", None, None, "api"]))

    stop.set()
    await asyncio.wait_for(task, 5)
    await notice(nc, "pipelines/after-stop")
    await nc.flush()
    await asyncio.sleep(0.1)
    assert seen == ["web", None, None, "api"]  # unsubscribed
