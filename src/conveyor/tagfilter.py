"""The one implementation of a pipeline's TagFilter: validation and matching.

- ANY (or unset): every tag matches.
- EXACT: the tag equals `value`.
- REGEX: `value` is an RE2 expression that must match the *whole* tag (no backtracking, so a
  user's pattern cannot stall the matcher).
- SEMVER: `value` is a node-semver range (`^1.2`, `~1.4.0`, `>=1.0.0 <2.0.0`, `1.x`); the tag must be a
  semantic version (a leading `v` accepted) inside it. Pre-releases match only when the range names one of
  the same major.minor.patch (node-semver's rule) or the filter sets `include_prereleases`.

Every type also takes `exclusions`: tags that never deploy, as globs (`*` and `?`) or RE2 with a `regex:`
prefix, each matching the whole tag.

`validate` is the strict check of a filter a user submits (config's create/update); `compile_matcher`
turns a stored filter into a `TagMatcher` and rejects only what cannot be matched at all, so a
filter stored before a validation rule tightened keeps working. Compiled matchers are immutable
and cached by their fields: pipelines sharing a filter share one compiled RE2 program, and asking
again for a filter already compiled costs a dictionary lookup.

Adding a filter type (e.g. SEMVER) means one TagMatcher subclass and one entry in each of
`_COMPILERS` and `_VALIDATORS`.
"""

from __future__ import annotations

import abc
import functools
from collections.abc import Callable
from dataclasses import dataclass, field

import nodesemver
import re2

from conveyor import refs
from conveyor.errors import FieldViolation
from conveyor.v1 import pipeline_pb2

TagFilter = pipeline_pb2.TagFilter

VALUE_MAX_CHARS = 1024
EXCLUSIONS_MAX = 100
REGEX_PREFIX = "regex:"
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


@dataclass(frozen=True, slots=True)
class SemverTag(TagMatcher):
    constraint: str
    include_prereleases: bool
    range: nodesemver.Range = field(compare=False, repr=False)

    @classmethod
    def build(cls, constraint: str, include_prereleases: bool) -> SemverTag:
        return cls(constraint, include_prereleases, parse_range(constraint))

    def _version(self, tag: str) -> nodesemver.SemVer | None:
        try:
            return nodesemver.make_semver(tag, loose=False)
        except ValueError:
            return None

    def _satisfies(self, version: nodesemver.SemVer, include_prereleases: bool) -> bool:
        if not self.range.test(version, include_prerelease=include_prereleases):
            return False
        if not version.prerelease or not include_prereleases:
            return True
        # 2.0.0-rc.1 sorts below 2.0.0, so it is inside `^1.2`; its release is not, and neither is it.
        release = nodesemver.make_semver(f"{version.major}.{version.minor}.{version.patch}", loose=False)
        return bool(self.range.test(release))

    def matches(self, tag: str) -> bool:
        version = self._version(tag)
        return version is not None and self._satisfies(version, self.include_prereleases)

    def explain(self, tag: str) -> tuple[bool, str]:
        version = self._version(tag)
        if version is None:
            return False, f"tag {tag!r} is not a semantic version"
        if not self._satisfies(version, self.include_prereleases):
            if version.prerelease and self._satisfies(version, include_prereleases=True):
                return False, f"tag {tag!r} is a pre-release and the filter excludes pre-releases"
            return False, f"tag {tag!r} does not satisfy semver {self.constraint}"
        return True, f"tag {tag!r} satisfies semver {self.constraint}"


@dataclass(frozen=True, slots=True)
class ExcludingTag(TagMatcher):
    """`base` minus the tags any of `patterns` matches (one RE2 alternation of them all)."""

    base: TagMatcher
    patterns: tuple[str, ...]
    regexes: tuple[re2._Regexp, ...] = field(compare=False, repr=False)

    def excluded_by(self, tag: str) -> str | None:
        for pattern, regex in zip(self.patterns, self.regexes, strict=True):
            if regex.fullmatch(tag) is not None:
                return pattern
        return None

    def matches(self, tag: str) -> bool:
        return self.excluded_by(tag) is None and self.base.matches(tag)

    def explain(self, tag: str) -> tuple[bool, str]:
        pattern = self.excluded_by(tag)
        if pattern is not None:
            return False, f"tag {tag!r} excluded by {pattern}"
        return self.base.explain(tag)


def parse_range(constraint: str) -> nodesemver.Range:
    """A node-semver range; InvalidTagFilter when it is empty or does not parse."""
    if not constraint.strip():
        raise InvalidTagFilter("SEMVER tag filter without a constraint")
    try:
        return nodesemver.make_range(constraint, loose=False)
    except ValueError as exc:
        raise InvalidTagFilter(f"invalid semver constraint {constraint!r}: {exc}") from None


def _glob_to_re2(glob: str) -> str:
    return "".join(".*" if c == "*" else "." if c == "?" else re2.escape(c) for c in glob)


