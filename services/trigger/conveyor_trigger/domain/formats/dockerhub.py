"""Docker Hub repository webhooks.

`{"callback_url", "push_data": {"pushed_at", "pusher", "tag"}, "repository": {"repo_name",
"namespace", "name", ...}}`. Docker Hub only sends pushes; there is no digest (it is
resolved before matching when a registry client is configured) and no delivery id, so
the document's hash identifies a retry. The registry is always Docker Hub (`docker.io`).
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
    make_push,
    obj,
    parse_time,
    text,
)

FORMAT = "dockerhub"


def parse(payload: Any, request: WebhookRequest) -> ParseResult:
    body = obj(payload, "the dockerhub payload")
    if "push_data" not in body or "repository" not in body:
        raise PayloadError("unknown_shape", 'not a dockerhub payload: expected "push_data" and "repository"')
    push_data = obj(body.get("push_data"), '"push_data"')
    repository = obj(body.get("repository"), '"repository"')
    repo_name = text(repository.get("repo_name"))
    if not repo_name:
        namespace, name = text(repository.get("namespace")), text(repository.get("name"))
        repo_name = f"{namespace}/{name}" if namespace and name else name
    tag = text(push_data.get("tag"))
    if not tag:
        return ParseResult(ignored=[f"push {repo_name or '?'}: no tag"])
    push = make_push(
        request,
        source_format=FORMAT,
        event_id=event_id(FORMAT, canonical_hash(body)),
        registry=refs.DOCKER_HUB,
        repository=repo_name,
        tag=tag,
        pushed_at=parse_time(push_data.get("pushed_at")),
        actor=text(push_data.get("pusher")) or text(dig(repository, "owner")),
    )
    return ParseResult(pushes=[push])
