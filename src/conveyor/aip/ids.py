"""Resource ids (AIP-122): RFC-1034 labels, and generated ones that are such labels too.

A valid id is 1-63 characters of lowercase letters, digits and '-', starting with a letter and
ending with a letter or digit (so it also fits a DNS label or a Kubernetes name).

Generated ids are `prefix + lowercase ULID`: a bare ULID starts with a digit, which the
validator rejects. With one prefix per kind of resource the ids still sort by creation time
(the ULID's 48-bit millisecond timestamp leads, and Crockford's alphabet sorts in ASCII order).
"""

from __future__ import annotations

import hashlib
import re

from ulid import ULID

from conveyor.errors import FieldViolation, InvalidArgument

ID_MAX_CHARS = 63
ULID_CHARS = 26
# Used with fullmatch: `$` would also accept a trailing newline.
ID_PATTERN = re.compile(r"[a-z]([a-z0-9-]{0,61}[a-z0-9])?")
_PREFIX = re.compile(rf"[a-z][a-z0-9-]{{0,{ID_MAX_CHARS - ULID_CHARS - 1}}}")


def is_valid_id(value: str) -> bool:
    return ID_PATTERN.fullmatch(value) is not None


def validate_id(value: str, field: str = "pipeline_id") -> None:
    """InvalidArgument with a field violation on `field` unless `value` is a valid id."""
    if not is_valid_id(value):
        raise InvalidArgument.from_violations(
            [
                FieldViolation(
                    field,
                    f"{value!r} is not a valid id: 1-63 lowercase letters, digits and hyphens, "
                    "starting with a letter and not ending with a hyphen",
                )
            ]
        )


def _check_prefix(prefix: str) -> str:
    if _PREFIX.fullmatch(prefix) is None:
        raise ValueError(
            f"an id prefix is a lowercase letter followed by at most {ID_MAX_CHARS - ULID_CHARS - 1} "
            f"lowercase letters, digits or '-' (got {prefix!r})"
        )
    return prefix


def new_id(prefix: str) -> str:
    """A new time-ordered id: `prefix` (e.g. "p" for pipelines) and a lowercase ULID."""
    return _check_prefix(prefix) + str(ULID()).lower()


def derived_id(prefix: str, timestamp_ms: int, *parts: str) -> str:
    """Like `new_id`, but the ULID's time is `timestamp_ms` and its randomness is derived from `parts`.

    Deterministic: the same inputs give the same id (a redelivered event yields the same run),
    and ids still sort by time.
    """
    digest = hashlib.sha256("\x1f".join(parts).encode()).digest()[:10]
    return _check_prefix(prefix) + str(ULID.from_bytes(timestamp_ms.to_bytes(6, "big") + digest)).lower()
