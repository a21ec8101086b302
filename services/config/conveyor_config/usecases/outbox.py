"""The DeployRequested outbox relay.

StartPipeline writes the QUEUED run and its DeployRequested row in one transaction, then
wakes the relay, which publishes at once; rows that fail (NATS down, timeout) are retried
with backoff until JetStream stores them. The backoff is stored with the row (its next attempt
time), so it survives restarts and holds across replicas. The message id is the run name, so a
publish repeated after an ambiguous failure is stored once.

Replicas share the rows without publishing one twice: a relay claims a batch (the store moves the rows'
next attempt `lease` ahead, in a transaction that skips rows another relay is claiming), publishes
it, then deletes what was published and hands back what it did not get to. A relay that dies holding a
claim leaves its rows to be taken by another once the lease runs out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Callable

from conveyor import tracing
from conveyor.retry import RetryPolicy
from conveyor_config import metrics
from conveyor_config.usecases.ports import MessagePublisher, OutboxStore

log = logging.getLogger(__name__)

# Rows whose trace is remembered until they are published.
MAX_TRACES = 10_000
# How long a claimed batch is its relay's: well above a batch's publishes (3 s timeout, and the relay stops
# at the first failure), so it only runs out when the relay died; then another replica publishes the rows.
LEASE = 30.0


def retry_policy(max_backoff: float = 30.0) -> RetryPolicy:
    """0.5 s, 1 s, 2 s, ... up to `max_backoff` after each failed publish of a row. No jitter: the wait
    becomes the row's stored next-attempt time, by the same formula as rows stored before."""
    return RetryPolicy(initial=0.5, maximum=max_backoff, jitter=0.0)


class OutboxRelay:
    def __init__(
        self,
        store: OutboxStore,
        publisher: MessagePublisher,
        *,
        interval: float = 1.0,
        batch: int = 100,
        max_backoff: float = 30.0,
        lease: float = LEASE,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.publisher = publisher
        self.interval = interval
        self.batch = batch
        self.retry_policy = retry_policy(max_backoff)
        self.lease = lease
        self.clock = clock
        self._wake = asyncio.Event()
        # msg id -> the trace of the request that wrote the row, so its publish continues that trace.
        # Memory only: a row published after a restart (or once this is full) starts a trace of its own.
        self._traces: OrderedDict[str, tracing.Context] = OrderedDict()

    def wake(self, msg_id: str = "") -> None:
        """Publish now (called after a transaction that wrote outbox rows commits, e.g. row `msg_id`)."""
        trace = tracing.current()
        if msg_id and trace is not None:
            self._traces[msg_id] = trace
            while len(self._traces) > MAX_TRACES:
                self._traces.popitem(last=False)
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            self._wake.clear()
            try:
                await self.flush()
            except Exception:
                log.exception("outbox flush failed; will retry")
            waiters = [asyncio.ensure_future(self._wake.wait()), asyncio.ensure_future(stop.wait())]
            try:
                await asyncio.wait(waiters, timeout=self.interval, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiter in waiters:
                    waiter.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await waiter

    async def flush(self) -> int:
        """Publish every due message; returns how many were published."""
        published = 0
        while self.publisher.ready():
            now = self.clock()
            now_us = int(now * 1_000_000)
            due = await self.store.claim_outbox(now_us, self.batch, now_us + int(self.lease * 1_000_000))
            if not due:
                break
            delivered: list[int] = []
            failed = False
            for index, message in enumerate(due):
                try:
                    with tracing.attached(self._traces.get(message.msg_id)):
                        await self.publisher.publish(message.subject, message.payload, message.msg_id)
                except Exception as exc:
                    failed = True
                    metrics.OUTBOX_FAILURES.inc()
                    # `attempts` counts the failures before this one.
                    retry_at = now + self.retry_policy.ceiling(message.attempts + 1)
                    log.warning(
                        "outbox publish failed; will retry",
                        extra={"msg_id": message.msg_id, "attempts": message.attempts + 1, "error": str(exc)},
                    )
                    await self.store.outbox_failed(message.id, str(exc) or type(exc).__name__, int(retry_at * 1e6))
                    # The bus is likely down: the rest is due again for the next round, by any replica.
                    await self.store.outbox_release([m.id for m in due[index + 1 :]], now_us)
                    break
                delivered.append(message.id)
                self._traces.pop(message.msg_id, None)
            await self.store.outbox_delivered(delivered)
            published += len(delivered)
            metrics.OUTBOX_PUBLISHED.inc(len(delivered))
            if failed or len(due) < self.batch:
                break
        metrics.OUTBOX_PENDING.set(await self.store.outbox_pending())
        return published
