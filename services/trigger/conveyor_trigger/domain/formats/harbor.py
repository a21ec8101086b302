"""Harbor 2.x webhooks, in the Default payload format and in the CloudEvents format.

Default: `{"type": "PUSH_ARTIFACT", "occur_at": ..., "operator": ..., "event_data":
{"resources": [{"digest", "tag", "resource_url"}], "repository": {"repo_full_name", ...}}}`.
Harbor 1.x sent the same shape with `type: "pushImage"` (Tencent TCR still does, see `tcr`).

CloudEvents (Harbor 2.8+, `application/cloudevents+json`): structured mode
`{"specversion": "1.0", "id", "type": "harbor.artifact.pushed", "time", "operator",
"data": {"resources": [...], "repository": {...}}}`; binary mode (`ce-*` headers with
the data as body) is read too.

The host comes from each resource's `resource_url` (`harbor.example.com/library/app:v1`).
Harbor puts the digest in `tag` for untagged artifacts: those are not tagged pushes.
"""

from __future__ import annotations

from typing import Any

from conveyor import refs
from conveyor_trigger.domain.formats.base import (
    ParseResult,
    PayloadError,
    WebhookRequest,
    canonical_hash,
    dig,
    event_id,
    is_digest,
    lst,
    make_push,
    obj,
    parse_time,
    split_reference,
    text,
)

FORMAT = "harbor"

PUSH_TYPES = frozenset({"PUSH_ARTIFACT", "pushImage"})
CLOUDEVENT_PUSH = "harbor.artifact.pushed"


def parse(payload: Any, request: WebhookRequest) -> ParseResult:
    body = obj(payload, "the harbor payload")
    binary_type = request.header("ce-type")
    if binary_type:
        return _cloudevent(
            request,
            event_type=binary_type,
            native_id=request.header("ce-id"),
            time=request.header("ce-time"),
            operator=request.header("ce-operator"),
            data=body,
        )
    if "specversion" in body:
        return _cloudevent(
            request,
            event_type=text(body.get("type")),
            native_id=text(body.get("id")),
            time=body.get("time"),
            operator=text(body.get("operator")),
            data=body.get("data"),
        )
    return parse_harbor_like(body, request, FORMAT, PUSH_TYPES)


def _cloudevent(
    request: WebhookRequest, *, event_type: str, native_id: str, time: Any, operator: str, data: Any
) -> ParseResult:
    if event_type != CLOUDEVENT_PUSH:
        return ParseResult(ignored=[f"cloudevent {event_type or '?'}: not an artifact push"])
    if not native_id:
        raise PayloadError("unknown_shape", "the CloudEvent has no id")
    event_data = obj(data, "the CloudEvent data")
    return _resources(
        event_data,
        request,
        source_format=FORMAT,
        native_id=native_id,
        pushed_at=time,
        operator=operator,
    )


def parse_harbor_like(
    body: dict[str, Any], request: WebhookRequest, source_format: str, push_types: frozenset[str]
) -> ParseResult:
    """The Harbor Default / Harbor 1.x / TCR shape."""
    if "type" not in body or "event_data" not in body:
        raise PayloadError("unknown_shape", f'not a {source_format} payload: expected "type" and "event_data"')
    event_type = text(body.get("type"))
    if event_type not in push_types:
        return ParseResult(ignored=[f"{event_type or '?'}: not an artifact push"])
    event_data = obj(body.get("event_data"), '"event_data"')
    # No delivery id in this shape: the hash of the document identifies a retry of it.
    return _resources(
        event_data,
        request,
        source_format=source_format,
        native_id=canonical_hash(body),
        pushed_at=body.get("occur_at"),
        operator=text(body.get("operator")),
    )


def _resources(
    event_data: dict[str, Any],
    request: WebhookRequest,
    *,
    source_format: str,
    native_id: str,
    pushed_at: Any,
    operator: str,
) -> ParseResult:
    resources = lst(event_data.get("resources"), '"resources"')
    repository_info = event_data.get("repository")
    full_name = text(dig(repository_info, "repo_full_name"))
    if not full_name:
        namespace, name = text(dig(repository_info, "namespace")), text(dig(repository_info, "name"))
        full_name = f"{namespace}/{name}" if namespace and name else name
    result = ParseResult()
    for position, raw in enumerate(resources):
        resource = obj(raw, f"resources[{position}]")
        tag = text(resource.get("tag"))
        digest = text(resource.get("digest"))
        resource_url = text(resource.get("resource_url"))
        if not tag or is_digest(tag):
            # Untagged artifact: Harbor repeats the digest in `tag`.
            result.ignored.append(f"push {full_name or '?'}@{digest or tag or '?'}: untagged artifact")
            continue
        result.pushes.append(
            make_push(
                request,
                source_format=source_format,
                event_id=event_id(source_format, native_id, position if len(resources) > 1 else None),
                registry=refs.split_host(resource_url)[0],
                repository=full_name or split_reference(resource_url)[1],
                tag=tag,
                digest=digest,
                pushed_at=parse_time(pushed_at),
                actor=operator,
                what=f"resources[{position}]",
            )
        )
    return result
