"""The NATS edge of matching: the durable pull consumer on the registry events stream.

Each message is decoded and handed to the PushMatcher use case; the outcome settles it:
ACK once its runs are stored, TERM (counted, logged) for a message that can never be
processed (undecodable, or no registry/repository/tag), NAK (redelivered) on any
other failure. Matching starts only after the first pipeline load.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from google.protobuf.message import DecodeError
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from conveyor import bus
from conveyor import metrics as shared_metrics
from conveyor.v1 import bus_pb2
from conveyor_trigger import metrics
from conveyor_trigger.usecases.match import InvalidPush, PushMatcher

log = logging.getLogger(__name__)


class MatcherConsumer:
    def __init__(self, js: JetStreamContext, matcher: PushMatcher, *, ack_wait: float = 30.0, batch: int = 50) -> None:
        self.js = js
        self.matcher = matcher
        self.spec = bus.ConsumerSpec(
            stream=bus.REGISTRY_EVENTS_STREAM,
            subject=bus.IMAGE_PUSHED_SUBJECT,
            durable=bus.TRIGGER_MATCHER_DURABLE,
            ack_wait=ack_wait,
            batch=batch,
        )

    async def handle(self, msg: Msg) -> bus.Outcome:
        try:
            push = bus.decode(bus_pb2.ImagePushed, msg.data)
        except DecodeError:
            metrics.BUS_REJECTED.labels(subject=bus.IMAGE_PUSHED_SUBJECT, reason="undecodable").inc()
            shared_metrics.BAD_INPUT.labels(source=bus.IMAGE_PUSHED_SUBJECT, reason="undecodable").inc()
            log.warning("terminated an undecodable registry event", extra={"bytes": len(msg.data)})
            return bus.Outcome.TERM
        meta = msg.metadata
        try:
            await self.matcher.handle(
                push,
                stored_at=meta.timestamp,
                fallback_event_id=f"bus:{meta.sequence.stream}",
                redelivered=meta.num_delivered > 1,
            )
        except InvalidPush as exc:
            metrics.BUS_REJECTED.labels(subject=bus.IMAGE_PUSHED_SUBJECT, reason="invalid").inc()
            shared_metrics.BAD_INPUT.labels(source=bus.IMAGE_PUSHED_SUBJECT, reason="invalid").inc()
            log.warning(
                "terminated a registry event that can never match",
                extra={"event_id": push.event_id, "error": str(exc), "stream_seq": meta.sequence.stream},
            )
            return bus.Outcome.TERM
        return bus.Outcome.ACK

    def _count(self, outcome: bus.Outcome) -> None:
        shared_metrics.BUS_MESSAGES.labels(consumer=self.spec.durable, outcome=outcome.value).inc()

    async def run(self, stop: asyncio.Event, ready: asyncio.Event) -> None:
        """Wait for `ready` (pipelines loaded), then consume until `stop`; survives NATS outages."""
        if not ready.is_set():
            log.info("matcher waiting for the first pipeline load")
            waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(ready.wait())]
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            for waiter in waiters:
                waiter.cancel()
        while not stop.is_set():
            try:
                log.info("matcher consuming", extra={"durable": self.spec.durable})
                await bus.pull_loop(self.js, self.spec, self.handle, stop, on_outcome=self._count)
            except Exception as exc:
                if stop.is_set():
                    break
                log.warning("matcher consumer failed; restarting", extra={"error": str(exc)})
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 1.0)
