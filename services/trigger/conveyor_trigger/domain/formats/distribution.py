"""CNCF Distribution (`registry:2`/`registry:3`, also what many registries embed) notifications.

Envelope `{"events": [...]}` sent as `application/vnd.docker.distribution.events.v1+json`
(distribution 2.x) or `...events.v2+json` (3.x, which adds `target.references`); the
event shape is the same. A registry push produces several events: one per blob (layer,
config), then one for the manifest. Only a *tagged manifest push* is a push here;
blob pushes, mounts, pulls, deletes and manifests pushed by digest (the per-platform
children of a multi-arch index) are ignored.

The host comes from `request.host` (the Host header clients used), else from
`target.url`. Each event has its own `id`, reused when the registry retries the envelope.
"""

from __future__ import annotations

from typing import Any

from conveyor import refs
from conveyor_trigger.domain.formats.base import (
    ParseResult,
    PayloadError,
    WebhookRequest,
    dig,
    event_id,
    lst,
    make_push,
    obj,
    parse_time,
    text,
)

FORMAT = "distribution"

MANIFEST_MEDIA_TYPES = frozenset(
    {
        "application/vnd.docker.distribution.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v1+prettyjws",
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json",
    }
)


def is_manifest(target: dict[str, Any]) -> bool:
    media_type = text(target.get("mediaType"))
    if media_type in MANIFEST_MEDIA_TYPES:
        return True
    return "/manifests/" in text(target.get("url"))


def parse(payload: Any, request: WebhookRequest) -> ParseResult:
    envelope = obj(payload, "the distribution envelope")
    if "events" not in envelope:
        raise PayloadError("unknown_shape", 'not a distribution envelope: no "events" array')
    events = lst(envelope["events"], '"events"') if envelope["events"] is not None else []
    result = ParseResult()
    for position, raw in enumerate(events):
        result.extend(parse_event(raw, request, position, FORMAT))
    return result


def parse_event(raw: Any, request: WebhookRequest, position: int, source_format: str) -> ParseResult:
    """One distribution-shaped event (also used by the Azure ACR format)."""
    event = obj(raw, f"events[{position}]")
    target = obj(event.get("target") or {}, f"events[{position}].target")
    action = text(event.get("action")).lower()
    repository = text(target.get("repository"))
    tag = text(target.get("tag"))
    digest = text(target.get("digest"))
    label = f"{action or 'unknown'} {repository or '?'}:{tag or digest or '?'}"
    if action != "push":
        return ParseResult(ignored=[f"{label}: not a push"])
    if not is_manifest(target):
        return ParseResult(ignored=[f"{label}: blob upload, not a manifest"])
    if not tag:
        return ParseResult(ignored=[f"push {repository or '?'}@{digest or '?'}: manifest pushed by digest (no tag)"])
    native = text(event.get("id")) or text(dig(event, "request", "id"))
    if not native:
        raise PayloadError("unknown_shape", f"events[{position}] has no id")
    host = text(dig(event, "request", "host")) or refs.split_host(text(target.get("url")))[0]
    push = make_push(
        request,
        source_format=source_format,
        event_id=event_id(source_format, native),
        registry=host,
        repository=repository,
        tag=tag,
        digest=digest,
        media_type=text(target.get("mediaType")),
        pushed_at=parse_time(event.get("timestamp")),
        actor=text(dig(event, "actor", "name")),
        what=f"events[{position}]",
    )
    return ParseResult(pushes=[push])
