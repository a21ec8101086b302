"""The AIP-160 filter subset of ListPipelines (AND of equalities) and ListRuns (OR of states)."""

from __future__ import annotations

import dataclasses
import json
import re
from typing import Any

from conveyor import refs
from conveyor.errors import FieldViolation, InvalidArgument
from conveyor.v1.run_pb2 import Run
from conveyor_config.domain.names import enum_names

PIPELINE_FILTER_FIELDS = (
    "source.registry",
    "source.repository",
    "target.cluster",
    "target.namespace",
    "target.workload",
    "disabled",
)

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
      | (?P<op>!=|<=|>=|=|<|>|:)
      | (?P<paren>[()])
      | (?P<word>[^\s()"'=!<>:]+)
      | (?P<junk>\S)
    )""",
    re.VERBOSE,
)


@dataclasses.dataclass(frozen=True)
class _Token:
    kind: str  # string | op | paren | word | junk
    text: str
    position: int

    @property
    def value(self) -> str:
        if self.kind != "string":
            return self.text
        return re.sub(r"\\(.)", r"\1", self.text[1:-1])


def _filter_error(message: str) -> InvalidArgument:
    return InvalidArgument.from_violations([FieldViolation("filter", message)])


def _tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    position = 0
    while position < len(text):
        if not text[position:].strip():
            break
        match = _TOKEN.match(text, position)
        if match is None or match.lastgroup is None:  # pragma: no cover - the junk group matches anything
            raise _filter_error(f"cannot parse filter at position {position}")
        kind = match.lastgroup
        start = match.start(kind)
        if kind == "junk":
            if match.group(kind) in "\"'":
                raise _filter_error(f"unterminated string starting at position {start}")
            raise _filter_error(f"unexpected {match.group(kind)!r} at position {start}")
        tokens.append(_Token(kind, match.group(kind), start))
        position = match.end()
    return tokens


def _comparisons(text: str, joiner: str, other: str, example: str) -> list[tuple[_Token, _Token]]:
    """`field = value` comparisons joined by `joiner` (AND or OR); anything else is a clear error."""
    tokens = _tokenize(text)
    if tokens and tokens[0].text == "(" and tokens[-1].text == ")":
        tokens = tokens[1:-1]
    comparisons: list[tuple[_Token, _Token]] = []
    index = 0
    while index < len(tokens):
        chunk = tokens[index : index + 3]
        field = chunk[0]
        if field.kind != "word" or field.text in {"AND", "OR", "NOT"}:
            raise _filter_error(f"expected a field name at position {field.position}, got {field.text!r}; {example}")
        if len(chunk) < 2:
            raise _filter_error(f"expected '=' after {field.text!r}; {example}")
        op = chunk[1]
        if op.kind != "op":
            raise _filter_error(f"expected '=' after {field.text!r} at position {op.position}; {example}")
        if op.text != "=":
            raise _filter_error(f"operator {op.text!r} is not supported, only '='; {example}")
        if len(chunk) < 3 or chunk[2].kind not in {"word", "string"}:
            raise _filter_error(f"expected a value after '{field.text} ='; {example}")
        comparisons.append((field, chunk[2]))
        index += 3
        if index < len(tokens):
            conjunction = tokens[index]
            if conjunction.text == other:
                raise _filter_error(f"{other} is not supported here, only {joiner}; {example}")
            if conjunction.text != joiner:
                raise _filter_error(
                    f"expected {joiner} at position {conjunction.position}, got {conjunction.text!r}; {example}"
                )
            index += 1
            if index == len(tokens):
                raise _filter_error(f"filter ends with {joiner}; {example}")
    return comparisons


@dataclasses.dataclass(frozen=True)
class PipelineFilter:
    """Equality constraints on the filterable pipeline fields (all must hold)."""

    registry: str | None = None
    repository: str | None = None
    cluster: str | None = None
    namespace: str | None = None
    workload: str | None = None
    disabled: bool | None = None

    def canonical(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True, ensure_ascii=False)


_PIPELINE_FILTER_ATTRIBUTES = {
    "source.registry": "registry",
    "source.repository": "repository",
    "target.cluster": "cluster",
    "target.namespace": "namespace",
    "target.workload": "workload",
    "disabled": "disabled",
}


def parse_pipeline_filter(text: str) -> PipelineFilter:
    """`source.registry = "demo.tencentcloudcr.com" AND target.cluster = "prod"` -> PipelineFilter."""
    example = 'e.g. source.registry = "registry.example.com" AND target.cluster = "prod"'
    values: dict[str, Any] = {}
    for field, value in _comparisons(text, "AND", "OR", example):
        attribute = _PIPELINE_FILTER_ATTRIBUTES.get(field.text)
        if attribute is None:
            raise _filter_error(f"unknown field {field.text!r}; filterable fields: {', '.join(PIPELINE_FILTER_FIELDS)}")
        if attribute in values:
            raise _filter_error(f"{field.text} is compared more than once")
        raw = value.value
        if attribute == "disabled":
            if raw.lower() not in {"true", "false"}:
                raise _filter_error(f"disabled must be compared with true or false, got {raw!r}")
            values[attribute] = raw.lower() == "true"
        elif attribute == "registry":
            values[attribute] = refs.normalize_registry(raw)
        else:
            values[attribute] = raw
    return PipelineFilter(**values)


@dataclasses.dataclass(frozen=True)
class RunFilter:
    """The run states to list; empty means every state."""

    states: frozenset[int] = frozenset()

    def canonical(self) -> str:
        return ",".join(str(s) for s in sorted(self.states))


def parse_run_filter(text: str) -> RunFilter:
    """`state = FAILED`, `state = FAILED OR state = RUNNING` -> RunFilter."""
    example = "e.g. state = FAILED OR state = RUNNING"
    names = enum_names(Run.State)
    states: set[int] = set()
    for field, value in _comparisons(text, "OR", "AND", example):
        if field.text != "state":
            raise _filter_error(f"unknown field {field.text!r}; runs can be filtered by state; {example}")
        name = value.value.upper()
        if name not in names:
            raise _filter_error(f"unknown state {value.value!r}; states: {', '.join(names)}")
        states.add(Run.State.Value(name))
    return RunFilter(frozenset(states))
