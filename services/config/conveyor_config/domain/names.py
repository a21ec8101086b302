"""Identifiers: the prefixes of generated ids, request ids users give; names of enum values.

Ids themselves (validation, generation) are conveyor.aip.ids; tags are conveyor.tagfilter.is_valid_tag;
Kubernetes names are conveyor.names.kubernetes_name_violations.
"""

from __future__ import annotations

import re
from typing import Any

from conveyor.errors import FieldViolation, InvalidArgument

REQUEST_ID_MAX_CHARS = 128
# Generated ids are `prefix + lowercase ULID` (conveyor.aip.ids.new_id): a letter first, as an id must start.
PIPELINE_ID_PREFIX = "p"
RUN_ID_PREFIX = "r"

_REQUEST_ID = re.compile(r"^[!-~]+$")


def enum_names(enum_type: Any) -> list[str]:
    # Protobuf enum wrappers are not iterable; `.keys()` is their API.
    return [name for name in enum_type.keys() if not name.endswith("_UNSPECIFIED")]  # noqa: SIM118


def validate_request_id(request_id: str) -> None:
    if request_id and (len(request_id) > REQUEST_ID_MAX_CHARS or not _REQUEST_ID.match(request_id)):
        raise InvalidArgument.from_violations(
            [
                FieldViolation(
                    "request_id", f"at most {REQUEST_ID_MAX_CHARS} printable ASCII characters (a UUID is typical)"
                )
            ]
        )
