"""The one implementation of a pipeline's TagFilter: validation and matching.

- ANY (or unset): every tag matches.
- EXACT: the tag equals `value`.
- REGEX: `value` is an RE2 expression that must match the *whole* tag (no backtracking, so a
  user's pattern cannot stall the matcher).

`validate` is the strict check of a filter a user submits (config's create/update); `compile_matcher`
turns a stored filter into a `TagMatcher` and rejects only what cannot be matched at all, so a
filter stored before a validation rule tightened keeps working. Compiled matchers are immutable
and cached by (type, value): pipelines sharing a filter share one compiled RE2 program, and asking
again for a filter already compiled costs a dictionary lookup.

Adding a filter type (e.g. SEMVER) means one TagMatcher subclass and one entry in each of
`_COMPILERS` and `_VALIDATORS`.
"""

from __future__ import annotations

import abc
import functools
from collections.abc import Callable
from dataclasses import dataclass, field

import re2

from conveyor import refs
from conveyor.errors import FieldViolation
from conveyor.v1 import pipeline_pb2

TagFilter = pipeline_pb2.TagFilter

VALUE_MAX_CHARS = 1024
# Distinct (type, value) pairs kept compiled; the trigger's index also holds its own matchers.
_CACHE_SIZE = 4096


class InvalidTagFilter(ValueError):
    """A tag filter that cannot be matched; the message says why."""


def _re2_options() -> re2.Options:
    options = re2.Options()
    options.log_errors = False  # the reason is reported, not printed to stderr
    options.never_capture = True  # only whether it matches counts
    return options


_RE2_OPTIONS = _re2_options()


@functools.lru_cache(maxsize=_CACHE_SIZE)
def compile_regex(expression: str) -> re2._Regexp:
    """RE2-compile a tag expression; ValueError carrying RE2's own message (e.g. "missing ): v(1")."""
    try:
        return re2.compile(expression, options=_RE2_OPTIONS)
    except re2.error as exc:
        detail = exc.args[0] if exc.args else str(exc)
        if isinstance(detail, bytes):
            detail = detail.decode("utf-8", "replace")
        raise ValueError(str(detail)) from None


def is_valid_tag(tag: str) -> bool:
    """A tag as the distribution spec defines it; its \\w is ASCII only (conveyor.refs also admits Unicode)."""
    return tag.isascii() and refs.is_valid_tag(tag)


class TagMatcher(abc.ABC):
    """A compiled tag filter."""

    __slots__ = ()

    @abc.abstractmethod
    def matches(self, tag: str) -> bool: ...

    @abc.abstractmethod
    def explain(self, tag: str) -> tuple[bool, str]:
        """(matches, a sentence saying why), for "why did my push (not) deploy?"."""


@dataclass(frozen=True, slots=True)
class AnyTag(TagMatcher):
    def matches(self, tag: str) -> bool:
        return True

    def explain(self, tag: str) -> tuple[bool, str]:
        return True, "the pipeline takes any tag"


@dataclass(frozen=True, slots=True)
class ExactTag(TagMatcher):
    value: str

    def matches(self, tag: str) -> bool:
        return tag == self.value

    def explain(self, tag: str) -> tuple[bool, str]:
        if tag != self.value:
            return False, f"tag {tag!r} is not the exact tag {self.value!r}"
        return True, f"tag {tag!r} is the exact tag"


@dataclass(frozen=True, slots=True)
class RegexTag(TagMatcher):
    expression: str
    regex: re2._Regexp = field(compare=False, repr=False)

    @classmethod
    def build(cls, expression: str) -> RegexTag:
        try:
            return cls(expression, compile_regex(expression))
        except ValueError as exc:
            raise InvalidTagFilter(f"tag filter regex {expression!r} does not compile: {exc}") from None

    def matches(self, tag: str) -> bool:
        return self.regex.fullmatch(tag) is not None

    def explain(self, tag: str) -> tuple[bool, str]:
        if self.regex.fullmatch(tag) is None:
            return False, f"tag {tag!r} does not match regex {self.expression}"
        return True, f"tag {tag!r} matches regex {self.expression}"


_ANY = AnyTag()


def _compile_exact(value: str) -> TagMatcher:
    if not value:
        raise InvalidTagFilter("EXACT tag filter without a tag")
    return ExactTag(value)


_COMPILERS: dict[int, Callable[[str], TagMatcher]] = {
    TagFilter.TYPE_UNSPECIFIED: lambda _value: _ANY,
    TagFilter.ANY: lambda _value: _ANY,
    TagFilter.EXACT: _compile_exact,
    TagFilter.REGEX: RegexTag.build,
}


@functools.lru_cache(maxsize=_CACHE_SIZE)
def _compile(filter_type: int, value: str) -> TagMatcher:
    compiler = _COMPILERS.get(filter_type)
    if compiler is None:
        raise InvalidTagFilter(f"unknown tag filter type {filter_type}")
    return compiler(value)


def compile_matcher(tag_filter: pipeline_pb2.TagFilter) -> TagMatcher:
    """The matcher of a stored filter; InvalidTagFilter when it cannot match anything meaningful.

    Lenient on purpose (see the module docstring): an unknown type, an EXACT filter without a tag
    and a REGEX that RE2 cannot compile are rejected; the value of an ANY filter is ignored.
    """
    return _compile(tag_filter.type, tag_filter.value)


def matches(tag_filter: pipeline_pb2.TagFilter, tag: str) -> bool:
    """Whether `tag` passes `tag_filter` (InvalidTagFilter if the filter cannot be compiled)."""
    return compile_matcher(tag_filter).matches(tag)


def _validate_any(value: str) -> list[FieldViolation]:
    if value:
        return [FieldViolation("value", "must be empty when the filter type is ANY")]
    return []


def _validate_exact(value: str) -> list[FieldViolation]:
    if not value:
        return [FieldViolation("value", "required for an EXACT filter: the tag to deploy")]
    if not is_valid_tag(value):
        return [
            FieldViolation(
                "value",
                f"{value!r} is not a valid tag: up to 128 letters, digits, '_', '.' and '-', "
                "not starting with '.' or '-'",
            )
        ]
    return []


def _validate_regex(value: str) -> list[FieldViolation]:
    if not value:
        return [FieldViolation("value", "required for a REGEX filter: an RE2 expression")]
    if len(value) > VALUE_MAX_CHARS:
        return [FieldViolation("value", f"at most {VALUE_MAX_CHARS} characters")]
    try:
        compile_regex(value)
    except ValueError as exc:
        return [FieldViolation("value", f"invalid RE2 expression {value!r}: {exc}")]
    return []


_VALIDATORS: dict[int, Callable[[str], list[FieldViolation]]] = {
    TagFilter.TYPE_UNSPECIFIED: _validate_any,
    TagFilter.ANY: _validate_any,
    TagFilter.EXACT: _validate_exact,
    TagFilter.REGEX: _validate_regex,
}


def validate(tag_filter: pipeline_pb2.TagFilter, prefix: str = "") -> list[FieldViolation]:
    """Every problem with a filter a user submits, as violations of `type` / `value`.

    The paths are relative to the filter; `prefix` (e.g. "pipeline.source.tag_filter") is joined in front.
    """
    validator = _VALIDATORS.get(tag_filter.type)
    if validator is None:
        violations = [FieldViolation("type", f"unknown tag filter type {tag_filter.type}")]
    else:
        violations = validator(tag_filter.value)
    if not prefix:
        return violations
    return [FieldViolation(f"{prefix}.{v.field}", v.description) for v in violations]
