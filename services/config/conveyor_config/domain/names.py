"""Identifiers users give: tags, Kubernetes names, request ids; names of enum values."""

from __future__ import annotations

import re
from typing import Any

from conveyor import refs
from conveyor.errors import FieldViolation, InvalidArgument

REQUEST_ID_MAX_CHARS = 128

# Kubernetes DNS-1123 label: namespaces, and (as Conveyor requires) workload and container names.
_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_REQUEST_ID = re.compile(r"^[!-~]+$")


def enum_names(enum_type: Any) -> list[str]:
    # Protobuf enum wrappers are not iterable; `.keys()` is their API.
    return [name for name in enum_type.keys() if not name.endswith("_UNSPECIFIED")]  # noqa: SIM118


def is_valid_tag(tag: str) -> bool:
    # The distribution grammar's \w is ASCII only (conveyor.refs' pattern also admits Unicode letters).
    return tag.isascii() and refs.is_valid_tag(tag)


def is_dns1123_label(value: str) -> bool:
    return len(value) <= 63 and bool(_DNS1123_LABEL.match(value))


def validate_request_id(request_id: str) -> None:
    if request_id and (len(request_id) > REQUEST_ID_MAX_CHARS or not _REQUEST_ID.match(request_id)):
        raise InvalidArgument.from_violations(
            [
                FieldViolation(
                    "request_id", f"at most {REQUEST_ID_MAX_CHARS} printable ASCII characters (a UUID is typical)"
                )
            ]
        )
