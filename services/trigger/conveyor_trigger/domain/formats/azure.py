"""Azure Container Registry (ACR) webhooks.

One event per request, distribution-like: `{"id", "timestamp", "action": "push",
"target": {"mediaType", "digest", "repository", "tag", ...}, "request": {"host":
"myregistry.azurecr.io", ...}}`. ACR only notifies manifest-level actions; `push` with
a tag is a push, `delete`, `quarantine`, `chart_push`/`chart_delete` and `ping` are ignored.
"""

from __future__ import annotations

from typing import Any

from conveyor_trigger.domain.formats.base import (
    ParseResult,
    PayloadError,
    WebhookRequest,
    dig,
    event_id,
    make_push,
    obj,
    parse_time,
    text,
)

FORMAT = "azure"


def parse(payload: Any, request: WebhookRequest) -> ParseResult:
    event = obj(payload, "the azure payload")
    if "action" not in event:
        raise PayloadError("unknown_shape", 'not an azure payload: expected "action" and "target"')
    action = text(event.get("action")).lower()
    target = obj(event.get("target") or {}, '"target"')
    repository, tag, digest = text(target.get("repository")), text(target.get("tag")), text(target.get("digest"))
    label = f"{action or '?'} {repository or '?'}:{tag or digest or '?'}"
    if action != "push":
        return ParseResult(ignored=[f"{label}: not an image push"])
    if not tag:
        return ParseResult(ignored=[f"push {repository or '?'}@{digest or '?'}: manifest pushed by digest (no tag)"])
    native = text(event.get("id"))
    if not native:
        raise PayloadError("unknown_shape", 'the azure event has no "id"')
    push = make_push(
        request,
        source_format=FORMAT,
        event_id=event_id(FORMAT, native),
        registry=text(dig(event, "request", "host")),
        repository=repository,
        tag=tag,
        digest=digest,
        media_type=text(target.get("mediaType")),
        pushed_at=parse_time(event.get("timestamp")),
        actor=text(dig(event, "actor", "name")),
    )
    return ParseResult(pushes=[push])
