"""SqlStore against SQLite and the real PostgreSQL: the same tests on both."""

from __future__ import annotations

import asyncio

from google.protobuf import timestamp_pb2

from conveyor.names import RunName
from conveyor.v1 import bus_pb2
from conveyor.v1.pipeline_pb2 import Pipeline
from conveyor.v1.run_pb2 import Run, RunLogEntry as Entry
from conveyor_config.adapters.storage import SqlStore
from conveyor_config.adapters.storage.engine import open_database
from conveyor_config.adapters.storage.schema import metadata
from conveyor_config.domain import pipelines
from conveyor_config.domain.outcomes import CreateOutcome, DeleteOutcome, EventOutcome, StartOutcome
from conveyor_config.domain.queries import PipelineFilter
from conveyor_config.usecases.ports import NewOutboxMessage, RequestRecord
from tests.unit.config.samples import CHINESE_DESCRIPTION, sample_pipeline

NOW_US = 1_700_000_000_000_000


def stamp(micros: int) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromMicroseconds(micros)
    return ts


def new_pipeline(pipeline_id: str, **overrides: object) -> Pipeline:
    pipeline = pipelines.check_pipeline(sample_pipeline(**overrides))
    pipeline.name = f"pipelines/{pipeline_id}"
    pipeline.create_time.CopyFrom(stamp(NOW_US))
    pipeline.update_time.CopyFrom(stamp(NOW_US))
    pipeline.etag = pipelines.new_etag()
    return pipeline


async def add_pipeline(store: SqlStore, pipeline_id: str, **overrides: object) -> Pipeline:
    pipeline = new_pipeline(pipeline_id, **overrides)
    assert await store.insert_pipeline(pipeline, None) == (CreateOutcome.CREATED, None)
    return pipeline


async def add_run(store: SqlStore, pipeline: Pipeline, run_id: str, created_us: int = NOW_US, entries: int = 1) -> Run:
    run = Run(name=f"{pipeline.name}/runs/{run_id}", trigger=Run.MANUAL, image="r/a:v1", tag="v1", state=Run.QUEUED)
    run.create_time.CopyFrom(stamp(created_us))
    logs = [Entry(time=stamp(created_us), level=Entry.INFO, step="queue", message=f"m{i}") for i in range(entries)]
    message = NewOutboxMessage(run.name, "conveyor.deploy.requested", b"payload-" + run_id.encode())
    outcome, _ = await store.start_run(run, logs, message, expected_etag=pipeline.etag, request=None)
    assert outcome is StartOutcome.STARTED
    return run


def event(run: str, event_id: str, state: int = 0, *messages: str, **fields: object) -> bus_pb2.RunEvent:
    return bus_pb2.RunEvent(
        run=run,
        event_id=event_id,
        state=state,  # type: ignore[arg-type]
        log_entries=[Entry(level=Entry.INFO, step="deploy", message=m) for m in messages],
        **fields,  # type: ignore[arg-type]
    )


# --------------------------------------------------------------------------- pipelines


async def test_pipeline_round_trip_keeps_unicode_exactly(store: SqlStore) -> None:
    created = await add_pipeline(store, "web", display_name="前端 🚀", description=CHINESE_DESCRIPTION)
    loaded = await store.get_pipeline("web")
    assert loaded == created
    assert loaded is not None and loaded.description.encode() == CHINESE_DESCRIPTION.encode()
    assert await store.get_pipeline("missing") is None


async def test_duplicate_pipeline_id_is_reported(store: SqlStore) -> None:
    await add_pipeline(store, "web")
    assert await store.insert_pipeline(new_pipeline("web"), None) == (CreateOutcome.ALREADY_EXISTS, None)


async def test_request_id_replays_the_first_response(store: SqlStore) -> None:
    first = new_pipeline("a")
    request = RequestRecord("CreatePipeline", "req-1", first.SerializeToString(), NOW_US)
    assert await store.insert_pipeline(first, request) == (CreateOutcome.CREATED, None)
    retry = new_pipeline("b")
    outcome, response = await store.insert_pipeline(
        retry, RequestRecord("CreatePipeline", "req-1", retry.SerializeToString(), NOW_US)
    )
    assert outcome is CreateOutcome.REPLAYED and response == first.SerializeToString()
    assert await store.get_pipeline("b") is None  # the retry created nothing
    assert await store.find_request("CreatePipeline", "req-1") == first.SerializeToString()
    assert await store.find_request("StartPipeline", "req-1") is None


