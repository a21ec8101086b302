"""The DeployRequested outbox relay.

StartPipeline writes the QUEUED run and its DeployRequested row in one transaction, then
wakes the relay, which publishes at once; rows that fail (NATS down, timeout) are retried
with backoff until JetStream stores them. The message id is the run name, so a publish
repeated after an ambiguous failure (or by two replicas) is stored once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from conveyor_config import metrics
from conveyor_config.usecases.ports import MessagePublisher, OutboxStore

log = logging.getLogger(__name__)


def backoff_seconds(attempts: int, maximum: float = 30.0) -> float:
    return float(min(0.5 * 2 ** min(attempts, 10), maximum))


class OutboxRelay:
    def __init__(
        self,
        store: OutboxStore,
        publisher: MessagePublisher,
        *,
        interval: float = 1.0,
        batch: int = 100,
        max_backoff: float = 30.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.publisher = publisher
        self.interval = interval
        self.batch = batch
        self.max_backoff = max_backoff
        self.clock = clock
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """Publish now (called after a transaction that wrote outbox rows commits)."""
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
            due = await self.store.due_outbox(int(now * 1_000_000), self.batch)
            if not due:
                break
            delivered: list[int] = []
            failed = False
            for message in due:
                try:
                    await self.publisher.publish(message.subject, message.payload, message.msg_id)
                except Exception as exc:
                    failed = True
                    metrics.OUTBOX_FAILURES.inc()
                    retry_at = now + backoff_seconds(message.attempts, self.max_backoff)
                    log.warning(
                        "outbox publish failed; will retry",
                        extra={"msg_id": message.msg_id, "attempts": message.attempts + 1, "error": str(exc)},
                    )
                    await self.store.outbox_failed(message.id, str(exc) or type(exc).__name__, int(retry_at * 1e6))
                    break  # the bus is likely down: the rest waits for the next round
                delivered.append(message.id)
            await self.store.outbox_delivered(delivered)
            published += len(delivered)
            metrics.OUTBOX_PUBLISHED.inc(len(delivered))
            if failed or len(due) < self.batch:
                break
        metrics.OUTBOX_PENDING.set(await self.store.outbox_pending())
        return published
