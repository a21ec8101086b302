"""The NATS edge of matching: one message of the registry events stream in, its settlement out.

Each message is decoded and handed to the PushMatcher use case; the outcome settles it:
ACK once its runs are stored, TERM (counted, logged) for a message that can never be
processed (undecodable, or no registry/repository/tag), NAK (redelivered) on any
other failure. The pull consumer feeding `handle` is `adapters.jetstream.RegistryEventsConsumer`.
"""

from __future__ import annotations

import logging

from google.protobuf.message import DecodeError
from nats.aio.msg import Msg

from conveyor import bus, metrics as shared_metrics
from conveyor.v1 import bus_pb2
from conveyor_trigger import metrics
from conveyor_trigger.usecases.match import InvalidPush, PushMatcher

log = logging.getLogger(__name__)


class MatcherConsumer:
    def __init__(self, matcher: PushMatcher) -> None:
        self.matcher = matcher

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