async def test_concurrent_creates_with_one_request_id_create_one_pipeline(store: SqlStore) -> None:
    async def create(pipeline_id: str) -> tuple[CreateOutcome, bytes | None]:
        pipeline = new_pipeline(pipeline_id)
        record = RequestRecord("CreatePipeline", "same", pipeline.SerializeToString(), NOW_US)
        return await store.insert_pipeline(pipeline, record)

    results = await asyncio.gather(*(create(f"p{i}") for i in range(6)))
    assert sorted(outcome.value for outcome, _ in results) == ["created"] + ["replayed"] * 5
    assert await store.count_pipelines(PipelineFilter()) == 1


async def test_list_filters_and_keyset_pages(store: SqlStore) -> None:
    await add_pipeline(store, "a1")
    staging = sample_pipeline().target
    staging.cluster = "staging"
    await add_pipeline(store, "a2", target=staging)
    await add_pipeline(store, "b1", disabled=True)
    other = sample_pipeline().source
    other.registry = "other.example.com"
    await add_pipeline(store, "c1", source=other)

    everything = await store.list_pipelines(PipelineFilter(), None, 10)
    assert [p.name for p in everything] == ["pipelines/a1", "pipelines/a2", "pipelines/b1", "pipelines/c1"]
    assert [p.name for p in await store.list_pipelines(PipelineFilter(), "a2", 10)] == [
        "pipelines/b1",
        "pipelines/c1",
    ]
    assert [p.name for p in await store.list_pipelines(PipelineFilter(), None, 2)] == ["pipelines/a1", "pipelines/a2"]

    prod = PipelineFilter(registry="demo.tencentcloudcr.com", cluster="prod")
    assert [p.name for p in await store.list_pipelines(prod, None, 10)] == ["pipelines/a1", "pipelines/b1"]
    assert await store.count_pipelines(prod) == 2
    enabled_prod = PipelineFilter(cluster="prod", disabled=False)
    assert [p.name for p in await store.list_pipelines(enabled_prod, None, 10)] == ["pipelines/a1", "pipelines/c1"]
    assert await store.count_pipelines(PipelineFilter(workload="frontend", namespace="web")) == 4
    assert await store.count_pipelines(PipelineFilter(repository="nope")) == 0


async def test_replace_is_compare_and_set_on_the_etag(store: SqlStore) -> None:
    original = await add_pipeline(store, "web")
    changed = Pipeline()
    changed.CopyFrom(original)
    changed.display_name = "v2"
    changed.etag = "new-etag"
    changed.update_time.CopyFrom(stamp(NOW_US + 5))
    assert await store.replace_pipeline(changed, "stale") is False
    assert await store.replace_pipeline(changed, original.etag) is True
    loaded = await store.get_pipeline("web")
    assert loaded is not None
    assert (loaded.display_name, loaded.etag) == ("v2", "new-etag")
    assert loaded.create_time == original.create_time
    assert loaded.update_time.ToMicroseconds() == NOW_US + 5
    assert await store.replace_pipeline(changed, original.etag) is False  # that etag is gone now


async def test_delete_pipeline_outcomes_and_cascade(store: SqlStore) -> None:
    pipeline = await add_pipeline(store, "web")
    assert await store.delete_pipeline("missing", "", stamp(NOW_US)) == (DeleteOutcome.NOT_FOUND, [])
    assert await store.delete_pipeline("web", "stale", stamp(NOW_US)) == (DeleteOutcome.STALE_ETAG, [])

    run = await add_run(store, pipeline, "r1")
    outcome, active = await store.delete_pipeline("web", pipeline.etag, stamp(NOW_US))
    assert outcome is DeleteOutcome.ACTIVE_RUNS and active == [run.name]

    name = RunName("web", "r1")
    assert await store.apply_run_event(name, "e1", event(run.name, "e1", Run.SUCCEEDED, "done"), stamp(NOW_US)) == (
        EventOutcome.STORED
    )
    assert await store.delete_pipeline("web", pipeline.etag, stamp(NOW_US)) == (DeleteOutcome.DELETED, [])
    assert await store.get_run(name) is None
    assert await store.read_run_logs(name, range(100), limit=100) == []
    # Its event ids went too: a new pipeline with the same id starts from a clean slate.
    fresh = await add_pipeline(store, "web")
    await add_run(store, fresh, "r1", entries=0)
    assert await store.apply_run_event(name, "e1", event(run.name, "e1", Run.RUNNING), stamp(NOW_US)) == (
        EventOutcome.STORED
    )


