"""Names: AIP resource names and ids (`pipelines/{pipeline}`, `pipelines/{pipeline}/runs/{run}`), and the
names of the Kubernetes objects a pipeline targets, checked by the rule the API server applies to each kind."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Literal

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


# ---- Kubernetes names ---------------------------------------------------------------------
# The rules and wording of k8s.io/apimachinery/pkg/util/validation, so a name refused here is one the
# API server refuses too, with the message kubectl would print (its double space included).

_DNS1123_LABEL = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1123_SUBDOMAIN = rf"{_DNS1123_LABEL}(\.{_DNS1123_LABEL})*"


@dataclass(frozen=True)
class NameRule:
    title: str
    max_chars: int
    pattern: re.Pattern[str]  # used with fullmatch: `$` would also accept a trailing newline
    message: str


DNS1123_LABEL = NameRule(
    "DNS-1123 label",
    63,
    re.compile(_DNS1123_LABEL),
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and "
    "end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is "
    f"'{_DNS1123_LABEL}')",
)
DNS1123_SUBDOMAIN = NameRule(
    "DNS-1123 subdomain",
    253,
    re.compile(_DNS1123_SUBDOMAIN),
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must "
    "start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is "
    f"'{_DNS1123_SUBDOMAIN}')",
)

# "Container" is a container of a pod template: not a kind, but named by a rule of its own.
KubernetesKind = Literal["Namespace", "Deployment", "StatefulSet", "DaemonSet", "Container"]
KUBERNETES_NAME_RULES: dict[KubernetesKind, NameRule] = {
    "Namespace": DNS1123_LABEL,
    "Deployment": DNS1123_SUBDOMAIN,
    "StatefulSet": DNS1123_SUBDOMAIN,
    "DaemonSet": DNS1123_SUBDOMAIN,
    "Container": DNS1123_LABEL,
}


def kubernetes_name_violations(kind: KubernetesKind, value: str, field: str) -> list[FieldViolation]:
    """What is wrong with `value` as the name of a `kind` (nothing when Kubernetes would accept it)."""
    if not value:
        return [FieldViolation(field, "required")]
    rule = KUBERNETES_NAME_RULES[kind]
    problems = []
    if len(value) > rule.max_chars:
        problems.append(f"must be no more than {rule.max_chars} characters")
    if not rule.pattern.fullmatch(value):
        problems.append(rule.message)
    if not problems:
        return []
    noun = kind.lower() if kind in ("Namespace", "Container") else kind
    return [FieldViolation(field, f"{value!r} is not a valid {noun} name ({rule.title}): {'; '.join(problems)}")]
