"""In-process caches of the pipeline use cases: GetPipeline by id, ListPipelines total_size."""

from __future__ import annotations

import collections
import time
from collections.abc import Callable

from conveyor.v1.pipeline_pb2 import Pipeline


class CountCache:
    """total_size per filter, cached briefly: counting 100k rows on every page would dominate List.

    Local writes invalidate it at once; other replicas' writes show within `ttl` seconds
    (AIP-132 allows total_size to be an estimate).
    """

    def __init__(self, ttl: float, clock: Callable[[], float]) -> None:
        self.ttl = ttl
        self.clock = clock
        self._values: dict[str, tuple[float, int]] = {}

    def get(self, key: str) -> int | None:
        hit = self._values.get(key)
        if hit is None or hit[0] < self.clock():
            return None
        return hit[1]

    def put(self, key: str, value: int) -> None:
        if self.ttl > 0:
            if len(self._values) > 1000:
                self._values.clear()
            self._values[key] = (self.clock() + self.ttl, value)

    def invalidate(self) -> None:
        self._values.clear()


class PipelineCache:
    """Pipelines by id for GetPipeline, kept coherent by invalidation.

    Local writes and PipelineChanged notices (from every replica) invalidate entries; a
    reconnect to NATS clears everything (notices may have been missed); `ttl` bounds
    staleness should a notice still be lost. A read that started before an invalidation
    is not cached (generation check), so a slow read cannot resurrect an old version.
    Entries are stored serialised: callers get their own copy.
    """

    def __init__(self, ttl: float, capacity: int = 100_000, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self.capacity = capacity
        self.clock = clock
        self._entries: collections.OrderedDict[str, tuple[float, bytes]] = collections.OrderedDict()
        self._generation = 0

    def lookup(self, pipeline_id: str) -> Pipeline | None:
        entry = self._entries.get(pipeline_id)
        if entry is None:
            return None
        if entry[0] < self.clock():
            del self._entries[pipeline_id]
            return None
        self._entries.move_to_end(pipeline_id)
        cached: Pipeline = Pipeline.FromString(entry[1])
        return cached

    def begin_read(self) -> int:
        return self._generation

    def fill(self, pipeline_id: str, pipeline: Pipeline, token: int) -> None:
        if self.ttl <= 0 or token != self._generation:
            return
        self._entries[pipeline_id] = (self.clock() + self.ttl, pipeline.SerializeToString())
        self._entries.move_to_end(pipeline_id)
        while len(self._entries) > self.capacity:
            self._entries.popitem(last=False)

    def invalidate(self, pipeline_id: str) -> None:
        self._generation += 1
        self._entries.pop(pipeline_id, None)

    def clear(self) -> None:
        self._generation += 1
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)
