"""AIP resource names and ids: `pipelines/{pipeline}`, `pipelines/{pipeline}/runs/{run}`."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from ulid import ULID

from conveyor.errors import FieldViolation, InvalidArgument

# AIP-122 style user-settable ids.
ID_PATTERN = re.compile(r"^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$")
# Generated ids: lowercase ULIDs (time-ordered).
_ULID_PATTERN = re.compile(r"^[0-9a-hjkmnp-tv-z]{26}$")
_ANY_ID = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")

ALL_PIPELINES = "-"


def new_id() -> str:
    """A new time-ordered id (lowercase ULID)."""
    return str(ULID()).lower()


def derived_id(timestamp_ms: int, *parts: str) -> str:
    """A ULID whose time is `timestamp_ms` and whose randomness is derived from `parts`.

    Deterministic: the same inputs give the same id (so a redelivered event yields the
    same run), and ids still sort by time.
    """
    digest = hashlib.sha256("\x1f".join(parts).encode()).digest()[:10]
    return str(ULID.from_bytes(timestamp_ms.to_bytes(6, "big") + digest)).lower()


def is_valid_id(value: str) -> bool:
    return bool(_ANY_ID.match(value))


def validate_user_id(value: str, field: str = "pipeline_id") -> None:
    if not ID_PATTERN.match(value):
        raise InvalidArgument.from_violations(
            [
                FieldViolation(
                    field,
                    f"{value!r} is not a valid id: 1-63 lowercase letters, digits and hyphens, "
                    "starting with a letter and not ending with a hyphen",
                )
            ]
        )


@dataclass(frozen=True)
class PipelineName:
    pipeline: str

    def __str__(self) -> str:
        return f"pipelines/{self.pipeline}"


@dataclass(frozen=True)
class RunName:
    pipeline: str
    run: str

    def __str__(self) -> str:
        return f"pipelines/{self.pipeline}/runs/{self.run}"

    @property
    def parent(self) -> PipelineName:
        return PipelineName(self.pipeline)


def parse_pipeline_name(name: str, field: str = "name", *, allow_wildcard: bool = False) -> PipelineName:
    parts = name.split("/")
    if (
        len(parts) == 2
        and parts[0] == "pipelines"
        and (is_valid_id(parts[1]) or (allow_wildcard and parts[1] == ALL_PIPELINES))
    ):
        return PipelineName(parts[1])
    expected = "pipelines/{pipeline}" + (" or pipelines/-" if allow_wildcard else "")
    raise InvalidArgument.from_violations([FieldViolation(field, f"{name!r} is not a pipeline name ({expected})")])


def parse_run_name(name: str, field: str = "name") -> RunName:
    parts = name.split("/")
    shape_ok = len(parts) == 4 and parts[0] == "pipelines" and parts[2] == "runs"
    if shape_ok and is_valid_id(parts[1]) and is_valid_id(parts[3]):
        return RunName(parts[1], parts[3])
    raise InvalidArgument.from_violations(
        [FieldViolation(field, f"{name!r} is not a run name (pipelines/{{pipeline}}/runs/{{run}})")]
    )
