"""The NATS edge of matching: one message of the registry events stream in, its settlement out.

Each message is decoded and handed to the PushMatcher use case; the outcome settles it:
ACK once its runs are stored, TERM (counted, logged, dead-lettered with why: `bus.Unprocessable`)
for a message that can never be processed (undecodable, a timestamp or enum out of range, or no
registry/repository/tag), NAK
(redelivered, dead-lettered on its last allowed delivery) on any other failure. The pull
consumer feeding `handle` is `adapters.jetstream.RegistryEventsConsumer`.
"""

from __future__ import annotations

import logging
from typing import NoReturn

from google.protobuf.message import DecodeError
from nats.aio.msg import Msg

from conveyor import bus, messages, metrics as shared_metrics
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
        except DecodeError as exc:
            metrics.BUS_REJECTED.labels(subject=bus.IMAGE_PUSHED_SUBJECT, reason="undecodable").inc()
            shared_metrics.BAD_INPUT.labels(source=bus.IMAGE_PUSHED_SUBJECT, reason="undecodable").inc()
            log.warning("terminated an undecodable registry event", extra={"bytes": len(msg.data)})
            raise bus.Unprocessable(f"not an ImagePushed: {exc}", reason="undecodable") from exc
        meta = msg.metadata
        # A `pushed_at` out of range would be stored in the history and break every ListEvents after it.
        violations = messages.validate_fields(push)
        if violations:
            self._reject(push, meta.sequence.stream, messages.describe(violations))
        try:
            await self.matcher.handle(
                push,
                stored_at=meta.timestamp,
                fallback_event_id=f"bus:{meta.sequence.stream}",
                redelivered=meta.num_delivered > 1,
            )
        except InvalidPush as exc:
            self._reject(push, meta.sequence.stream, str(exc))
        return bus.Outcome.ACK

    @staticmethod
    def _reject(push: bus_pb2.ImagePushed, stream_seq: int, error: str) -> NoReturn:
        metrics.BUS_REJECTED.labels(subject=bus.IMAGE_PUSHED_SUBJECT, reason="invalid").inc()
        shared_metrics.BAD_INPUT.labels(source=bus.IMAGE_PUSHED_SUBJECT, reason="invalid").inc()
        log.warning(
            "terminated a registry event that can never match",
            extra={"event_id": push.event_id, "error": error, "stream_seq": stream_seq},
        )
        raise bus.Unprocessable(error)  # TERM, with why, in the dead letter
