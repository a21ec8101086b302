"""RunEvents stored a fetched batch per transaction (issue 14 §3): same results as one by one, on both databases."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import pytest
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from sqlalchemy import Engine, event as sa_event
from sqlalchemy.ext.asyncio import AsyncConnection

from conveyor import bus
from conveyor.aip.page_tokens import PageTokenCodec
from conveyor.names import RunName
from conveyor.v1 import bus_pb2
from conveyor.v1.run_pb2 import Run
from conveyor_config.adapters.storage import SqlStore
from conveyor_config.domain.outcomes import EventOutcome
from conveyor_config.edges.run_events import RunEventConsumer
from conveyor_config.usecases.notifier import RunNotifier
from conveyor_config.usecases.runs import RunUseCases
from tests.integration.config.conftest import StartConfig, connected
from tests.integration.config.support import create_pipeline, publish_event, run_state
from tests.integration.config.test_config_storage import NOW_US, add_pipeline, event, stamp
from tests.support.net import eventually

T0 = 1_700_000_000
RUN_IDS = ("r01jq4ezk5y8v6p1x0m3d2c7b9a", "r01jq4ezk5y8v6p1x0m3d2c7b9b", "r01jq4ezk5y8v6p1x0m3d2c7b9c")


def at(seconds: int, ev: bus_pb2.RunEvent) -> bus_pb2.RunEvent:
    ev.time.FromSeconds(seconds)
    return ev


def deliveries(pipeline: str) -> list[list[bus_pb2.RunEvent]]:
    """Two fetched batches for three runs: out of order, duplicated, and an earlier event redelivered."""
    a, b, c = (f"pipelines/{pipeline}/runs/{run_id}" for run_id in RUN_IDS)
    a_queued = at(T0, event(a, f"{a}:q", Run.QUEUED, "a queued", trigger=Run.PUSH, image="r/a:v2"))
    a_running = at(T0 + 1, event(a, f"{a}:1", Run.RUNNING, "a patching"))
    a_done = at(T0 + 5, event(a, f"{a}:2", Run.SUCCEEDED, "a complete"))
    b_running = at(T0 + 2, event(b, f"{b}:1", Run.RUNNING, "b patching", image="r/b:v2"))
    b_failed = at(T0 + 3, event(b, f"{b}:2", Run.FAILED, "b failed"))
    b_late = at(T0 + 2, event(b, f"{b}:1b", 0, "b waiting"))
    c_queued = at(T0, event(c, f"{c}:q", Run.QUEUED, "c queued", trigger=Run.MANUAL, image="r/c:v2"))
    first = [a_done, b_running, a_running, c_queued, b_failed, a_running]
    second = [b_late, a_queued, b_running, a_done]
    return [first, second]


async def final(store: SqlStore, pipeline: str) -> list[tuple[int, list[str]]]:
    found = []
    for run_id in RUN_IDS:
        name = RunName(pipeline, run_id)
        run = await store.get_run(name)
        assert run is not None
        entries = await store.read_run_logs(name, range(0, 100), limit=100)
        found.append((int(run.state), [entry.message for _, entry in entries]))
    return found


async def test_a_batch_stores_what_one_by_one_stores(store: SqlStore) -> None:
    for pipeline in ("single", "batched"):
        await add_pipeline(store, pipeline)
    for batch in deliveries("single"):
        for ev in batch:
            await store.apply_run_event(
                RunName(*ev.run.removeprefix("pipelines/").split("/runs/")), ev.event_id, ev, stamp(NOW_US)
            )
    outcomes = []
    for batch in deliveries("batched"):
        items = [(RunName(*ev.run.removeprefix("pipelines/").split("/runs/")), ev.event_id, ev) for ev in batch]
        outcomes.append(await store.apply_run_events(items, stamp(NOW_US)))
    stored, duplicate = EventOutcome.STORED, EventOutcome.DUPLICATE
    assert outcomes == [[stored] * 5 + [duplicate], [stored, stored, duplicate, duplicate]]
    expected = [
        (Run.SUCCEEDED, ["a queued", "a patching", "a complete"]),
        (Run.FAILED, ["b patching", "b waiting", "b failed"]),
        (Run.QUEUED, ["c queued"]),
    ]
    assert await final(store, "batched") == expected
    assert await final(store, "single") == expected


class FailingStore(SqlStore):
    """Storage that cannot take one event id (a constraint the checks do not know, say)."""

    bad = ""

    async def _apply(self, conn: AsyncConnection, name: RunName, event_id: str, ev: Any, **kwargs: Any) -> EventOutcome:
        if event_id == self.bad:
            raise RuntimeError("cannot store this one")
        return await super()._apply(conn, name, event_id, ev, **kwargs)


def message(ev: bus_pb2.RunEvent | bytes) -> Msg:
    data = ev if isinstance(ev, bytes) else ev.SerializeToString()
    return Msg(None, subject=bus.RUN_EVENTS_SUBJECT, data=data)  # type: ignore[arg-type]


async def test_one_event_failing_storage_does_not_hold_back_the_batch(store: SqlStore) -> None:
    failing = FailingStore(store.database)
    runs = RunUseCases(failing, RunNotifier(), deploy_subject="d", page_tokens=PageTokenCodec(b"k" * 32))
    consumer = RunEventConsumer(runs)
    await add_pipeline(store, "web")
    batch = deliveries("web")[0]
    failing.bad = batch[1].event_id  # b's RUNNING event
    results = await consumer.handle_batch([message(ev) for ev in batch[:5]] + [message(b"\xff not a RunEvent")])
    assert results[:1] + results[2:5] == [bus.Outcome.ACK] * 4
    assert isinstance(results[1], RuntimeError)
    assert isinstance(results[5], bus.Unprocessable)
    a = await store.get_run(RunName("web", RUN_IDS[0]))
    b = await store.get_run(RunName("web", RUN_IDS[1]))
    assert a is not None and a.state == Run.SUCCEEDED
    assert b is not None and b.state == Run.FAILED  # its FAILED event stored without the RUNNING one
    # Redelivered once storage takes it: stored in its place, the run's state never goes back.
    failing.bad = ""
    assert await consumer.handle_batch([message(batch[1])]) == [bus.Outcome.ACK]
    entries = await store.read_run_logs(RunName("web", RUN_IDS[1]), range(0, 10), limit=10)
    assert [entry.message for _, entry in entries] == ["b patching", "b failed"]
    b = await store.get_run(RunName("web", RUN_IDS[1]))
    assert b is not None and b.state == Run.FAILED


@contextmanager
def counted_commits() -> Iterator[list[int]]:
    commits: list[int] = []

    def on_commit(_conn: Any) -> None:
        commits.append(1)

    sa_event.listen(Engine, "commit", on_commit)
    try:
        yield commits
    finally:
        sa_event.remove(Engine, "commit", on_commit)


@pytest.mark.parametrize("count", [60])
async def test_the_consumer_stores_a_backlog_in_few_transactions(
    start_config: StartConfig, database_url: str, nc: NATS, count: int
) -> None:
    js = nc.jetstream()
    await bus.ensure_streams(js)
    service = await start_config(database_url=database_url)
    async with connected(service.address) as clients:
        await create_pipeline(clients, "web")
    await service.stop()
    names = [f"pipelines/web/runs/r01jq4ezk5y8v6p1x0m3d2c{i:04d}" for i in range(count)]
    published: Sequence[bool] = await asyncio.gather(
        *(publish_event(js, event(name, f"{name}:q", Run.QUEUED, "queued", image="r/a:v1")) for name in names)
    )
    assert all(published)
    with counted_commits() as commits:
        service = await start_config(database_url=database_url)
        async with connected(service.address) as clients:

            async def all_stored() -> None:
                for name in names:
                    assert await run_state(clients, name) == Run.QUEUED

            await eventually(all_stored)
        stored_in = len(commits)
    # A batch of up to 50 per transaction, and a few commits of the service's own (outbox, leases).
    assert stored_in < count // 4
