"""Webhook in -> ImagePushed messages durably stored in JetStream.

The caller (the HTTP receiver) acknowledges the registry only when this returns: every
push of the delivery has been stored (JetStream publish ack). Each push's message id is
its event id, derived from the registry's own event/delivery id (or the document hash),
so a registry retrying the same delivery is stored once.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from conveyor import subjects
from conveyor.errors import Unavailable
from conveyor_trigger.domain.formats import ParseResult, PayloadError, UnknownFormat, WebhookRequest, parse_webhook
from conveyor_trigger.usecases.ports import EventPublisher

log = logging.getLogger(__name__)


@dataclass
class IngestResult:
    stored: list[str] = field(default_factory=list)
    # Already in the stream (a retry of a delivery stored before).
    duplicates: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)


def parse(format_name: str, request: WebhookRequest) -> ParseResult:
    """Parse, turning a parser crash on a strange document into a 400-style PayloadError."""
    try:
        return parse_webhook(format_name, request)
    except (PayloadError, UnknownFormat):
        raise
    except Exception:
        log.exception("webhook parser failed on an unexpected shape", extra={"format": format_name})
        raise PayloadError("unknown_shape", f"the payload does not have the shape of a {format_name} webhook") from None


async def ingest_webhook(format_name: str, request: WebhookRequest, publisher: EventPublisher) -> IngestResult:
    """Parse a delivery and store its pushes; PayloadError/UnknownFormat for bad input, Unavailable
    when the bus cannot store them (nothing is acknowledged; the registry retries)."""
    parsed = parse(format_name, request)
    unique = {push.event_id: push for push in parsed.pushes}
    results = await asyncio.gather(
        *(publisher.publish(subjects.IMAGE_PUSHED_SUBJECT, push, push.event_id) for push in unique.values()),
        return_exceptions=True,
    )
    outcome = IngestResult(ignored=list(parsed.ignored))
    failures = []
    for event_id, result in zip(unique, results, strict=True):
        if isinstance(result, BaseException):
            failures.append(result)
        elif result:
            outcome.stored.append(event_id)
        else:
            outcome.duplicates.append(event_id)
    if failures:
        raise Unavailable(f"the event bus could not store the events ({failures[0]}); retry later") from failures[0]
    return outcome
