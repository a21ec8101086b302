"""Who may post webhooks: per-source credentials, checked in constant time.

A *source* is one registry (or group of registries) sending webhooks, with the way it
proves itself and optional defaults for what its payloads leave out. Sources come from
a YAML file (CONVEYOR_WEBHOOK_SOURCES_FILE) and/or one shared token
(CONVEYOR_WEBHOOK_TOKEN) accepted by every method, so any registry can use it:

- `bearer`: `Authorization: Bearer <token>` (the bare token is accepted too, because
  Harbor's "Auth Header" field is sent verbatim as the Authorization header);
- `header`: a custom header, `X-Conveyor-Token: <token>` unless `header` names another
  (e.g. an EventBridge API-key connection);
- `query`: `?token=<token>` in the webhook URL, for registries that cannot set headers
  (Docker Hub, Alibaba ACR, Quay, Pub/Sub push);
- `github-hmac`: GitHub's `X-Hub-Signature-256: sha256=HMAC-SHA256(secret, body)`.

The sources file's format is documented in `conveyor_trigger.adapters.webhook_sources`.

Safe default: with no source configured every webhook is refused with 401 and a message
saying how to configure one, unless CONVEYOR_WEBHOOK_ALLOW_UNAUTHENTICATED=true (for a
trusted network or local trials), in which case requests without valid credentials are
accepted as the anonymous source. `auth: none` in the file is the same, per source.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field

from conveyor.v1 import pipeline_pb2

DEFAULT_TOKEN_HEADER = "X-Conveyor-Token"
TOKEN_QUERY_PARAMETER = "token"
GITHUB_SIGNATURE_HEADER = "X-Hub-Signature-256"

METHODS = ("bearer", "header", "query", "github-hmac", "none")
ORIGINS = {
    "local_push": pipeline_pb2.IMAGE_ORIGIN_LOCAL_PUSH,
    "platform_build": pipeline_pb2.IMAGE_ORIGIN_PLATFORM_BUILD,
}


class Unauthorized(Exception):
    """Missing or wrong credentials; the message is safe to return to the client."""


@dataclass(frozen=True)
class AuthMethod:
    kind: str
    secret: bytes = field(repr=False, default=b"")
    header: str = DEFAULT_TOKEN_HEADER

    def verify(self, headers: Mapping[str, str], query: Mapping[str, str], body: bytes) -> bool:
        """True when the request carries this method's credential (constant-time compare)."""
        if self.kind == "none":
            return True
        if self.kind == "bearer":
            value = headers.get("authorization", "").strip()
            scheme, _, token = value.partition(" ")
            presented = token.strip() if scheme.lower() == "bearer" else value
            return _same(presented, self.secret)
        if self.kind == "header":
            return _same(headers.get(self.header.lower(), "").strip(), self.secret)
        if self.kind == "query":
            return _same(query.get(TOKEN_QUERY_PARAMETER, ""), self.secret)
        if self.kind == "github-hmac":
            signature = headers.get(GITHUB_SIGNATURE_HEADER.lower(), "").strip()
            expected = "sha256=" + hmac.new(self.secret, body, hashlib.sha256).hexdigest()
            return hmac.compare_digest(signature.encode(), expected.encode())
        return False

    def presented(self, headers: Mapping[str, str], query: Mapping[str, str]) -> bool:
        """Whether the request carries a credential of this kind at all (for the error message)."""
        if self.kind == "bearer":
            return "authorization" in headers
        if self.kind == "header":
            return self.header.lower() in headers
        if self.kind == "query":
            return TOKEN_QUERY_PARAMETER in query
        if self.kind == "github-hmac":
            return GITHUB_SIGNATURE_HEADER.lower() in headers
        return False


def _same(presented: str, secret: bytes) -> bool:
    # Never accept an empty credential, even against an (invalid) empty secret.
    if not presented or not secret:
        return False
    return hmac.compare_digest(presented.encode(), secret)


@dataclass(frozen=True)
class Source:
    name: str
    methods: tuple[AuthMethod, ...]
    formats: frozenset[str] | None = None
    registry: str | None = None
    origin: int = pipeline_pb2.IMAGE_ORIGIN_LOCAL_PUSH

    def serves(self, format_name: str) -> bool:
        return self.formats is None or format_name in self.formats


ANONYMOUS = Source(name="anonymous", methods=(AuthMethod("none"),))


@dataclass(frozen=True)
class Authenticator:
    sources: tuple[Source, ...]
    allow_unauthenticated: bool = False
    # Registry host for the anonymous source (CONVEYOR_WEBHOOK_DEFAULT_REGISTRY).
    default_registry: str | None = None

    @property
    def configured(self) -> bool:
        return bool(self.sources) or self.allow_unauthenticated

    def authenticate(
        self, format_name: str, headers: Mapping[str, str], query: Mapping[str, str], body: bytes
    ) -> Source:
        """The source this request proves to be, or Unauthorized. `headers` keys are lower case."""
        candidates = [source for source in self.sources if source.serves(format_name)]
        for source in candidates:
            if any(method.verify(headers, query, body) for method in source.methods):
                return source
        if self.allow_unauthenticated:
            return Source(name=ANONYMOUS.name, methods=ANONYMOUS.methods, registry=self.default_registry)
        if not self.sources:
            raise Unauthorized(
                "webhook authentication is not configured on this trigger: set CONVEYOR_WEBHOOK_TOKEN or "
                "CONVEYOR_WEBHOOK_SOURCES_FILE (or CONVEYOR_WEBHOOK_ALLOW_UNAUTHENTICATED=true on a trusted network)"
            )
        if not candidates:
            raise Unauthorized(f"no webhook source is configured for the {format_name!r} format")
        if any(method.presented(headers, query) for source in candidates for method in source.methods):
            raise Unauthorized("invalid webhook credentials")
        raise Unauthorized(
            "missing webhook credentials: send Authorization: Bearer <token>, a token header, "
            "a ?token= query parameter or a GitHub X-Hub-Signature-256, as configured for this source"
        )


def shared_token_source(token: str, *, registry: str | None = None) -> Source:
    """CONVEYOR_WEBHOOK_TOKEN: one secret accepted by every method, for every format."""
    secret = token.encode()
    return Source(
        name="shared-token",
        methods=(
            AuthMethod("bearer", secret),
            AuthMethod("header", secret, DEFAULT_TOKEN_HEADER),
            AuthMethod("query", secret),
            AuthMethod("github-hmac", secret),
        ),
        registry=registry,
    )
