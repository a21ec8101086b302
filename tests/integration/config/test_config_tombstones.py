"""A deleted run stays deleted: its RunEvents redelivered later (JetStream keeps them for days) are dropped.

Tombstones (run name, deletion time) outlive the run, and its pipeline, for the RunEvents stream's
retention; then they are purged. On SQLite and PostgreSQL.
"""

from __future__ import annotations

import grpc
from nats.aio.client import Client as NATS
from prometheus_client import REGISTRY

from conveyor.names import RunName
from conveyor.v1 import pipeline_service_pb2, run_service_pb2
from conveyor.v1.run_pb2 import Run
from conveyor_config.adapters.storage import SqlStore
from conveyor_config.domain.outcomes import DeleteOutcome, EventOutcome
from tests.integration.config.conftest import StartConfig, connected
from tests.integration.config.support import (
    create_pipeline,
    publish_event,
    rpc_error,
    run_event,
    run_state,
    settled,
)
from tests.integration.config.test_config_storage import NOW_US, add_pipeline, add_run, event, stamp
from tests.support.net import eventually

WHOLE_LOG = range(0, 1000)


async def finished(store: SqlStore, name: RunName, event_id: str = "done") -> None:
    done = event(f"pipelines/{name.pipeline}/runs/{name.run}", event_id, Run.SUCCEEDED, "rollout complete")
    assert await store.apply_run_event(name, event_id, done, stamp(NOW_US)) is EventOutcome.STORED


async def test_events_of_a_deleted_run_never_recreate_it(store: SqlStore) -> None:
    pipeline = await add_pipeline(store, "web")
    run = await add_run(store, pipeline, "r1")
    name = RunName("web", "r1")
    await finished(store, name)
    assert await store.delete_run(name, stamp(NOW_US + 1)) is DeleteOutcome.DELETED
    # Its applied event ids went with it: the same event again, and ones config never saw.
    for event_id, state in (("done", Run.SUCCEEDED), ("q", Run.QUEUED), ("late", Run.RUNNING), ("log", 0)):
        late = event(run.name, event_id, state, "late", trigger=Run.PUSH, image="r/a:v1")
        assert await store.apply_run_event(name, event_id, late, stamp(NOW_US + 2)) is EventOutcome.DELETED
    assert await store.get_run(name) is None
    assert await store.read_run_logs(name, WHOLE_LOG, limit=100) == []
    assert await store.delete_run(name, stamp(NOW_US + 3)) is DeleteOutcome.NOT_FOUND
    # Other runs of the pipeline are not affected.
    other = RunName("web", "r2")
    assert await store.apply_run_event(other, "r2-q", event("pipelines/web/runs/r2", "r2-q", Run.QUEUED), stamp(NOW_US))
    assert await store.get_run(other) is not None


async def test_runs_of_a_deleted_pipeline_stay_deleted_when_it_is_created_again(store: SqlStore) -> None:
    pipeline = await add_pipeline(store, "web")
    for run_id in ("r1", "r2"):
        await add_run(store, pipeline, run_id)
        await finished(store, RunName("web", run_id), f"{run_id}-done")
    assert await store.delete_pipeline("web", pipeline.etag, stamp(NOW_US + 1)) == (DeleteOutcome.DELETED, [])
    # Gone with the pipeline:
    gone = RunName("web", "r1")
    assert await store.apply_run_event(gone, "x", event(str(gone), "x", Run.RUNNING), stamp(NOW_US)) is (
        EventOutcome.NO_PIPELINE
    )
    await add_pipeline(store, "web")  # the same id again
    for run_id in ("r1", "r2"):
        name = RunName("web", run_id)
        late = event(f"pipelines/web/runs/{run_id}", f"{run_id}-done", Run.SUCCEEDED, "redelivered")
        assert await store.apply_run_event(name, f"{run_id}-done", late, stamp(NOW_US + 2)) is EventOutcome.DELETED
        assert await store.get_run(name) is None
    fresh = RunName("web", "r3")
    assert await store.apply_run_event(fresh, "r3-q", event(str(fresh), "r3-q", Run.QUEUED), stamp(NOW_US + 2)) is (
        EventOutcome.STORED
    )


async def test_tombstones_are_purged_after_the_retention(store: SqlStore) -> None:
    pipeline = await add_pipeline(store, "web")
    for run_id, deleted_us in (("old", NOW_US - 10), ("recent", NOW_US + 10)):
        await add_run(store, pipeline, run_id)
        await finished(store, RunName("web", run_id), f"{run_id}-done")
        assert await store.delete_run(RunName("web", run_id), stamp(deleted_us)) is DeleteOutcome.DELETED
    assert await store.purge_tombstones(NOW_US) == 1
    assert await store.purge_tombstones(NOW_US) == 0
    # The stream no longer holds events that old: forgetting it is safe, and bounds the table.
    old, recent = RunName("web", "old"), RunName("web", "recent")
    assert await store.apply_run_event(old, "o", event(str(old), "o", Run.QUEUED), stamp(NOW_US)) is (
        EventOutcome.STORED
    )
    assert await store.apply_run_event(recent, "r", event(str(recent), "r", Run.QUEUED), stamp(NOW_US)) is (
        EventOutcome.DELETED
    )


def deleted_events() -> float:
    return REGISTRY.get_sample_value("conveyor_config_run_events_total", {"outcome": "deleted"}) or 0.0


async def test_a_redelivered_event_after_delete_run_is_dropped(
    start_config: StartConfig, database_url: str, nc: NATS
) -> None:
    service = await start_config(database_url=database_url)
    js = nc.jetstream()
    run = "pipelines/web/runs/r01jq4ezk5y8v6p1x0m3d2c7b9a"
    queued = run_event(run, "r:queued", Run.QUEUED, "push matched", trigger=Run.PUSH, image="x/app:v1")
    done = run_event(run, "r:deployer:1:0", Run.SUCCEEDED, "rollout complete")
    async with connected(service.address) as clients:
        await create_pipeline(clients, "web")
        await publish_event(js, queued)
        await publish_event(js, done)

        async def succeeded() -> None:
            assert await run_state(clients, run) == Run.SUCCEEDED

        await eventually(succeeded)
        await clients.runs.DeleteRun(run_service_pb2.DeleteRunRequest(name=run))
        before = deleted_events()
        # JetStream redelivers both (unacknowledged when a config replica died), under other message ids.
        await publish_event(js, queued, msg_id="r:queued#again")
        await publish_event(js, done, msg_id="r:deployer:1:0#again")
        await eventually(lambda: settled(js))
        assert deleted_events() - before == 2
        await rpc_error(clients.runs.GetRun(run_service_pb2.GetRunRequest(name=run)), grpc.StatusCode.NOT_FOUND)

        # The same once the pipeline is gone and was created again.
        other = "pipelines/web/runs/r01jq4ezk5y8v6p1x0m3d2c7b9b"
        await publish_event(js, run_event(other, "o:deployer:1:0", Run.FAILED, "rollout failed", image="x/app:v1"))
        await eventually(lambda: settled(js))
        await clients.pipelines.DeletePipeline(pipeline_service_pb2.DeletePipelineRequest(name="pipelines/web"))
        await create_pipeline(clients, "web")
        await publish_event(js, run_event(other, "o:deployer:1:0", Run.FAILED, "again"), msg_id="o#again")
        await eventually(lambda: settled(js))
        assert deleted_events() - before == 3
        await rpc_error(clients.runs.GetRun(run_service_pb2.GetRunRequest(name=other)), grpc.StatusCode.NOT_FOUND)
