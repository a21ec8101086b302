"""Webhook in -> ImagePushed messages durably stored in JetStream.

The caller (the HTTP receiver) acknowledges the registry only when this returns: every
push of the delivery has been stored (JetStream publish ack). Each push's message id is
its event id, derived from the registry's own event/delivery id (or the document hash),
so a registry retrying the same delivery is stored once.

A format whose document is the same for every push of a tag (Quay: no id, no digest, no time)
would make a re-push of the tag a "retry" and lose it: its pushes get the image's digest,
resolved from the registry, in their id. When the registry cannot say, the receive time goes in
instead: a retry of that delivery may then deploy the same tag again, which is better than
losing a new image. Without registry access (CONVEYOR_REGISTRIES_FILE) nothing tells the two
apart: the id stays the document's hash, a retry is stored once and a re-push of the tag within
the duplicate window is not.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from dataclasses import dataclass, field

from conveyor import refs, subjects
from conveyor.errors import Unavailable
from conveyor.v1 import bus_pb2
from conveyor_trigger import metrics
from conveyor_trigger.domain.formats import ParseResult, PayloadError, UnknownFormat, WebhookRequest, parse_webhook
from conveyor_trigger.usecases.ports import DigestResolver, EventPublisher

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


async def ingest_webhook(
    format_name: str,
    request: WebhookRequest,
    publisher: EventPublisher,
    *,
    resolver: DigestResolver | None = None,
    digest_timeout: float = 10.0,
) -> IngestResult:
    """Parse a delivery and store its pushes; PayloadError/UnknownFormat for bad input, Unavailable
    when the bus cannot store them (nothing is acknowledged; the registry retries)."""
    parsed = parse(format_name, request)
    if parsed.ids_need_digest and resolver is not None:
        await asyncio.gather(
            *(
                _identify(push, resolver, digest_timeout, request.received_at)
                for push in parsed.pushes
                if not push.digest
            )
        )
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


async def _identify(
    push: bus_pb2.ImagePushed, resolver: DigestResolver, timeout: float, received_at: dt.datetime
) -> None:
    """Put the image's digest (or, failing that, the receive time) into the push's event id."""
    try:
        digest = await asyncio.wait_for(resolver.resolve_digest(push.registry, push.repository, push.tag), timeout)
        if not isinstance(digest, str) or not refs.is_valid_digest(digest):
            raise ValueError(f"registry returned {digest!r}, not a digest")
    except Exception as exc:
        error = f"no answer within {timeout:g}s" if isinstance(exc, TimeoutError) else str(exc) or repr(exc)
    else:
        metrics.DIGEST_RESOLUTIONS.labels(result="resolved").inc()
        push.digest = digest
        push.event_id = f"{push.event_id}@{digest}"
        return
    metrics.DIGEST_RESOLUTIONS.labels(result="failed").inc()
    log.warning(
        "could not resolve the digest of a push whose payload names no image; its id carries the receive time",
        extra={"event_id": push.event_id, "image": f"{push.registry}/{push.repository}:{push.tag}", "error": error},
    )
    push.event_id = f"{push.event_id}@{int(received_at.timestamp() * 1000)}"
