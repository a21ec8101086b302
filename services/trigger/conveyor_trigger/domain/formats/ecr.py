"""Amazon ECR events, delivered by an EventBridge rule to an API destination.

`{"version": "0", "id", "detail-type": "ECR Image Action", "source": "aws.ecr",
"account", "region", "time", "detail": {"action-type": "PUSH", "result": "SUCCESS",
"repository-name", "image-digest", "image-tag", "manifest-media-type"}}`. Only a
successful PUSH with a tag is a push; DELETE, failed actions, scans and replication
events are ignored. The host is `{account}.dkr.ecr.{region}.amazonaws.com`
(`.amazonaws.com.cn` in China regions), unless the webhook's `registry` is set.
"""

from __future__ import annotations

from typing import Any

from conveyor_trigger.domain.formats.base import (
    ParseResult,
    PayloadError,
    WebhookRequest,
    event_id,
    make_push,
    obj,
    parse_time,
    text,
)

FORMAT = "ecr"

IMAGE_ACTION = "ECR Image Action"


def registry_host(account: str, region: str) -> str:
    if not account or not region:
        return ""
    suffix = "amazonaws.com.cn" if region.startswith("cn-") else "amazonaws.com"
    return f"{account}.dkr.ecr.{region}.{suffix}"


def parse(payload: Any, request: WebhookRequest) -> ParseResult:
    event = obj(payload, "the ecr payload")
    if "detail-type" not in event or "detail" not in event:
        raise PayloadError("unknown_shape", 'not an EventBridge event: expected "detail-type" and "detail"')
    detail_type = text(event.get("detail-type"))
    if detail_type != IMAGE_ACTION:
        return ParseResult(ignored=[f"{detail_type or '?'}: not an image action"])
    detail = obj(event.get("detail"), '"detail"')
    action, result = text(detail.get("action-type")).upper(), text(detail.get("result")).upper()
    repository, tag, digest = (
        text(detail.get("repository-name")),
        text(detail.get("image-tag")),
        text(detail.get("image-digest")),
    )
    label = f"{action or '?'} {repository or '?'}:{tag or digest or '?'}"
    if action != "PUSH":
        return ParseResult(ignored=[f"{label}: not a push"])
    if result != "SUCCESS":
        return ParseResult(ignored=[f"{label}: result {result or '?'}, not SUCCESS"])
    if not tag:
        return ParseResult(ignored=[f"PUSH {repository or '?'}@{digest or '?'}: untagged image"])
    native = text(event.get("id"))
    if not native:
        raise PayloadError("unknown_shape", 'the EventBridge event has no "id"')
    host = request.default_registry or registry_host(text(event.get("account")), text(event.get("region")))
    push = make_push(
        request,
        source_format=FORMAT,
        event_id=event_id(FORMAT, native),
        registry=host,
        repository=repository,
        tag=tag,
        digest=digest,
        media_type=text(detail.get("manifest-media-type")),
        pushed_at=parse_time(event.get("time")),
    )
    return ParseResult(pushes=[push])
