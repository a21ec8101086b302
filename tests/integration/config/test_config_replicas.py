"""Several config replicas on one database (SQLite file and the real PostgreSQL) and the real nats-server:
the outbox publishes each row once, and TailRunLogs followers in any replica wake on run-log notices."""

from __future__ import annotations

import asyncio
from collections import Counter

from nats.aio.client import Client as NATS

from conveyor import bus
from conveyor.subjects import RUN_LOGGED_SUBJECT
from conveyor.v1 import bus_pb2, pipeline_service_pb2, run_service_pb2
from conveyor.v1.run_pb2 import Run
from conveyor_config.adapters.jetstream import JetStreamPublisher
from conveyor_config.adapters.storage import SqlStore
from conveyor_config.adapters.storage.engine import open_database
from conveyor_config.domain import pipelines
from conveyor_config.edges.run_logs import RunLogFollower
from conveyor_config.usecases.notifier import RunNotifier
from conveyor_config.usecases.outbox import OutboxRelay
from conveyor_config.usecases.ports import NewOutboxMessage
from tests.integration.config.conftest import StartConfig, connected
from tests.integration.config.support import create_pipeline, deploy_requests, run_event
from tests.unit.config.samples import sample_pipeline

STARTS = 60


class CountingPublisher(JetStreamPublisher):
    """Counts every publish this relay attempts, per message id, in a counter the relays share."""

    def __init__(self, nc: NATS, attempts: Counter[str], mine: list[str]) -> None:
        super().__init__(nc, nc.jetstream())
        self.attempts = attempts
        self.mine = mine

    async def publish(self, subject: str, payload: bytes, msg_id: str) -> None:
        self.attempts[msg_id] += 1
        self.mine.append(msg_id)
        await super().publish(subject, payload, msg_id)


async def test_two_relays_publish_each_outbox_row_exactly_once(database_url: str, nc: NATS) -> None:
    js = nc.jetstream()
    await bus.ensure_streams(js)
    one, two = open_database(database_url), open_database(database_url)  # two replicas: engines of their own
    try:
        store = SqlStore(one)
        pipeline = pipelines.check_pipeline(sample_pipeline())
        pipeline.name, pipeline.etag = "pipelines/web", "e1"
        await store.insert_pipeline(pipeline, None)
        names = [f"pipelines/web/runs/r{i}" for i in range(STARTS)]
        for name in names:
            run = Run(name=name, state=Run.QUEUED, create_time=pipeline.create_time)
            deploy = bus_pb2.DeployRequested(run=name, pipeline=pipeline, image="x/y:v1")
            message = NewOutboxMessage(name, bus.DEPLOY_REQUESTED_SUBJECT, deploy.SerializeToString())
            await store.start_run(run, [], message, expected_etag="e1", request=None)

        attempts: Counter[str] = Counter()
        by_first: list[str] = []
        by_second: list[str] = []
        # Small batches, flushed at the same time, so the relays claim again and again side by side.
        first = OutboxRelay(SqlStore(one), CountingPublisher(nc, attempts, by_first), batch=4)
        second = OutboxRelay(SqlStore(two), CountingPublisher(nc, attempts, by_second), batch=4)
        published = await asyncio.gather(first.flush(), second.flush())

        assert sum(published) == STARTS
        assert attempts == Counter(dict.fromkeys(names, 1))  # no row was sent twice: no dedupe needed
        assert sorted(by_first + by_second) == sorted(names)
        assert await store.outbox_pending() == 0
        stored = await deploy_requests(js)
        assert sorted(msg_id for msg_id, _ in stored) == sorted(names)
    finally:
        await one.dispose()
        await two.dispose()


async def test_a_follower_on_one_replica_wakes_on_entries_stored_by_another(
    start_config: StartConfig, database_url: str
) -> None:
    # The fallback poll is far beyond the wait below: only the run-log notice can deliver the entry in time.
    env = {"CONVEYOR_CONFIG_TAIL_POLL_INTERVAL": "60s"}
    storing = await start_config(database_url=database_url, env=env)
    following = await start_config(database_url=database_url, env=env)
    async with connected(storing.address) as a, connected(following.address) as b:
        await create_pipeline(a, "web")
        run = await a.pipelines.StartPipeline(
            pipeline_service_pb2.StartPipelineRequest(name="pipelines/web", tag="v1.0.0")
        )
        call = b.runs.TailRunLogs(run_service_pb2.TailRunLogsRequest(name=run.name, follow=True))
        try:
            first = await asyncio.wait_for(call.read(), 5)
            assert first.message.startswith("Started by hand")
            # Stored by the first replica's use case, as its RunEvent consumer would: the second never sees it.
            assert storing.consumer is not None
            event = run_event(run.name, "e1", Run.RUNNING, "stored by the other replica")
            await storing.consumer.runs.record_event(event, "e1")
            entry = await asyncio.wait_for(call.read(), 5)
            assert entry.message == "stored by the other replica"
        finally:
            call.cancel()


async def test_the_run_log_follower_wakes_followers_of_the_named_run_only(nc: NATS) -> None:
    notifier = RunNotifier()
    follower = RunLogFollower(nc, notifier)
    await follower.subscribe()
    await nc.flush()  # the server has the subscription before anything is published
    stop = asyncio.Event()
    task = asyncio.create_task(follower.follow(stop))
    try:
        with notifier.watch("pipelines/web/runs/r1") as watched, notifier.watch("pipelines/web/runs/r2") as other:
            await nc.publish(RUN_LOGGED_SUBJECT, b"\xff not a name")  # ignored, not a crash
            await nc.publish(RUN_LOGGED_SUBJECT, b"pipelines/web")
            await nc.publish(RUN_LOGGED_SUBJECT, b"pipelines/web/runs/r1")
            await asyncio.wait_for(watched.event.wait(), 5)
            assert not other.event.is_set()
            assert not task.done()
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)
