"""The pipelines the matcher sees: loaded from config, kept current by change notices.

- Full load from PipelineService.ListPipelines at start, then every `resync_interval`, and
  whenever asked (NATS reconnected: notices may have been missed while disconnected).
- PipelineChanged notices (core NATS) applied as they arrive; a notice older than what
  the cache holds (by update_time) is ignored, and notices arriving during a full load are
  re-applied on top of it, so a load never rolls a newer change back.
- When config cannot be reached, the cache keeps what it has and retries with backoff
  (`conveyor.retry`, RESYNC_RETRY); matching continues from it. `loaded` is set after the first successful load: the
  matcher waits for it, so pushes are never matched against an empty cache (they wait in
  JetStream meanwhile).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from google.protobuf.message import DecodeError
from nats.aio.msg import Msg

from conveyor import bus, retry
from conveyor.v1 import bus_pb2
from conveyor_trigger import metrics
from conveyor_trigger.domain.matching import ExcludedPipeline, PipelineIndex
from conveyor_trigger.usecases.ports import PipelineSource

log = logging.getLogger(__name__)

_CHANGE = bus_pb2.PipelineChanged

# Re-loads after a failure: 0.5 s doubling up to 10 s, without jitter (one trigger, one config service).
RESYNC_RETRY = retry.RetryPolicy(initial=0.5, maximum=10.0, jitter=0.0)


class PipelineCache:
    def __init__(
        self,
        source: PipelineSource,
        *,
        resync_interval: float = 60.0,
        retry_policy: retry.RetryPolicy = RESYNC_RETRY,
    ) -> None:
        self.source = source
        self.resync_interval = resync_interval
        self.retry_policy = retry_policy
        self.index = PipelineIndex()
        self.loaded = asyncio.Event()
        self._resync_requested = asyncio.Event()
        # Notices received while a full load is in flight (re-applied on top of it).
        self._pending: list[bus_pb2.PipelineChanged] | None = None
        self._excluded_reported: dict[str, str] = {}

    def current(self) -> PipelineIndex:
        return self.index

    def is_loaded(self) -> bool:
        return self.loaded.is_set()

    def request_resync(self) -> None:
        self._resync_requested.set()

    # --- change notices ---------------------------------------------------------------------

    async def on_change_message(self, msg: Msg) -> None:
        """Core NATS callback for conveyor.pipelines.changed."""
        try:
            change = bus.decode(bus_pb2.PipelineChanged, msg.data)
        except DecodeError:
            metrics.BUS_REJECTED.labels(subject=bus.PIPELINE_CHANGED_SUBJECT, reason="undecodable").inc()
            log.warning("dropped an undecodable pipeline change notice")
            return
        self.apply_change(change)

    def apply_change(self, change: bus_pb2.PipelineChanged) -> None:
        if not change.pipeline.name:
            metrics.BUS_REJECTED.labels(subject=bus.PIPELINE_CHANGED_SUBJECT, reason="no_pipeline_name").inc()
            log.warning("dropped a pipeline change notice without a pipeline name")
            return
        if self._pending is not None:
            self._pending.append(change)
        self._apply(self.index, change)
        self._publish_gauges()

    def _apply(self, index: PipelineIndex, change: bus_pb2.PipelineChanged) -> None:
        name = change.pipeline.name
        if change.change == _CHANGE.DELETED:
            index.remove(name)
            log.info("pipeline removed from the cache", extra={"pipeline": name})
            return
        if change.change not in (_CHANGE.CREATED, _CHANGE.UPDATED):
            metrics.BUS_REJECTED.labels(subject=bus.PIPELINE_CHANGED_SUBJECT, reason="unknown_change").inc()
            log.warning("ignored a pipeline change notice of unknown kind", extra={"pipeline": name})
            return
        held = index.update_time(name)
        incoming = (change.pipeline.update_time.seconds, change.pipeline.update_time.nanos)
        if held is not None and incoming != (0, 0) and held > incoming:
            return  # an older notice than the version cached
        result = index.upsert(change.pipeline)
        if isinstance(result, ExcludedPipeline):
            self._report_excluded([result])
        else:
            self._excluded_reported.pop(name, None)

    # --- full loads -------------------------------------------------------------------------

    async def sync_once(self) -> None:
        """Replace the cache with the config service's list; raises when it cannot be read."""
        self._pending = []
        try:
            pipelines = await self.source.list_pipelines()
        except BaseException:
            self._pending = None
            raise
        pending, self._pending = self._pending, None
        index, rejected = PipelineIndex.build(pipelines, previous=self.index)
        for change in pending:
            self._apply(index, change)
        self.index = index
        self._report_excluded(rejected, replace=True)
        self.loaded.set()
        metrics.PIPELINE_SYNCS.labels(result="ok").inc()
        metrics.PIPELINE_CACHE_SYNCED.set(time.time())
        self._publish_gauges()
        log.debug("pipelines loaded", extra={"pipelines": len(index), "excluded": len(index.excluded)})

    async def run(self, stop: asyncio.Event) -> None:
        """Load, then re-load periodically / on request, until `stop`; a failed load never raises."""
        backoff = retry.Backoff(self.retry_policy)
        while not stop.is_set():
            self._resync_requested.clear()
            try:
                await self.sync_once()
            except Exception as exc:
                metrics.PIPELINE_SYNCS.labels(result="error").inc()
                failing = backoff.failures > 0
                delay = backoff.next_delay()
                # A policy that gives up only stops the fast retries: the cache keeps trying at its maximum.
                wait = self.retry_policy.maximum if delay is None else delay
                level = logging.DEBUG if failing else logging.WARNING
                message = (
                    "cannot load pipelines from the config service; matching continues from the cache"
                    if self.loaded.is_set()
                    else "cannot load pipelines from the config service yet; pushes wait in the stream until it answers"
                )
                log.log(level, message, extra={"error": str(exc), "retry_in_s": wait, "cached": len(self.index)})
            else:
                if backoff.failures:
                    log.info("pipelines loaded from the config service again", extra={"pipelines": len(self.index)})
                backoff.reset()
                wait = self.resync_interval
            await _wait_any(stop, self._resync_requested, wait)

    # --- reporting --------------------------------------------------------------------------

    def _report_excluded(self, excluded: list[ExcludedPipeline], *, replace: bool = False) -> None:
        current = {item.name: item.reason for item in excluded}
        for name, reason in current.items():
            if self._excluded_reported.get(name) != reason:
                log.warning("pipeline excluded from matching", extra={"pipeline": name, "reason": reason})
        if replace:
            self._excluded_reported = current
        else:
            self._excluded_reported.update(current)

    def _publish_gauges(self) -> None:
        metrics.PIPELINES_CACHED.set(len(self.index))
        metrics.PIPELINES_EXCLUDED.set(len(self.index.excluded))


async def _wait_any(first: asyncio.Event, second: asyncio.Event, timeout: float) -> None:
    waiters = [asyncio.ensure_future(first.wait()), asyncio.ensure_future(second.wait())]
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await waiter