# --------------------------------------------------------------------------- runs


async def test_start_run_stores_run_logs_and_outbox_row(store: SqlStore) -> None:
    pipeline = await add_pipeline(store, "web")
    run = await add_run(store, pipeline, "r1", entries=2)
    assert await store.get_run(RunName("web", "r1")) == run
    assert [e.message for _, e in await store.read_run_logs(RunName("web", "r1"), range(10), limit=10)] == ["m0", "m1"]
    [message] = await store.due_outbox(NOW_US, 10)
    assert (message.msg_id, message.payload, message.attempts) == (run.name, b"payload-r1", 0)
    assert await store.outbox_pending() == 1


async def test_start_run_checks_the_pipeline_inside_the_transaction(store: SqlStore) -> None:
    pipeline = await add_pipeline(store, "web")
    disabled = await add_pipeline(store, "off", disabled=True)
    run = Run(name="pipelines/web/runs/r1", state=Run.QUEUED, create_time=stamp(NOW_US))
    message = NewOutboxMessage(run.name, "s", b"x")
    start = store.start_run
    assert (await start(run, [], message, expected_etag="old", request=None))[0] is StartOutcome.CHANGED
    gone = Run(name="pipelines/nope/runs/r1", state=Run.QUEUED, create_time=stamp(NOW_US))
    assert (await start(gone, [], message, expected_etag="x", request=None))[0] is StartOutcome.NOT_FOUND
    off = Run(name="pipelines/off/runs/r1", state=Run.QUEUED, create_time=stamp(NOW_US))
    assert (await start(off, [], message, expected_etag=disabled.etag, request=None))[0] is StartOutcome.DISABLED
    assert await store.due_outbox(NOW_US, 10) == []  # nothing was written by the refused starts

    request = RequestRecord("StartPipeline", "k", run.SerializeToString(), NOW_US)
    assert await start(run, [], message, expected_etag=pipeline.etag, request=request) == (StartOutcome.STARTED, None)
    again = Run(name="pipelines/web/runs/r2", state=Run.QUEUED, create_time=stamp(NOW_US))
    replay = RequestRecord("StartPipeline", "k", again.SerializeToString(), NOW_US)
    outcome, response = await start(
        again, [], NewOutboxMessage(again.name, "s", b"y"), expected_etag=pipeline.etag, request=replay
    )
    assert outcome is StartOutcome.REPLAYED and Run.FromString(response or b"") == run
    assert await store.get_run(RunName("web", "r2")) is None
    assert len(await store.due_outbox(NOW_US, 10)) == 1


async def test_outbox_retry_bookkeeping(store: SqlStore) -> None:
    pipeline = await add_pipeline(store, "web")
    await add_run(store, pipeline, "r1")
    await add_run(store, pipeline, "r2")
    first, second = await store.due_outbox(NOW_US, 10)
    await store.outbox_failed(first.id, "nats: timeout", NOW_US + 1_000_000)
    assert [m.msg_id for m in await store.due_outbox(NOW_US, 10)] == [second.msg_id]
    [retried] = [m for m in await store.due_outbox(NOW_US + 1_000_000, 10) if m.id == first.id]
    assert retried.attempts == 1
    await store.outbox_delivered([first.id, second.id])
    assert await store.outbox_pending() == 0


