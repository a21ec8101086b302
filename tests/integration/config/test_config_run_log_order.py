"""A run's log is in the order of its events, not of their arrival (RunEvents through the real consumer).

Config SIGKILLed while it holds an unacknowledged QUEUED event gets it back after the ack wait, by
then behind the run's later events: the log still starts with it and ends with the run's outcome.
"""

from __future__ import annotations

import asyncio

from nats.aio.client import Client as NATS

from conveyor.names import RunName
from conveyor.v1 import bus_pb2, run_service_pb2
from conveyor.v1.run_pb2 import Run
from conveyor_config.adapters.storage import SqlStore
from conveyor_config.usecases.ports import LogPosition
from tests.integration.config.conftest import Clients, StartConfig, connected
from tests.integration.config.support import create_pipeline, publish_event, run_event, run_state
from tests.integration.config.test_config_storage import NOW_US, add_pipeline, add_run, event, stamp
from tests.support.net import eventually

RUN = "pipelines/web/runs/r01jq4ezk5y8v6p1x0m3d2c7b9a"
T0 = 1_700_000_000
IMAGE = "demo.tencentcloudcr.com/team/app:v2"


def at(seconds: float, event: bus_pb2.RunEvent) -> bus_pb2.RunEvent:
    event.time.FromNanoseconds(int(seconds * 1e9))
    return event


def queued(seconds: float) -> bus_pb2.RunEvent:
    return at(seconds, run_event(RUN, "r:queued", Run.QUEUED, "push matched", trigger=Run.PUSH, image=IMAGE))


async def messages(clients: Clients, follow: bool = False) -> list[str]:
    request = run_service_pb2.TailRunLogsRequest(name=RUN, follow=follow)
    return [entry.message async for entry in clients.runs.TailRunLogs(request)]


async def state(clients: Clients) -> int:
    return await run_state(clients, RUN)


async def has_state(clients: Clients, expected: int) -> None:
    assert await state(clients) == expected


async def test_events_published_out_of_order_are_logged_in_event_order(
    start_config: StartConfig, database_url: str, nc: NATS
) -> None:
    service = await start_config(database_url=database_url)
    js = nc.jetstream()
    async with connected(service.address) as clients:
        await create_pipeline(clients, "web")
        # The deployer's events, the second one published first, then its outcome ...
        await publish_event(js, at(T0 + 2, run_event(RUN, "r:deployer:1:1", 0, "waiting for rollout")))
        await publish_event(js, at(T0 + 1, run_event(RUN, "r:deployer:1:0", Run.RUNNING, "patching", image=IMAGE)))
        await publish_event(js, at(T0 + 9, run_event(RUN, "r:deployer:1:2", Run.SUCCEEDED, "rollout complete")))
        # ... then the redelivered QUEUED event, and a step from a replica whose clock runs ahead.
        await publish_event(js, queued(T0))
        await publish_event(js, at(T0 + 30, run_event(RUN, "r:deployer:2:0", 0, "already rolled out")))

        async def logged() -> list[str]:
            assert await state(clients) == Run.SUCCEEDED
            found = await messages(clients)
            assert len(found) == 5
            return found

        expected = ["push matched", "patching", "waiting for rollout", "already rolled out", "rollout complete"]
        assert await eventually(logged) == expected
        assert await messages(clients, follow=True) == expected


async def test_a_queued_event_stamped_after_the_outcome_still_comes_first(clients: Clients, nc: NATS) -> None:
    """Clocks of the trigger and the deployer differ: the run's states order its log before time does."""
    await create_pipeline(clients, "web")
    js = nc.jetstream()
    await publish_event(js, at(T0 + 5, run_event(RUN, "r:deployer:1:0", Run.FAILED, "rollout failed", image=IMAGE)))
    await publish_event(js, queued(T0 + 8))

    async def logged() -> list[str]:
        assert await state(clients) == Run.FAILED
        found = await messages(clients)
        assert len(found) == 2
        return found

    assert await eventually(logged) == ["push matched", "rollout failed"]


async def test_a_follower_gets_late_entries_as_they_arrive(clients: Clients, nc: NATS) -> None:
    await create_pipeline(clients, "web")
    js = nc.jetstream()
    await publish_event(js, at(T0 + 1, run_event(RUN, "r:deployer:1:0", Run.RUNNING, "patching", image=IMAGE)))
    await eventually(lambda: has_state(clients, Run.RUNNING))
    received: list[str] = []

    async def follow() -> None:
        async for entry in clients.runs.TailRunLogs(run_service_pb2.TailRunLogsRequest(name=RUN, follow=True)):
            received.append(entry.message)

    follower = asyncio.create_task(follow())

    async def got(expected: list[str]) -> None:
        assert received == expected

    await eventually(lambda: got(["patching"]))
    await publish_event(js, queued(T0))
    # Already past its place in the log: sent when it arrives, never skipped.
    await eventually(lambda: got(["patching", "push matched"]))
    assert not follower.done()
    await publish_event(js, at(T0 + 9, run_event(RUN, "r:deployer:1:1", Run.SUCCEEDED, "rollout complete")))
    await asyncio.wait_for(follower, 10)
    assert received == ["patching", "push matched", "rollout complete"]
    assert await messages(clients) == ["push matched", "patching", "rollout complete"]


async def test_the_store_pages_through_a_log_in_log_order(store: SqlStore) -> None:
    pipeline = await add_pipeline(store, "web")
    run = await add_run(store, pipeline, "r1", entries=1)  # StartPipeline's entry: phase QUEUED
    name = RunName("web", "r1")
    for event_id, state, offset, texts in (
        ("done", Run.SUCCEEDED, 9, ["rollout complete"]),
        ("b", 0, 5, ["b1", "b2"]),
        ("a", Run.RUNNING, 1, ["a1", "a2", "a3"]),
        ("c", 0, 5, ["c1"]),  # the same time as "b": arrival decides
    ):
        late = event(run.name, event_id, state, *texts, time=stamp(NOW_US + offset))
        await store.apply_run_event(name, event_id, late, stamp(NOW_US + 100))
    whole = await store.read_run_logs(name, range(9), limit=100)
    expected = ["m0", "a1", "a2", "a3", "b1", "b2", "c1", "rollout complete"]
    assert [entry.message for _, entry in whole] == expected
    assert whole[1][0] == LogPosition(1, NOW_US + 1, 4)
    paged: list[str] = []
    after: LogPosition | None = None
    while batch := await store.read_run_logs(name, range(9), after, limit=3):
        paged += [entry.message for _, entry in batch]
        after = batch[-1][0]
    assert paged == expected
    # Only what arrived in a range of sequences (a follower's next read), still in log order.
    arrived = await store.read_run_logs(name, range(1, 6), limit=100)  # done, b1, b2, a1, a2
    assert [entry.message for _, entry in arrived] == ["a1", "a2", "b1", "b2", "rollout complete"]
