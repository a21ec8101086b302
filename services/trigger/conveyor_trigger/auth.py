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

Sources file::

    sources:
      - name: harbor-prod
        auth: bearer                 # bearer | header | query | github-hmac | none
        token_env: HARBOR_WEBHOOK_TOKEN   # or `token: ...` or `token_file: /run/secrets/...`
        formats: [harbor]            # optional: only for these formats (default: all)
        registry: harbor.example.com # optional: host for payloads that carry none
        origin: local_push           # optional: local_push (default) | platform_build
      - name: ecr
        auth: header
        header: X-Api-Key
        token_env: ECR_WEBHOOK_TOKEN
        formats: [ecr]

Safe default: with no source configured every webhook is refused with 401 and a message
saying how to configure one, unless CONVEYOR_WEBHOOK_ALLOW_UNAUTHENTICATED=true (for a
trusted network or local trials), in which case requests without valid credentials are
accepted as the anonymous source. `auth: none` in the file is the same, per source.
"""

from __future__ import annotations

import hashlib
import hmac
import pathlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml

from conveyor import refs
from conveyor.settings import SettingsError
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


# --- configuration --------------------------------------------------------------------------


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


def load_sources_file(
    path: pathlib.Path, environ: Mapping[str, str], known_formats: Sequence[str]
) -> tuple[Source, ...]:
    """Read and validate the sources file; raises SettingsError listing every problem."""
    try:
        document = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise SettingsError(f"CONVEYOR_WEBHOOK_SOURCES_FILE={path}: cannot read: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise SettingsError(f"CONVEYOR_WEBHOOK_SOURCES_FILE={path}: not valid YAML: {exc}") from None
    return parse_sources(document, environ, known_formats, where=str(path))


def parse_sources(
    document: Any, environ: Mapping[str, str], known_formats: Sequence[str], *, where: str = "sources"
) -> tuple[Source, ...]:
    problems: list[str] = []
    entries = document.get("sources") if isinstance(document, dict) else None
    if not isinstance(entries, list):
        raise SettingsError(f"{where}: expected a mapping with a `sources` list")
    sources: list[Source] = []
    names: set[str] = set()
    for index, entry in enumerate(entries):
        label = f"{where}: sources[{index}]"
        if not isinstance(entry, dict):
            problems.append(f"{label}: expected a mapping")
            continue
        name = str(entry.get("name") or f"source-{index}")
        label = f"{where}: source {name!r}"
        if name in names:
            problems.append(f"{label}: duplicate name")
        names.add(name)
        unknown = set(entry) - {
            "name",
            "auth",
            "token",
            "token_env",
            "token_file",
            "header",
            "formats",
            "registry",
            "origin",
        }
        if unknown:
            problems.append(f"{label}: unknown keys {', '.join(sorted(map(str, unknown)))}")
        kind = str(entry.get("auth") or "")
        if kind not in METHODS:
            problems.append(f"{label}: auth must be one of {', '.join(METHODS)}")
            continue
        secret = b""
        if kind != "none":
            secret = _secret(entry, environ, label, problems)
        header = str(entry.get("header") or DEFAULT_TOKEN_HEADER)
        formats: frozenset[str] | None = None
        if entry.get("formats") is not None:
            raw_formats = entry["formats"]
            if not isinstance(raw_formats, list) or not raw_formats:
                problems.append(f"{label}: formats must be a non-empty list")
            else:
                formats = frozenset(str(item) for item in raw_formats)
                for item in sorted(formats - set(known_formats)):
                    problems.append(f"{label}: unknown format {item!r} (known: {', '.join(sorted(known_formats))})")
        registry = entry.get("registry")
        if registry is not None:
            registry = refs.normalize_registry(str(registry))
            if not refs.is_valid_registry(registry):
                problems.append(f"{label}: registry {registry!r} is not a valid host[:port]")
        origin_name = str(entry.get("origin") or "local_push").lower()
        if origin_name not in ORIGINS:
            problems.append(f"{label}: origin must be one of {', '.join(ORIGINS)}")
            origin_name = "local_push"
        sources.append(
            Source(
                name=name,
                methods=(AuthMethod(kind, secret, header),),
                formats=formats,
                registry=registry,
                origin=ORIGINS[origin_name],
            )
        )
    if problems:
        raise SettingsError("invalid webhook sources:\n  " + "\n  ".join(problems))
    return tuple(sources)


def _secret(entry: dict[str, Any], environ: Mapping[str, str], label: str, problems: list[str]) -> bytes:
    given = [key for key in ("token", "token_env", "token_file") if entry.get(key)]
    if len(given) != 1:
        problems.append(f"{label}: give exactly one of token, token_env, token_file")
        return b""
    key = given[0]
    value = str(entry[key])
    if key == "token":
        secret = value
    elif key == "token_env":
        secret = environ.get(value, "")
        if not secret.strip():
            problems.append(f"{label}: environment variable {value} (token_env) is not set")
            return b""
    else:
        try:
            secret = pathlib.Path(value).expanduser().read_text()
        except OSError as exc:
            problems.append(f"{label}: cannot read token_file {value}: {exc.strerror}")
            return b""
    secret = secret.strip()
    if len(secret) < 16:
        problems.append(f"{label}: the token is too short (at least 16 characters)")
    return secret.encode()
