"""Opaque, tamper-evident keyset page tokens (AIP-158), one codec for every List method.

A token is `base64url(HMAC-SHA256(key, payload) || payload)` without padding, where the payload is
the JSON object `{"v": 1, "k": [cursor...], "q": fingerprint}`:

- `k`, the keyset cursor: the sort key of the last item returned (strings and integers);
- `q`, a fingerprint of what the request listed (collection, parent, filter, order): a token
  presented with another query is rejected instead of silently paging through the wrong list.

The signature makes a token unforgeable: a client cannot craft a cursor (and so cannot probe the
storage with values of its choosing) nor edit one it was given. Every replica behind one address
must share the signing key, or a page issued by one replica is rejected by the next; a key can be
rotated by putting the new key first and keeping the old one as a previous key for as long as
tokens signed with it may still be presented (tokens do not expire on their own).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import secrets
from collections.abc import Sequence
from typing import Any

from conveyor.errors import FieldViolation, InvalidArgument

MIN_KEY_BYTES = 32
# Longer than any token this codec issues; bounds the work spent on junk.
MAX_TOKEN_CHARS = 4096
_VERSION = 1
_MAC_BYTES = hashlib.sha256().digest_size
# Domain separation: a MAC made with the same key for another purpose never verifies as a page token.
_CONTEXT = b"conveyor.page_token.v1\x00"

INVALID_TOKEN_MESSAGE = "invalid page token; use the next_page_token of a previous response"
OTHER_QUERY_MESSAGE = (
    "the page token was issued for a different parent or filter; "
    "repeat the request's filter or start again without a page token"
)

CursorValue = str | int


def fingerprint(*parts: str) -> str:
    """The query a token is bound to: e.g. `fingerprint("runs", parent, canonical_filter, order_by)`.

    The parts are encoded as a JSON array, so ("a", "b") and ("a\\x1fb",) never collide.
    """
    encoded = json.dumps(list(parts), separators=(",", ":"), ensure_ascii=False).encode()
    return hashlib.sha256(encoded).hexdigest()[:32]


def _invalid(message: str = INVALID_TOKEN_MESSAGE) -> InvalidArgument:
    return InvalidArgument.from_violations([FieldViolation("page_token", message)])


class PageTokenCodec:
    """Signs and verifies page tokens with a server key shared by all replicas of a service.

    `key` signs new tokens; tokens signed with `key` or with any of `previous_keys` are accepted.
    Keys are at least MIN_KEY_BYTES bytes; ValueError otherwise.
    """

    def __init__(self, key: bytes, *, previous_keys: Sequence[bytes] = ()) -> None:
        for candidate in (key, *previous_keys):
            if len(candidate) < MIN_KEY_BYTES:
                raise ValueError(f"a page-token key must be at least {MIN_KEY_BYTES} bytes (got {len(candidate)})")
        self._key = key
        self._verify_keys = (key, *previous_keys)

    @classmethod
    def from_setting(cls, value: str) -> PageTokenCodec:
        """A codec from a setting value: one or more secrets separated by commas, the first one signing.

        Each secret is taken as its UTF-8 bytes and must be at least MIN_KEY_BYTES long, e.g. the
        output of `openssl rand -hex 32`. ValueError (never quoting a secret) when the value is unusable.
        """
        secrets_ = [part.strip() for part in value.split(",")]
        if not value.strip() or any(not part for part in secrets_):
            raise ValueError("the page-token key setting is empty or has an empty entry between commas")
        keys = [part.encode() for part in secrets_]
        for position, key in enumerate(keys, start=1):
            if len(key) < MIN_KEY_BYTES:
                raise ValueError(
                    f"page-token key #{position} is {len(key)} bytes; at least {MIN_KEY_BYTES} are required "
                    "(e.g. the output of `openssl rand -hex 32`)"
                )
        return cls(keys[0], previous_keys=keys[1:])

    @classmethod
    def ephemeral(cls) -> PageTokenCodec:
        """A codec with a random key: only for a single process (tests, a sandbox), as its tokens die with it."""
        return cls(secrets.token_bytes(MIN_KEY_BYTES))

    def _mac(self, key: bytes, payload: bytes) -> bytes:
        return hmac.new(key, _CONTEXT + payload, hashlib.sha256).digest()

    def encode(self, cursor: Sequence[CursorValue], query: str) -> str:
        """The token for the page after `cursor` of the list identified by `query` (see `fingerprint`)."""
        if any(isinstance(value, bool) or not isinstance(value, str | int) for value in cursor):
            raise TypeError("page-token cursor values are strings or integers")
        payload = json.dumps(
            {"v": _VERSION, "k": list(cursor), "q": query}, separators=(",", ":"), ensure_ascii=False
        ).encode()
        return base64.urlsafe_b64encode(self._mac(self._key, payload) + payload).decode("ascii").rstrip("=")

    def decode(self, token: str, query: str, cursor_types: Sequence[type[str] | type[int]]) -> list[Any]:
        """The cursor of a token this codec (or a replica sharing its key) issued for the same `query`.

        `cursor_types` is the expected type of each cursor value. Raises InvalidArgument with a
        field violation on `page_token` when the token is malformed, forged, edited, signed with
        another key, of another shape, or issued for another query.
        """
        if len(token) > MAX_TOKEN_CHARS:
            raise _invalid()
        try:
            raw = base64.b64decode(token + "=" * (-len(token) % 4), altchars=b"-_", validate=True)
        except (ValueError, binascii.Error):  # non-ASCII text is a ValueError too
            raise _invalid() from None
        mac, payload = raw[:_MAC_BYTES], raw[_MAC_BYTES:]
        if not payload or not any(hmac.compare_digest(mac, self._mac(key, payload)) for key in self._verify_keys):
            raise _invalid()
        try:
            content = json.loads(payload)
        except ValueError:  # pragma: no cover - only a signed payload gets here, and we wrote it as JSON
            raise _invalid() from None
        if not isinstance(content, dict) or content.get("v") != _VERSION or not isinstance(content.get("k"), list):
            raise _invalid()
        if content.get("q") != query:
            raise _invalid(OTHER_QUERY_MESSAGE)
        cursor: list[Any] = content["k"]
        if len(cursor) != len(cursor_types) or not all(
            isinstance(value, kind) and not isinstance(value, bool)
            for value, kind in zip(cursor, cursor_types, strict=True)
        ):
            raise _invalid()
        return cursor


def codec_from_setting(value: str | None) -> PageTokenCodec:
    """The codec for CONVEYOR_PAGE_TOKEN_KEY: its keys, or a random per-process key (logged) when unset."""
    if value:
        return PageTokenCodec.from_setting(value)
    logging.getLogger(__name__).warning(
        "CONVEYOR_PAGE_TOKEN_KEY is not set: page tokens are signed with a random key and fail on another "
        "replica or after a restart"
    )
    return PageTokenCodec.ephemeral()
