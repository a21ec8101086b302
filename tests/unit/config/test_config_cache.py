"""The GetPipeline cache: hits, expiry, capacity, and never caching a read that raced an invalidation."""

from __future__ import annotations

from conveyor_config.usecases.caches import PipelineCache
from tests.unit.config.samples import sample_pipeline


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_filled_entries_are_served_as_copies_until_they_expire() -> None:
    clock = Clock()
    cache = PipelineCache(ttl=5.0, clock=clock)
    pipeline = sample_pipeline(display_name="缓存")
    cache.fill("web", pipeline, cache.begin_read())
    hit = cache.lookup("web")
    assert hit == pipeline
    assert hit is not None
    hit.display_name = "mutated by a caller"
    assert cache.lookup("web") == pipeline  # callers cannot corrupt the entry
    clock.now += 5.1
    assert cache.lookup("web") is None
    assert len(cache) == 0


def test_a_read_that_started_before_an_invalidation_is_not_cached() -> None:
    cache = PipelineCache(ttl=5.0, clock=Clock())
    token = cache.begin_read()
    cache.invalidate("web")  # e.g. an update committed while the read was in flight
    cache.fill("web", sample_pipeline(display_name="old"), token)
    assert cache.lookup("web") is None
    cache.fill("web", sample_pipeline(display_name="new"), cache.begin_read())
    assert cache.lookup("web") is not None


def test_invalidate_and_clear() -> None:
    cache = PipelineCache(ttl=5.0, clock=Clock())
    for name in ("a", "b", "c"):
        cache.fill(name, sample_pipeline(), cache.begin_read())
    cache.invalidate("b")
    assert (cache.lookup("a") is not None, cache.lookup("b"), cache.lookup("c") is not None) == (True, None, True)
    cache.clear()
    assert len(cache) == 0


def test_capacity_evicts_the_least_recently_used() -> None:
    cache = PipelineCache(ttl=5.0, capacity=2, clock=Clock())
    cache.fill("a", sample_pipeline(), cache.begin_read())
    cache.fill("b", sample_pipeline(), cache.begin_read())
    assert cache.lookup("a") is not None  # "a" is now the most recently used
    cache.fill("c", sample_pipeline(), cache.begin_read())
    assert cache.lookup("b") is None
    assert cache.lookup("a") is not None and cache.lookup("c") is not None


def test_zero_ttl_disables_the_cache() -> None:
    cache = PipelineCache(ttl=0.0, clock=Clock())
    cache.fill("a", sample_pipeline(), cache.begin_read())
    assert cache.lookup("a") is None
