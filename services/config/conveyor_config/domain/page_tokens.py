"""Page sizes and opaque keyset page tokens (AIP-158) bound to the request they were issued for."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Sequence
from typing import Any

from conveyor.errors import FieldViolation, InvalidArgument

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000


def page_size(requested: int) -> int:
    if requested < 0:
        raise InvalidArgument.from_violations([FieldViolation("page_size", "must not be negative")])
    if requested == 0:
        return DEFAULT_PAGE_SIZE
    return min(requested, MAX_PAGE_SIZE)


def page_binding(*parts: str) -> str:
    """What a page token is bound to (collection, parent, filter); a different request rejects it."""
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:16]


def encode_page_token(key: Sequence[str | int], binding: str) -> str:
    payload = json.dumps({"v": 1, "k": list(key), "b": binding}, separators=(",", ":"), ensure_ascii=False)
    return base64.urlsafe_b64encode(payload.encode()).decode().rstrip("=")


def decode_page_token(token: str, binding: str, key_types: Sequence[type]) -> list[Any]:
    """The keyset position of a token issued by `encode_page_token` for the same binding."""
    invalid = InvalidArgument.from_violations(
        [FieldViolation("page_token", "invalid page token; use the next_page_token of a previous response")]
    )
    try:
        padded = token + "=" * (-len(token) % 4)
        payload = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
    except (ValueError, UnicodeError, binascii.Error):
        raise invalid from None
    if not isinstance(payload, dict) or payload.get("v") != 1 or not isinstance(payload.get("k"), list):
        raise invalid
    key: list[Any] = payload["k"]
    if len(key) != len(key_types) or not all(
        isinstance(value, kind) and not isinstance(value, bool) for value, kind in zip(key, key_types, strict=True)
    ):
        raise invalid
    if payload.get("b") != binding:
        raise InvalidArgument.from_violations(
            [
                FieldViolation(
                    "page_token",
                    "the page token was issued for a different parent or filter; "
                    "repeat the request's filter or start again without a page token",
                )
            ]
        )
    return key
