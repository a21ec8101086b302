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
from collections.abc import Callable, Sequence
from typing import Protocol

from google.protobuf.message import Message
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from conveyor import bus
from conveyor.v1 import bus_pb2
from conveyor_config import metrics
from conveyor_config.storage import OutboxMessage

log = logging.getLogger(__name__)

_MESSAGE_TYPES: dict[str, type[Message]] = {bus.DEPLOY_REQUESTED_SUBJECT: bus_pb2.DeployRequested}


class OutboxStore(Protocol):
    async def due_outbox(self, now_us: int, limit: int) -> list[OutboxMessage]: ...
    async def outbox_delivered(self, ids: Sequence[int]) -> None: ...
    async def outbox_failed(self, message_id: int, error: str, next_attempt_us: int) -> None: ...
    async def outbox_pending(self) -> int: ...


class MessagePublisher(Protocol):
    def ready(self) -> bool: ...
    async def publish(self, subject: str, payload: bytes, msg_id: str) -> None: ...


class JetStreamPublisher:
    def __init__(self, nc: NATS, js: JetStreamContext, timeout: float = 3.0) -> None:
        self.nc = nc
        self.js = js
        self.timeout = timeout

    def ready(self) -> bool:
        return bool(self.nc.is_connected)

    async def publish(self, subject: str, payload: bytes, msg_id: str) -> None:
        message = bus.decode(_MESSAGE_TYPES[subject], payload)
        await bus.publish(self.js, subject, message, msg_id, timeout=self.timeout)


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
