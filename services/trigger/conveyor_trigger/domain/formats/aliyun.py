"""Alibaba Cloud Container Registry (ACR) webhooks.

`{"push_data": {"digest", "pushed_at": "YYYY-MM-DD HH:MM:SS", "tag"}, "repository":
{"namespace", "name", "repo_full_name", "region", ...}}`. ACR only notifies pushes.

The payload names a region, not a host: the host is the webhook URL's `registry` query
parameter or the source's `registry` (needed for Enterprise Edition instances, e.g.
`myinstance-registry.cn-hangzhou.cr.aliyuncs.com`), else the Personal Edition host
`registry.{region}.aliyuncs.com`. Times are naive China Standard Time (UTC+8), the
time zone ACR reports in.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from conveyor_trigger.domain.formats.base import (
    ParseResult,
    PayloadError,
    WebhookRequest,
    canonical_hash,
    event_id,
    make_push,
    obj,
    parse_time,
    text,
)

FORMAT = "aliyun"

ACR_TIME_OFFSET = dt.timedelta(hours=8)


def parse(payload: Any, request: WebhookRequest) -> ParseResult:
    body = obj(payload, "the aliyun payload")
    if "push_data" not in body or "repository" not in body:
        raise PayloadError("unknown_shape", 'not an aliyun payload: expected "push_data" and "repository"')
    push_data = obj(body.get("push_data"), '"push_data"')
    repository = obj(body.get("repository"), '"repository"')
    full_name = text(repository.get("repo_full_name"))
    if not full_name:
        namespace, name = text(repository.get("namespace")), text(repository.get("name"))
        full_name = f"{namespace}/{name}" if namespace and name else name
    tag = text(push_data.get("tag"))
    if not tag:
        return ParseResult(ignored=[f"push {full_name or '?'}: no tag"])
    region = text(repository.get("region"))
    host = request.default_registry or (f"registry.{region}.aliyuncs.com" if region else "")
    push = make_push(
        request,
        source_format=FORMAT,
        event_id=event_id(FORMAT, canonical_hash(body)),
        registry=host,
        repository=full_name,
        tag=tag,
        digest=text(push_data.get("digest")),
        pushed_at=parse_time(push_data.get("pushed_at"), naive_offset=ACR_TIME_OFFSET),
    )
    return ParseResult(pushes=[push])
