"""Registry webhook formats: one pure parser per registry, all normalising to `ImagePushed`.

`parse_webhook(format, request)` decodes the JSON body and dispatches to the parser of
`format` (the `{format}` of `POST /webhooks/{format}`).
"""

from __future__ import annotations

import json
import re

from conveyor_trigger.domain.formats import aliyun, azure, distribution, dockerhub, ecr, gar, github, harbor, quay, tcr
from conveyor_trigger.domain.formats.base import Parser, ParseResult, PayloadError, WebhookRequest

FORMATS: dict[str, Parser] = {
    distribution.FORMAT: distribution.parse,
    harbor.FORMAT: harbor.parse,
    tcr.FORMAT: tcr.parse,
    dockerhub.FORMAT: dockerhub.parse,
    aliyun.FORMAT: aliyun.parse,
    quay.FORMAT: quay.parse,
    github.FORMAT: github.parse,
    azure.FORMAT: azure.parse,
    ecr.FORMAT: ecr.parse,
    gar.FORMAT: gar.parse,
}

__all__ = ["FORMATS", "ParseResult", "PayloadError", "UnknownFormat", "WebhookRequest", "parse_webhook"]


class UnknownFormat(LookupError):
    def __init__(self, name: str) -> None:
        super().__init__(f"unknown webhook format {name!r}; known formats: {', '.join(sorted(FORMATS))}")


def decode_json(body: bytes) -> object:
    if not body.strip():
        raise PayloadError("malformed_json", "the request body is empty; expected a JSON document")
    try:
        return json.loads(body)
    except RecursionError:
        raise PayloadError("malformed_json", "the JSON document is nested too deeply") from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise PayloadError("malformed_json", f"the request body is not valid JSON: {exc}") from None


# Tags that name a signature/attestation/SBOM or an OCI referrers index of an image (cosign,
# notation, the OCI 1.1 tag-schema fallback): pushed as tagged manifests, never deployable.
ARTIFACT_TAG = re.compile(r"^sha256-[0-9a-f]{64}(\.[a-z0-9]+)?$")


def parse_webhook(format_name: str, request: WebhookRequest) -> ParseResult:
    """Parse one delivery; raises UnknownFormat or PayloadError (any other exception is a parser bug)."""
    parser = FORMATS.get(format_name)
    if parser is None:
        raise UnknownFormat(format_name)
    result = parser(decode_json(request.body), request)
    images = []
    for push in result.pushes:
        if ARTIFACT_TAG.match(push.tag):
            result.ignored.append(f"push {push.repository}:{push.tag}: signature/attestation artifact, not an image")
        else:
            images.append(push)
    result.pushes = images
    return result
