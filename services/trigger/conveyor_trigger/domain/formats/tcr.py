"""Tencent Container Registry (TCR) triggers.

TCR (Enterprise edition) sends the Harbor 1.x shape: `{"type": "pushImage", "occur_at",
"operator", "event_data": {"resources": [{"digest", "tag", "resource_url"}],
"repository": {"namespace", "name", "repo_full_name"}}}` where `resource_url` starts
with the instance domain (`demo.tencentcloudcr.com/team/app:v1`). Other trigger
types (`deleteImage`, `pullImage`, `scanningCompleted`, chart events) are ignored.
"""

from __future__ import annotations

from typing import Any

from conveyor_trigger.domain.formats.base import ParseResult, WebhookRequest, obj
from conveyor_trigger.domain.formats.harbor import parse_harbor_like

FORMAT = "tcr"

PUSH_TYPES = frozenset({"pushImage", "PUSH_ARTIFACT"})


def parse(payload: Any, request: WebhookRequest) -> ParseResult:
    return parse_harbor_like(obj(payload, "the tcr payload"), request, FORMAT, PUSH_TYPES)