def exclusion_regex(pattern: str) -> re2._Regexp:
    """The RE2 program of one exclusion (`regex:RE2` or a glob); ValueError saying why it does not compile."""
    if pattern.startswith(REGEX_PREFIX):
        return compile_regex(pattern[len(REGEX_PREFIX) :])
    return compile_regex(_glob_to_re2(pattern))


_ANY = AnyTag()


def _compile_exact(value: str, _include_prereleases: bool) -> TagMatcher:
    if not value:
        raise InvalidTagFilter("EXACT tag filter without a tag")
    return ExactTag(value)


# (value, include_prereleases) -> matcher; only SEMVER looks at the flag.
_COMPILERS: dict[int, Callable[[str, bool], TagMatcher]] = {
    TagFilter.TYPE_UNSPECIFIED: lambda _value, _pre: _ANY,
    TagFilter.ANY: lambda _value, _pre: _ANY,
    TagFilter.EXACT: _compile_exact,
    TagFilter.REGEX: lambda value, _pre: RegexTag.build(value),
    TagFilter.SEMVER: SemverTag.build,
}


@functools.lru_cache(maxsize=_CACHE_SIZE)
def _compile(filter_type: int, value: str, include_prereleases: bool, exclusions: tuple[str, ...]) -> TagMatcher:
    compiler = _COMPILERS.get(filter_type)
    if compiler is None:
        raise InvalidTagFilter(f"unknown tag filter type {filter_type}")
    base = compiler(value, include_prereleases)
    if not exclusions:
        return base
    try:
        regexes = tuple(exclusion_regex(pattern) for pattern in exclusions)
    except ValueError as exc:
        raise InvalidTagFilter(f"tag filter exclusion does not compile: {exc}") from None
    return ExcludingTag(base, exclusions, regexes)


def compile_matcher(tag_filter: pipeline_pb2.TagFilter) -> TagMatcher:
    """The matcher of a stored filter; InvalidTagFilter when it cannot match anything meaningful.

    Lenient on purpose (see the module docstring): an unknown type, an EXACT filter without a tag
    and a REGEX that RE2 cannot compile are rejected; the value of an ANY filter is ignored.
    """
    return _compile(tag_filter.type, tag_filter.value, tag_filter.include_prereleases, tuple(tag_filter.exclusions))


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


def _validate_semver(value: str) -> list[FieldViolation]:
    if not value.strip():
        return [FieldViolation("value", "required for a SEMVER filter: a constraint such as ^1.2 or >=1.0.0 <2.0.0")]
    if len(value) > VALUE_MAX_CHARS:
        return [FieldViolation("value", f"at most {VALUE_MAX_CHARS} characters")]
    try:
        parse_range(value)
    except InvalidTagFilter as exc:
        return [FieldViolation("value", str(exc))]
    return []


def _validate_exclusions(tag_filter: pipeline_pb2.TagFilter) -> list[FieldViolation]:
    if len(tag_filter.exclusions) > EXCLUSIONS_MAX:
        return [FieldViolation("exclusions", f"at most {EXCLUSIONS_MAX} patterns")]
    violations = []
    for index, pattern in enumerate(tag_filter.exclusions):
        path = f"exclusions[{index}]"
        if not pattern or pattern == REGEX_PREFIX:
            violations.append(FieldViolation(path, "empty pattern: give a glob such as *-rc* or regex:RE2"))
        elif len(pattern) > VALUE_MAX_CHARS:
            violations.append(FieldViolation(path, f"at most {VALUE_MAX_CHARS} characters"))
        else:
            try:
                exclusion_regex(pattern)
            except ValueError as exc:
                violations.append(FieldViolation(path, f"invalid RE2 expression {pattern!r}: {exc}"))
    return violations


_VALIDATORS: dict[int, Callable[[str], list[FieldViolation]]] = {
    TagFilter.TYPE_UNSPECIFIED: _validate_any,
    TagFilter.ANY: _validate_any,
    TagFilter.EXACT: _validate_exact,
    TagFilter.REGEX: _validate_regex,
    TagFilter.SEMVER: _validate_semver,
}


def validate(tag_filter: pipeline_pb2.TagFilter, prefix: str = "") -> list[FieldViolation]:
    """Every problem with a filter a user submits, as violations of `type`, `value`, `exclusions[i]`, ....

    The paths are relative to the filter; `prefix` (e.g. "pipeline.source.tag_filter") is joined in front.
    """
    validator = _VALIDATORS.get(tag_filter.type)
    if validator is None:
        violations = [FieldViolation("type", f"unknown tag filter type {tag_filter.type}")]
    else:
        violations = validator(tag_filter.value)
    if tag_filter.include_prereleases and tag_filter.type != TagFilter.SEMVER:
        violations.append(FieldViolation("include_prereleases", "only a SEMVER filter has pre-releases"))
    violations.extend(_validate_exclusions(tag_filter))
    if not prefix:
        return violations
    return [FieldViolation(f"{prefix}.{v.field}", v.description) for v in violations]