async def test_list_runs_newest_first_with_keyset_pages(store: SqlStore) -> None:
    web = await add_pipeline(store, "web")
    api = await add_pipeline(store, "api")
    await add_run(store, web, "r1", NOW_US + 1)
    await add_run(store, api, "r2", NOW_US + 2)
    await add_run(store, web, "r3", NOW_US + 3)
    # Two runs created in the same microsecond still have a total order (pipeline, run id).
    await add_run(store, web, "r4", NOW_US + 3)
    await add_run(store, api, "r5", NOW_US + 3)

    def names(runs: list[Run]) -> list[str]:
        return [r.name.split("/runs/")[1] for r in runs]

    everything = await store.list_runs(None, frozenset(), None, 10)
    assert names(everything) == ["r4", "r3", "r5", "r2", "r1"]
    cursor = (NOW_US + 3, "web", "r3")
    assert names(await store.list_runs(None, frozenset(), cursor, 10)) == ["r5", "r2", "r1"]
    assert names(await store.list_runs("web", frozenset(), None, 10)) == ["r4", "r3", "r1"]
    assert names(await store.list_runs("web", frozenset(), (NOW_US + 3, "web", "r4"), 10)) == ["r3", "r1"]

    await store.apply_run_event(
        RunName("web", "r3"), "f", event("pipelines/web/runs/r3", "f", Run.FAILED), stamp(NOW_US)
    )
    await store.apply_run_event(
        RunName("api", "r2"), "g", event("pipelines/api/runs/r2", "g", Run.RUNNING), stamp(NOW_US)
    )
    assert names(await store.list_runs(None, frozenset({Run.FAILED}), None, 10)) == ["r3"]
    assert names(await store.list_runs(None, frozenset({Run.FAILED, Run.RUNNING}), None, 10)) == ["r3", "r2"]
    assert await store.pipeline_exists("web") and not await store.pipeline_exists("nope")


async def test_delete_run_only_when_finished(store: SqlStore) -> None:
    pipeline = await add_pipeline(store, "web")
    run = await add_run(store, pipeline, "r1")
    name = RunName("web", "r1")
    assert await store.delete_run(RunName("web", "zz"), stamp(NOW_US)) is DeleteOutcome.NOT_FOUND
    assert await store.delete_run(name, stamp(NOW_US)) is DeleteOutcome.NOT_TERMINAL
    await store.apply_run_event(name, "c", event(run.name, "c", Run.CANCELLED), stamp(NOW_US))
    assert await store.delete_run(name, stamp(NOW_US)) is DeleteOutcome.DELETED
    assert await store.get_run(name) is None and await store.read_run_logs(name, range(10), limit=10) == []


# --------------------------------------------------------------------------- run events


async def test_event_creates_a_run_it_has_not_seen(store: SqlStore) -> None:
    await add_pipeline(store, "web")
    name = RunName("web", "push1")
    running = event(
        str(name),
        "push1:deployer:1:0",
        Run.RUNNING,
        "patching",
        trigger=Run.PUSH,
        image="demo/team/app:v2",
        tag="v2",
        digest="sha256:" + "a" * 64,
        source_event_id="registry-evt-9",
        time=stamp(NOW_US + 10),
    )
    assert await store.apply_run_event(name, running.event_id, running, stamp(NOW_US + 99)) is EventOutcome.STORED
    run = await store.get_run(name)
    assert run is not None
    assert (run.state, run.trigger, run.image, run.tag, run.event_id) == (
        Run.RUNNING,
        Run.PUSH,
        "demo/team/app:v2",
        "v2",
        "registry-evt-9",
    )
    assert run.create_time.ToMicroseconds() == NOW_US + 10
    assert run.start_time.ToMicroseconds() == NOW_US + 10
    [(position, entry)] = await store.read_run_logs(name, range(10), limit=10)
    assert (position.seq, entry.message, entry.time.ToMicroseconds()) == (0, "patching", NOW_US + 10)


async def test_event_for_a_missing_pipeline_is_dropped(store: SqlStore) -> None:
    name = RunName("ghost", "r1")
    assert await store.apply_run_event(name, "e", event(str(name), "e", Run.RUNNING), stamp(NOW_US)) is (
        EventOutcome.NO_PIPELINE
    )
    assert await store.get_run(name) is None


