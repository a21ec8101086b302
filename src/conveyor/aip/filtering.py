"""The AIP-160 filter subset of Conveyor's List methods: `field = value` comparisons joined by AND, or by OR.

Values are bare words or quoted strings ('...' or "...", with backslash escapes); the whole filter
may be wrapped in one pair of parentheses. Every other construct (other operators, NOT, mixing AND
with OR, nesting) is rejected with a message that says what was expected and gives an example.
Every error is an InvalidArgument with one field violation on `filter`.

Two shapes, each generic over the fields a caller declares:

- `parse_all_of`: `a = "x" AND b = y`, each declared field at most once -> {field: value};
- `parse_any_of`: `state = FAILED OR state = RUNNING`, one declared field -> [value, ...].

A declared field comes with a value parser (`str` when the value is used as is) which converts the
raw text and raises ValueError with the complete message when the value is not acceptable.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping
from typing import Any, Literal

from conveyor.errors import FieldViolation, InvalidArgument

ValueParser = Callable[[str], Any]
Joiner = Literal["AND", "OR"]

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
_OTHER: dict[Joiner, Joiner] = {"AND": "OR", "OR": "AND"}


@dataclasses.dataclass(frozen=True)
class Token:
    kind: str  # string | op | paren | word | junk
    text: str
    position: int

    @property
    def value(self) -> str:
        """The text, unquoted and unescaped for a string."""
        if self.kind != "string":
            return self.text
        return re.sub(r"\\(.)", r"\1", self.text[1:-1])


@dataclasses.dataclass(frozen=True)
class Comparison:
    """`field = value`; `value` is unquoted and unescaped, `position` is where the field starts."""

    field: str
    value: str
    position: int


def filter_error(message: str) -> InvalidArgument:
    """The error of a filter that cannot be used: one field violation on `filter`."""
    return InvalidArgument.from_violations([FieldViolation("filter", message)])


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    position = 0
    while position < len(text):
        if not text[position:].strip():
            break
        match = _TOKEN.match(text, position)
        if match is None or match.lastgroup is None:  # pragma: no cover - the junk group matches anything
            raise filter_error(f"cannot parse filter at position {position}")
        kind = match.lastgroup
        start = match.start(kind)
        if kind == "junk":
            if match.group(kind) in "\"'":
                raise filter_error(f"unterminated string starting at position {start}")
            raise filter_error(f"unexpected {match.group(kind)!r} at position {start}")
        tokens.append(Token(kind, match.group(kind), start))
        position = match.end()
    return tokens


def parse_comparisons(text: str, joiner: Joiner, example: str) -> list[Comparison]:
    """`field = value` comparisons joined by `joiner`; anything else is a clear error ending with `example`."""
    other = _OTHER[joiner]
    tokens = tokenize(text)
    if tokens and tokens[0].text == "(" and tokens[-1].text == ")":
        tokens = tokens[1:-1]
    comparisons: list[Comparison] = []
    index = 0
    while index < len(tokens):
        chunk = tokens[index : index + 3]
        field = chunk[0]
        if field.kind != "word" or field.text in {"AND", "OR", "NOT"}:
            raise filter_error(f"expected a field name at position {field.position}, got {field.text!r}; {example}")
        if len(chunk) < 2:
            raise filter_error(f"expected '=' after {field.text!r}; {example}")
        op = chunk[1]
        if op.kind != "op":
            raise filter_error(f"expected '=' after {field.text!r} at position {op.position}; {example}")
        if op.text != "=":
            raise filter_error(f"operator {op.text!r} is not supported, only '='; {example}")
        if len(chunk) < 3 or chunk[2].kind not in {"word", "string"}:
            raise filter_error(f"expected a value after '{field.text} ='; {example}")
        comparisons.append(Comparison(field.text, chunk[2].value, field.position))
        index += 3
        if index < len(tokens):
            conjunction = tokens[index]
            if conjunction.text == other:
                raise filter_error(f"{other} is not supported here, only {joiner}; {example}")
            if conjunction.text != joiner:
                raise filter_error(
                    f"expected {joiner} at position {conjunction.position}, got {conjunction.text!r}; {example}"
                )
            index += 1
            if index == len(tokens):
                raise filter_error(f"filter ends with {joiner}; {example}")
    return comparisons


def _convert(parser: ValueParser, raw: str) -> Any:
    try:
        return parser(raw)
    except ValueError as exc:
        raise filter_error(str(exc)) from None


def parse_all_of(text: str, fields: Mapping[str, ValueParser], *, example: str) -> dict[str, Any]:
    """Comparisons joined by AND, each of a declared field and at most once: {field: parsed value}.

    The error for an unknown field lists the declared fields in their declaration order.
    """
    values: dict[str, Any] = {}
    for comparison in parse_comparisons(text, "AND", example):
        parser = fields.get(comparison.field)
        if parser is None:
            raise filter_error(f"unknown field {comparison.field!r}; filterable fields: {', '.join(fields)}")
        if comparison.field in values:
            raise filter_error(f"{comparison.field} is compared more than once")
        values[comparison.field] = _convert(parser, comparison.value)
    return values


def parse_any_of(text: str, field: str, parser: ValueParser, *, subject: str, example: str) -> list[Any]:
    """Comparisons of the one `field` joined by OR: the parsed values, in filter order.

    `subject` names what is listed, for the unknown-field error: "{subject} can be filtered by {field}".
    """
    values: list[Any] = []
    for comparison in parse_comparisons(text, "OR", example):
        if comparison.field != field:
            raise filter_error(f"unknown field {comparison.field!r}; {subject} can be filtered by {field}; {example}")
        values.append(_convert(parser, comparison.value))
    return values


def boolean(field: str) -> ValueParser:
    """A value parser for `field = true` / `field = false` (any case)."""

    def parse(raw: str) -> bool:
        if raw.lower() not in {"true", "false"}:
            raise ValueError(f"{field} must be compared with true or false, got {raw!r}")
        return raw.lower() == "true"

    return parse
