"""What every webhook parser shares: the request it reads, its result, its errors, and helpers.

A parser is a pure function `(payload, request) -> ParseResult`: it never does I/O, never
raises anything but `PayloadError` on purpose (the receiver still treats any other
exception as an unknown shape), and returns the registry's pushes normalised to
`ImagePushed`. Events that are not pushes of a tagged image (pulls, deletes, blob
uploads, digest-only child manifests, pings, scans...) are *ignored*, not errors: a
registry must not retry them forever.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from conveyor import refs
from conveyor.v1 import bus_pb2, pipeline_pb2


class PayloadError(ValueError):
    """The request cannot be turned into pushes; `reason` is a short metric label."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class WebhookRequest:
    """One webhook delivery as the parsers see it."""

    body: bytes
    # Lower-cased header names.
    headers: Mapping[str, str] = field(default_factory=dict)
    query: Mapping[str, str] = field(default_factory=dict)
    # Host to use when the payload carries none (`registry` query parameter, else the source's).
    default_registry: str | None = None
    origin: int = pipeline_pb2.IMAGE_ORIGIN_LOCAL_PUSH
    received_at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))

    def header(self, name: str) -> str:
        return self.headers.get(name.lower(), "").strip()


@dataclass
class ParseResult:
    pushes: list[bus_pb2.ImagePushed] = field(default_factory=list)
    # One human-readable line per event that was deliberately not turned into a push.
    ignored: list[str] = field(default_factory=list)
    # The event ids are the document's hash and the document names neither the image nor the time (Quay):
    # a re-push of a tag sends the same document, so a push without a digest needs one in its id.
    ids_need_digest: bool = False

    def extend(self, other: ParseResult) -> None:
        self.pushes.extend(other.pushes)
        self.ignored.extend(other.ignored)
        self.ids_need_digest = self.ids_need_digest or other.ids_need_digest


Parser = Callable[[Any, WebhookRequest], ParseResult]


# --- reading untrusted JSON ---------------------------------------------------------------


def obj(value: Any, what: str) -> dict[str, Any]:
    """`value` as a JSON object, or a PayloadError naming `what`."""
    if not isinstance(value, dict):
        raise PayloadError("unknown_shape", f"{what} must be a JSON object")
    return value


def lst(value: Any, what: str) -> list[Any]:
    if not isinstance(value, list):
        raise PayloadError("unknown_shape", f"{what} must be a JSON array")
    return value


def text(value: Any) -> str:
    """A JSON scalar as a stripped string; anything else (objects, null) as ''."""
    if isinstance(value, bool) or value is None:
        return ""
    if isinstance(value, (str, int, float)):
        return str(value).strip()
    return ""


def dig(value: Any, *path: str) -> Any:
    """`value[path[0]][path[1]]...`, or None as soon as a step is missing or not an object."""
    for key in path:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def canonical_hash(payload: Any) -> str:
    """A stable hash of a JSON payload: the same document hashes the same however it is formatted."""
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=True)
    return hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def event_id(source_format: str, native_id: str, index: int | None = None) -> str:
    """`{format}:{registry's id}` (+ `#{n}` when one delivery carries several pushes)."""
    base = f"{source_format}:{native_id}"
    return base if index is None else f"{base}#{index}"


# --- times ----------------------------------------------------------------------------------


def parse_time(value: Any, *, naive_offset: dt.timedelta = dt.timedelta(0)) -> dt.datetime | None:
    """RFC 3339 strings (any fraction length), unix seconds/milliseconds, or None when unreadable."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        if isinstance(value, (int, float)):
            seconds = float(value)
            if seconds > 1e11:  # milliseconds
                seconds /= 1000.0
            return dt.datetime.fromtimestamp(seconds, dt.UTC)
        if not isinstance(value, str) or not value.strip():
            return None
        raw = value.strip().replace(" ", "T", 1) if " " in value.strip()[:11] else value.strip()
        if raw.endswith(("Z", "z")):
            raw = raw[:-1] + "+00:00"
        # Python wants at most 6 fractional digits; registries (Go) send up to 9.
        if "." in raw:
            head, _, rest = raw.partition(".")
            digits = ""
            while rest and rest[0].isdigit():
                digits, rest = digits + rest[0], rest[1:]
            raw = f"{head}.{digits[:6].ljust(6, '0')}{rest}"
        parsed = dt.datetime.fromisoformat(raw)
    except (ValueError, OverflowError, OSError):
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.timezone(naive_offset))
    return parsed.astimezone(dt.UTC)


def timestamp(value: dt.datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(value)
    return stamp


# --- references -----------------------------------------------------------------------------


def split_reference(reference: str) -> tuple[str, str, str, str]:
    """`host/repo[:tag][@digest]` -> (host, repository, tag, digest); host '' when absent."""
    host, rest = refs.split_host(reference)
    rest, _, digest = rest.partition("@")
    parent, slash, last = rest.rpartition("/")
    name, _, tag = last.partition(":")
    return host, f"{parent}{slash}{name}", tag, digest


def is_digest(value: str) -> bool:
    return bool(value) and refs.is_valid_digest(value)


def make_push(
    request: WebhookRequest,
    *,
    source_format: str,
    event_id: str,
    registry: str,
    repository: str,
    tag: str,
    digest: str = "",
    media_type: str = "",
    pushed_at: dt.datetime | None = None,
    actor: str = "",
    what: str = "push",
) -> bus_pb2.ImagePushed:
    """Validate and normalise one push; a missing or invalid host/repository/tag is a PayloadError.

    Every parser's pushes come through here: the one place their host and repository are
    normalised (`conveyor.refs.normalize_repo`). `registry` is the host the payload carries
    ('' when none); the request's default registry (query parameter or source configuration)
    fills in when it is empty.
    """
    given = registry.strip() or (request.default_registry or "").strip()
    if not given:
        raise PayloadError(
            "missing_registry",
            f"{what}: the {source_format} payload carries no registry host; add ?registry=HOST to the "
            "webhook URL or set `registry` on the webhook source",
        )
    host, repository = refs.normalize_repo(given, repository)
    if not refs.is_valid_registry(host):
        raise PayloadError("invalid_reference", f"{what}: {host!r} is not a valid registry host")
    if not repository:
        raise PayloadError("missing_repository", f"{what}: the {source_format} payload carries no repository name")
    if not refs.is_valid_repository(repository):
        raise PayloadError(
            "invalid_reference",
            f"{what}: {repository!r} is not a valid repository path (lowercase letters, digits, separators)",
        )
    if not refs.is_valid_tag(tag):
        raise PayloadError("invalid_reference", f"{what}: {tag!r} is not a valid tag")
    if digest and not refs.is_valid_digest(digest):
        digest = ""  # an unreadable digest is dropped (resolved later), not fatal
    push = bus_pb2.ImagePushed(
        event_id=event_id,
        registry=host,
        repository=repository,
        tag=tag,
        digest=digest,
        media_type=media_type,
        origin=request.origin,  # type: ignore[arg-type]
        actor=actor[:200],
        source_format=source_format,
    )
    push.pushed_at.CopyFrom(timestamp(pushed_at or request.received_at))
    return push