async def test_duplicate_events_and_state_order(store: SqlStore) -> None:
    pipeline = await add_pipeline(store, "web")
    run = await add_run(store, pipeline, "r1", entries=1)
    name = RunName("web", "r1")
    apply = store.apply_run_event
    assert await apply(name, "e1", event(run.name, "e1", Run.RUNNING, "a"), stamp(NOW_US + 1)) is EventOutcome.STORED
    assert await apply(name, "e1", event(run.name, "e1", Run.RUNNING, "a"), stamp(NOW_US + 2)) is (
        EventOutcome.DUPLICATE
    )
    done = event(run.name, "e2", Run.SUCCEEDED, "b", previous_image="r/a:v0", time=stamp(NOW_US + 3))
    assert await apply(name, "e2", done, stamp(NOW_US + 3)) is EventOutcome.STORED
    late = event(run.name, "e0", Run.RUNNING, "late", error="boom", time=stamp(NOW_US + 4))
    assert await apply(name, "e0", late, stamp(NOW_US + 4)) is EventOutcome.STORED
    stored = await store.get_run(name)
    assert stored is not None
    assert (stored.state, stored.previous_image, stored.error) == (Run.SUCCEEDED, "r/a:v0", "")
    assert stored.end_time.ToMicroseconds() == NOW_US + 3
    logs = await store.read_run_logs(name, range(100), limit=100)
    # In log order: the event that ended the run last, although "late" arrived after it.
    assert [(position.seq, e.message) for position, e in logs] == [(0, "m0"), (1, "a"), (3, "late"), (2, "b")]
    assert [e.message for _, e in await store.read_run_logs(name, range(2, 100), limit=100)] == ["late", "b"]
    assert [e.message for _, e in await store.read_run_logs(name, range(2, 3), limit=100)] == ["b"]
    progress = await store.run_progress(name)
    assert progress is not None and (progress.state, progress.log_count) == (Run.SUCCEEDED, 4)


async def test_concurrent_deliveries_of_one_event_store_it_once(store: SqlStore) -> None:
    pipeline = await add_pipeline(store, "web")
    run = await add_run(store, pipeline, "r1", entries=0)
    name = RunName("web", "r1")
    same = event(run.name, "dup", Run.RUNNING, "only once")
    outcomes = await asyncio.gather(*(store.apply_run_event(name, "dup", same, stamp(NOW_US)) for _ in range(8)))
    assert sorted(o.value for o in outcomes) == ["duplicate"] * 7 + ["stored"]
    assert [e.message for _, e in await store.read_run_logs(name, range(10), limit=10)] == ["only once"]


async def test_concurrent_events_get_gapless_log_sequences(store: SqlStore) -> None:
    pipeline = await add_pipeline(store, "web")
    run = await add_run(store, pipeline, "r1", entries=0)
    name = RunName("web", "r1")
    await asyncio.gather(
        *(
            store.apply_run_event(name, f"e{i}", event(run.name, f"e{i}", 0, f"x{i}", f"y{i}"), stamp(NOW_US))
            for i in range(10)
        )
    )
    logs = await store.read_run_logs(name, range(100), limit=100)
    assert [position.seq for position, _ in logs] == list(range(20))
    # Entries of one event stay together and in order.
    messages = [e.message for _, e in logs]
    for i in range(10):
        assert messages.index(f"y{i}") == messages.index(f"x{i}") + 1


async def test_text_with_nul_bytes_is_stored(store: SqlStore) -> None:
    pipeline = await add_pipeline(store, "web")
    run = await add_run(store, pipeline, "r1", entries=0)
    name = RunName("web", "r1")
    odd = event(run.name, "nul", Run.FAILED, "bad\x00byte", error="exit\x00code")
    assert await store.apply_run_event(name, "nul", odd, stamp(NOW_US)) is EventOutcome.STORED
    [(_, entry)] = await store.read_run_logs(name, range(10), limit=10)
    assert entry.message == "bad\ufffdbyte"


async def test_expired_request_ids_are_purged(store: SqlStore) -> None:
    for index, created in enumerate((NOW_US - 10, NOW_US + 10)):
        pipeline = new_pipeline(f"p{index}")
        await store.insert_pipeline(pipeline, RequestRecord("CreatePipeline", f"r{index}", b"x", created))
    assert await store.purge_requests(NOW_US) == 1
    assert await store.find_request("CreatePipeline", "r0") is None
    assert await store.find_request("CreatePipeline", "r1") == b"x"


async def test_in_memory_sqlite_works_on_one_shared_connection() -> None:
    database = open_database("sqlite+aiosqlite://")
    try:
        async with database.write_engine.begin() as conn:
            await conn.run_sync(metadata.create_all)
        store = SqlStore(database)
        created = await add_pipeline(store, "web")
        assert await store.get_pipeline("web") == created
        run = await add_run(store, created, "r1")
        assert await store.get_run(RunName("web", "r1")) == run
    finally:
        await database.dispose()
