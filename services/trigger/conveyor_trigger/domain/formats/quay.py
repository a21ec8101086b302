"""Quay (quay.io and Red Hat Quay) "Push to Repository" notifications.

`{"name", "repository": "ns/repo", "namespace", "docker_url": "quay.io/ns/repo",
"homepage", "updated_tags": [...]}`. Current Quay sends `updated_tags` as a list of
tag names; older releases sent a map of tag -> image id (not a manifest digest, so it is
only kept when it is a `sha256:` digest). Build and vulnerability notifications carry
no `updated_tags` and are ignored. The host comes from `docker_url`; there is no
delivery id, so the document's hash identifies a retry — and, as the document is the same
for every push of a tag, the ingest use case adds the resolved digest to the id.
"""

from __future__ import annotations

from typing import Any

from conveyor import refs
from conveyor_trigger.domain.formats.base import (
    ParseResult,
    PayloadError,
    WebhookRequest,
    canonical_hash,
    event_id,
    is_digest,
    make_push,
    obj,
    text,
)

FORMAT = "quay"


def parse(payload: Any, request: WebhookRequest) -> ParseResult:
    body = obj(payload, "the quay payload")
    if "repository" not in body and "docker_url" not in body:
        raise PayloadError("unknown_shape", 'not a quay payload: expected "repository" and "docker_url"')
    repository = text(body.get("repository"))
    docker_url = text(body.get("docker_url"))
    if "updated_tags" not in body:
        kind = "build" if "build_id" in body else "notification"
        return ParseResult(ignored=[f"{kind} for {repository or docker_url or '?'}: not a push"])
    updated = body.get("updated_tags")
    tags: list[tuple[str, str]]
    if isinstance(updated, list):
        tags = [(text(tag), "") for tag in updated]
    elif isinstance(updated, dict):
        tags = [(text(tag), text(value)) for tag, value in updated.items()]
    elif updated is None:
        tags = []
    else:
        raise PayloadError("unknown_shape", '"updated_tags" must be a list of tags or a map of tag to image')
    host, path = refs.split_host(docker_url)
    repository = repository or path
    native = canonical_hash(body)
    result = ParseResult(ids_need_digest=True)
    named = [(tag, value) for tag, value in tags if tag]
    if not named:
        result.ignored.append(f"push {repository or '?'}: no updated tags")
    for position, (tag, value) in enumerate(named):
        result.pushes.append(
            make_push(
                request,
                source_format=FORMAT,
                event_id=event_id(FORMAT, native, position if len(named) > 1 else None),
                registry=host,
                repository=repository,
                tag=tag,
                digest=value if is_digest(value) else "",
                what=f"updated_tags[{position}]",
            )
        )
    return result
