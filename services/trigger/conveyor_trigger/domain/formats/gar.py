"""Google Artifact Registry (and Container Registry) notifications via a Pub/Sub push subscription.

Envelope `{"message": {"data": base64(JSON), "messageId"|"message_id", "publishTime",
"attributes"}, "subscription"}`, data `{"action": "INSERT", "digest":
"us-east1-docker.pkg.dev/proj/repo/img@sha256:...", "tag":
"us-east1-docker.pkg.dev/proj/repo/img:1.1"}`. INSERT with a tag is a push; DELETE
and digest-only INSERTs are ignored. The Pub/Sub message id identifies a redelivery.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from conveyor_trigger.domain.formats.base import (
    ParseResult,
    PayloadError,
    WebhookRequest,
    event_id,
    make_push,
    obj,
    parse_time,
    split_reference,
    text,
)

FORMAT = "gar"


def parse(payload: Any, request: WebhookRequest) -> ParseResult:
    envelope = obj(payload, "the Pub/Sub push envelope")
    if "message" not in envelope:
        raise PayloadError("unknown_shape", 'not a Pub/Sub push envelope: no "message"')
    message = obj(envelope.get("message"), '"message"')
    native = text(message.get("messageId")) or text(message.get("message_id"))
    if not native:
        raise PayloadError("unknown_shape", "the Pub/Sub message has no messageId")
    raw = message.get("data")
    if not isinstance(raw, str) or not raw:
        raise PayloadError("unknown_shape", '"message.data" must be a base64 string')
    try:
        data = obj(json.loads(base64.b64decode(raw + "=" * (-len(raw) % 4), validate=False)), "message.data")
    except (binascii.Error, ValueError, RecursionError) as exc:
        if isinstance(exc, PayloadError):
            raise
        raise PayloadError("malformed_json", f'"message.data" is not base64-encoded JSON: {exc}') from None
    action = text(data.get("action")).upper()
    tag_ref, digest_ref = text(data.get("tag")), text(data.get("digest"))
    label = f"{action or '?'} {tag_ref or digest_ref or '?'}"
    if action != "INSERT":
        return ParseResult(ignored=[f"{label}: not an insert"])
    if not tag_ref:
        return ParseResult(ignored=[f"{label}: digest only (no tag)"])
    host, repository, tag, _ = split_reference(tag_ref)
    _, digest_repository, _, digest = split_reference(digest_ref) if digest_ref else ("", "", "", "")
    if not tag:
        raise PayloadError("unknown_shape", f'"tag" {tag_ref!r} has no tag part')
    push = make_push(
        request,
        source_format=FORMAT,
        event_id=event_id(FORMAT, native),
        registry=host,
        repository=repository,
        tag=tag,
        digest=digest if digest_repository == repository else "",
        pushed_at=parse_time(message.get("publishTime") or message.get("publish_time")),
    )
    return ParseResult(pushes=[push])
