"""GitHub Packages (ghcr.io) `registry_package` and `package` webhook events.

The event name is in `X-GitHub-Event` and the delivery id in `X-GitHub-Delivery`
(reused by GitHub's "redeliver"). A container push is `action: "published"` (or
`"updated"`) with the tag and digest in
`{registry_package|package}.package_version.container_metadata.tag`. Pings, other
events, other ecosystems (npm, maven...) and untagged versions are ignored. The host
comes from `package_version.package_url` or `registry.url` (`https://ghcr.io/owner`);
GitHub owners may be mixed case but image paths on ghcr.io are lower case.
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
    split_reference,
    text,
)

FORMAT = "github"

PACKAGE_EVENTS = {"registry_package": "registry_package", "package": "package"}
PUSH_ACTIONS = frozenset({"published", "updated"})
CONTAINER_TYPES = frozenset({"container", "docker"})


def parse(payload: Any, request: WebhookRequest) -> ParseResult:
    body = obj(payload, "the github payload")
    event = request.header("x-github-event")
    if not event:
        # Without the header, recognise the body by its package object.
        event = next((name for name in PACKAGE_EVENTS if name in body), "")
        if not event:
            raise PayloadError("unknown_shape", "not a github package event: no X-GitHub-Event header")
    if event not in PACKAGE_EVENTS:
        return ParseResult(ignored=[f"github {event} event: not a package event"])
    action = text(body.get("action"))
    package = obj(body.get(PACKAGE_EVENTS[event]), f'"{PACKAGE_EVENTS[event]}"')
    package_type = (text(package.get("package_type")) or text(package.get("ecosystem"))).lower()
    name, namespace = text(package.get("name")), text(package.get("namespace"))
    label = f"{event} {action or '?'} {namespace or '?'}/{name or '?'}"
    if package_type not in CONTAINER_TYPES:
        return ParseResult(ignored=[f"{label}: {package_type or 'unknown'} package, not a container"])
    if action not in PUSH_ACTIONS:
        return ParseResult(ignored=[f"{label}: not a publish"])
    version = obj(package.get("package_version") or {}, '"package_version"')
    tag_info = dig(version, "container_metadata", "tag")
    tag = text(tag_info.get("name")) if isinstance(tag_info, dict) else text(tag_info)
    digest = text(tag_info.get("digest")) if isinstance(tag_info, dict) else ""
    digest = digest or text(version.get("version")) or text(version.get("name"))
    if not tag:
        return ParseResult(ignored=[f"{label}@{digest or '?'}: untagged version"])
    package_url = text(version.get("package_url"))
    host, url_repository, _, _ = split_reference(package_url) if package_url else ("", "", "", "")
    host = host or refs.split_host(text(dig(package, "registry", "url")) + "/")[0]
    owner = namespace or text(dig(package, "owner", "login"))
    repository = url_repository or (f"{owner}/{name}" if owner and name else name)
    delivery = request.header("x-github-delivery") or canonical_hash(body)
    push = make_push(
        request,
        source_format=FORMAT,
        event_id=event_id(FORMAT, delivery),
        registry=host,
        repository=repository.lower(),
        tag=tag,
        digest=digest,
        pushed_at=parse_time(version.get("updated_at") or version.get("created_at")),
        actor=text(dig(body, "sender", "login")),
    )
    return ParseResult(pushes=[push])
