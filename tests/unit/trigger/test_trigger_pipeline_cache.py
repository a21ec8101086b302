"""The pipeline cache: full loads, change notices, ordering, config outages."""

from __future__ import annotations

import asyncio

import pytest

from conveyor.retry import RetryPolicy
from conveyor.v1 import bus_pb2, pipeline_pb2
from conveyor_trigger.adapters import pipeline_cache
from conveyor_trigger.adapters.pipeline_cache import RESYNC_RETRY, PipelineCache
from tests.support.net import eventually
from tests.unit.trigger.trigger_factories import FILTER, pipeline

CHANGE = bus_pb2.PipelineChanged


class FakeSource:
    def __init__(self, *pipelines: pipeline_pb2.Pipeline) -> None:
        self.pipelines = list(pipelines)
        self.down = False
        self.calls = 0
        self.gate: asyncio.Event | None = None

    async def list_pipelines(self) -> list[pipeline_pb2.Pipeline]:
        self.calls += 1
        if self.gate is not None:
            await self.gate.wait()
        if self.down:
            raise ConnectionError("config unavailable")
        return list(self.pipelines)


def names(cache: PipelineCache) -> set[str]:
    return set(cache.current().by_name)


def change(kind: int, p: pipeline_pb2.Pipeline) -> bus_pb2.PipelineChanged:
    return bus_pb2.PipelineChanged(change=kind, pipeline=p)  # type: ignore[arg-type]


async def test_load_then_follow_change_notices() -> None:
    cache = PipelineCache(FakeSource(pipeline("a"), pipeline("b")))
    assert not cache.is_loaded()
    await cache.sync_once()
    assert cache.is_loaded() and names(cache) == {"pipelines/a", "pipelines/b"}

    cache.apply_change(change(CHANGE.CREATED, pipeline("c")))
    cache.apply_change(change(CHANGE.UPDATED, pipeline("a", disabled=True, updated=1_700_000_100)))
    cache.apply_change(change(CHANGE.DELETED, pipeline_pb2.Pipeline(name="pipelines/b")))
    assert names(cache) == {"pipelines/a", "pipelines/c"}
    assert cache.current().get("pipelines/a").disabled  # type: ignore[union-attr]


async def test_an_older_notice_does_not_roll_back_a_newer_version() -> None:
    cache = PipelineCache(FakeSource(pipeline("a", filter_type=FILTER.EXACT, value="new", updated=200)))
    await cache.sync_once()
    cache.apply_change(change(CHANGE.UPDATED, pipeline("a", filter_type=FILTER.EXACT, value="old", updated=100)))
    assert cache.current().get("pipelines/a").filter_value == "new"  # type: ignore[union-attr]


async def test_notices_during_a_load_are_applied_on_top_of_it() -> None:
    source = FakeSource(pipeline("a"), pipeline("b"))
    cache = PipelineCache(source)
    source.gate = asyncio.Event()
    load = asyncio.create_task(cache.sync_once())
    await eventually(_called(source))
    # While the (now stale) list is in flight: b is deleted and c created.
    cache.apply_change(change(CHANGE.DELETED, pipeline_pb2.Pipeline(name="pipelines/b")))
    cache.apply_change(change(CHANGE.CREATED, pipeline("c")))
    source.gate.set()
    await load
    assert names(cache) == {"pipelines/a", "pipelines/c"}


def _called(source: FakeSource):  # type: ignore[no-untyped-def]
    async def check() -> None:
        assert source.calls == 1

    return check


async def test_config_outage_keeps_the_cache_and_a_return_picks_up_new_pipelines() -> None:
    source = FakeSource(pipeline("a"))
    cache = PipelineCache(source, resync_interval=0.05, retry_policy=RetryPolicy(0.01, 0.05, jitter=0.0))
    stop = asyncio.Event()
    task = asyncio.create_task(cache.run(stop))
    try:
        await asyncio.wait_for(cache.loaded.wait(), 5)
        source.down = True
        calls = source.calls
        await eventually(_more_calls(source, calls + 3))
        assert names(cache) == {"pipelines/a"}  # still matching from the cache
        source.pipelines.append(pipeline("created-while-down"))
        source.down = False

        async def picked_up() -> None:
            assert names(cache) == {"pipelines/a", "pipelines/created-while-down"}

        await eventually(picked_up)
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)


def _more_calls(source: FakeSource, at_least: int):  # type: ignore[no-untyped-def]
    async def check() -> None:
        assert source.calls >= at_least

    return check


async def test_resync_on_request() -> None:
    source = FakeSource(pipeline("a"))
    cache = PipelineCache(source, resync_interval=3600)
    stop = asyncio.Event()
    task = asyncio.create_task(cache.run(stop))
    try:
        await asyncio.wait_for(cache.loaded.wait(), 5)
        source.pipelines = [pipeline("b")]
        cache.request_resync()

        async def reloaded() -> None:
            assert names(cache) == {"pipelines/b"}

        await eventually(reloaded)
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)


async def test_undecodable_and_nameless_notices_are_dropped() -> None:
    cache = PipelineCache(FakeSource(pipeline("a")))
    await cache.sync_once()

    class Msg:
        data = b"\xff\xff\xff garbage"

    await cache.on_change_message(Msg())  # type: ignore[arg-type]
    cache.apply_change(change(CHANGE.CREATED, pipeline_pb2.Pipeline()))
    cache.apply_change(change(CHANGE.CHANGE_UNSPECIFIED, pipeline("z")))
    assert names(cache) == {"pipelines/a"}


async def test_a_notice_with_an_invalid_regex_excludes_the_pipeline() -> None:
    cache = PipelineCache(FakeSource(pipeline("a", filter_type=FILTER.REGEX, value="v.*")))
    await cache.sync_once()
    cache.apply_change(
        change(CHANGE.UPDATED, pipeline("a", filter_type=FILTER.REGEX, value="(", updated=1_800_000_000))
    )
    assert names(cache) == set()
    assert "does not compile" in cache.current().excluded["pipelines/a"].reason


def test_reloads_after_a_failure_back_off_as_before() -> None:
    # 0.5 s doubling up to 10 s, exactly (no jitter): the waits the cache used before conveyor.retry.
    assert [RESYNC_RETRY.delay(n) for n in range(1, 8)] == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    assert RESYNC_RETRY.max_attempts is None and RESYNC_RETRY.deadline is None  # never gives up


async def test_the_backoff_starts_over_after_a_successful_load(monkeypatch: pytest.MonkeyPatch) -> None:
    source = FakeSource(pipeline("a"))
    waits: list[float] = []
    cache = PipelineCache(source, resync_interval=0.2, retry_policy=RetryPolicy(0.02, 1.0, jitter=0.0))
    stop = asyncio.Event()
    real_wait = pipeline_cache._wait_any

    async def recording(first: asyncio.Event, second: asyncio.Event, timeout: float) -> None:
        waits.append(timeout)
        if len(waits) == 6:
            stop.set()
        source.down = len(waits) in (1, 3)  # loads: fail, fail, ok, fail, ok, ok
        await real_wait(first, second, 0.001)

    monkeypatch.setattr(pipeline_cache, "_wait_any", recording)
    source.down = True
    await asyncio.wait_for(cache.run(stop), 5)
    assert waits == [0.02, 0.04, 0.2, 0.02, 0.2, 0.2]
