"""conveyor.tagfilter: the SEMVER type (node-semver ranges) and exclusions on every type."""

from __future__ import annotations

import pytest

from conveyor import tagfilter
from conveyor.tagfilter import ExcludingTag, InvalidTagFilter, SemverTag, TagFilter


def semver(constraint: str, *, pre: bool = False, exclusions: tuple[str, ...] = ()) -> TagFilter:
    return TagFilter(type=TagFilter.SEMVER, value=constraint, include_prereleases=pre, exclusions=list(exclusions))


def violations(tag_filter: TagFilter, prefix: str = "") -> dict[str, str]:
    return {v.field: v.description for v in tagfilter.validate(tag_filter, prefix)}


# --------------------------------------------------------------------------- constraint grammar


@pytest.mark.parametrize(
    ("constraint", "tag", "expected"),
    [
        ("^1.2", "1.2.0", True),
        ("^1.2", "1.9.9", True),
        ("^1.2", "1.1.9", False),
        ("^1.2", "2.0.0", False),
        ("^0.2", "0.3.0", False),  # caret below 1.0 pins the minor
        ("~1.4.0", "1.4.7", True),
        ("~1.4.0", "1.5.0", False),
        (">=1.0.0 <2.0.0", "1.0.0", True),
        (">=1.0.0 <2.0.0", "1.99.0", True),
        (">=1.0.0 <2.0.0", "2.0.0", False),
        (">=1.0.0 <2.0.0", "0.9.0", False),
        ("1.x", "1.0.0", True),
        ("1.x", "1.7.3", True),
        ("1.x", "2.0.0", False),
        ("1.x || 3.x", "3.1.0", True),
        # a leading v on the tag and on the constraint
        ("^1.2", "v1.4.0", True),
        ("v1.x", "1.3.0", True),
        ("v1.x", "v1.3.0", True),
        ("~v1.4.0", "v1.4.2", True),
        # tags that are not semantic versions never match
        ("^1.2", "latest", False),
        ("^1.2", "1.2", False),
        ("^1.2", "01.2.3", False),
        ("^1.2", "v1.2.3-rc_1", False),
    ],
)
def test_constraint_grammar(constraint: str, tag: str, expected: bool) -> None:
    assert tagfilter.matches(semver(constraint), tag) is expected


@pytest.mark.parametrize(
    ("constraint", "tag", "expected"),
    [
        ("^1.2", "1.3.0-rc.1", False),  # excluded by default
        (">=1.0.0 <2.0.0", "1.5.0-beta", False),
        ("^1.3.0-rc.1", "1.3.0-rc.2", True),  # the constraint names a pre-release of 1.3.0
        ("^1.3.0-rc.1", "1.3.0-rc.0", False),  # ... below it
        ("^1.3.0-rc.1", "1.4.0-rc.1", False),  # ... of another major.minor.patch
        ("^1.3.0-rc.1", "v1.3.0", True),
    ],
)
def test_prereleases_only_when_the_constraint_names_one(constraint: str, tag: str, expected: bool) -> None:
    assert tagfilter.matches(semver(constraint), tag) is expected


def test_include_prereleases_admits_them_inside_the_range() -> None:
    tag_filter = semver("^1.2", pre=True)
    assert tagfilter.matches(tag_filter, "1.3.0-rc.1")
    assert tagfilter.matches(tag_filter, "v1.2.0-alpha.1") is False  # below 1.2.0 all the same
    assert tagfilter.matches(tag_filter, "2.0.0-rc.1") is False
    assert tagfilter.matches(tag_filter, "1.2.5")


def test_explain_says_why() -> None:
    matcher = tagfilter.compile_matcher(semver("^1.2"))
    assert isinstance(matcher, SemverTag)
    assert matcher.explain("1.4.0") == (True, "tag '1.4.0' satisfies semver ^1.2")
    assert matcher.explain("2.0.0") == (False, "tag '2.0.0' does not satisfy semver ^1.2")
    assert matcher.explain("latest") == (False, "tag 'latest' is not a semantic version")
    assert matcher.explain("1.3.0-rc.1") == (
        False,
        "tag '1.3.0-rc.1' is a pre-release and the filter excludes pre-releases",
    )


def test_compiled_matchers_are_cached_per_flag() -> None:
    assert tagfilter.compile_matcher(semver("^1.2")) is tagfilter.compile_matcher(semver("^1.2"))
    assert tagfilter.compile_matcher(semver("^1.2")) is not tagfilter.compile_matcher(semver("^1.2", pre=True))


@pytest.mark.parametrize("constraint", ["", "  ", "foo", ">=1 <", "^1.2 bar"])
def test_compile_rejects_what_cannot_match(constraint: str) -> None:
    with pytest.raises(InvalidTagFilter):
        tagfilter.compile_matcher(semver(constraint))


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize("constraint", ["^1.2", "~1.4.0", ">=1.0.0 <2.0.0", "1.x", "v1.x", "^1.3.0-rc.1"])
def test_valid_constraints(constraint: str) -> None:
    assert tagfilter.validate(semver(constraint)) == []


def test_invalid_constraint_is_a_field_violation_with_its_path() -> None:
    got = violations(semver("^one"), "source.tag_filter")
    assert list(got) == ["source.tag_filter.value"]
    assert "invalid semver constraint '^one'" in got["source.tag_filter.value"]


def test_empty_constraint_is_required() -> None:
    assert "required for a SEMVER filter" in violations(semver(""))["value"]


def test_too_long_constraint() -> None:
    assert violations(semver("1" * 1025)) == {"value": "at most 1024 characters"}


def test_include_prereleases_only_on_semver() -> None:
    tag_filter = TagFilter(type=TagFilter.REGEX, value="v.*", include_prereleases=True)
    assert violations(tag_filter) == {"include_prereleases": "only a SEMVER filter has pre-releases"}


# --------------------------------------------------------------------------- exclusions


@pytest.mark.parametrize(
    ("tag", "expected"),
    [
        ("v1.2.0", True),
        ("latest", False),  # the glob without wildcards is the exact tag
        ("latest-1", True),
        ("v1.3.0-rc1", False),
        ("x-rc", False),
        ("v9", False),  # regex: prefix, whole tag
        ("v99", True),
        ("a.b", False),  # ? is one character
        ("a.bc", True),
    ],
)
def test_exclusions_by_glob_and_regex(tag: str, expected: bool) -> None:
    tag_filter = TagFilter(type=TagFilter.ANY, exclusions=["latest", "*-rc*", r"regex:v\d", "a.?"])
    assert tagfilter.matches(tag_filter, tag) is expected


def test_glob_metacharacters_other_than_wildcards_are_literal() -> None:
    tag_filter = TagFilter(type=TagFilter.ANY, exclusions=["v1.2*"])
    assert tagfilter.matches(tag_filter, "v1.2.3") is False
    assert tagfilter.matches(tag_filter, "v1x2") is True  # the dot is not "any character"


@pytest.mark.parametrize(
    "tag_filter",
    [
        TagFilter(type=TagFilter.EXACT, value="stable", exclusions=["stable"]),
        TagFilter(type=TagFilter.REGEX, value="stable|edge", exclusions=["st*"]),
        semver("^1.2", exclusions=["regex:1\\.2\\..*"]),
    ],
)
def test_exclusions_win_over_every_type(tag_filter: TagFilter) -> None:
    tag = "1.2.0" if tag_filter.type == TagFilter.SEMVER else "stable"
    matcher = tagfilter.compile_matcher(tag_filter)
    assert isinstance(matcher, ExcludingTag)
    assert matcher.matches(tag) is False
    ok, reason = matcher.explain(tag)
    assert ok is False
    assert reason == f"tag {tag!r} excluded by {tag_filter.exclusions[0]}"


def test_a_tag_not_excluded_is_explained_by_the_filter() -> None:
    matcher = tagfilter.compile_matcher(semver("^1.2", exclusions=["*-rc*"]))
    assert matcher.explain("1.4.0") == (True, "tag '1.4.0' satisfies semver ^1.2")
    assert matcher.explain("1.4.0-rc.1") == (False, "tag '1.4.0-rc.1' excluded by *-rc*")


def test_invalid_exclusions_are_field_violations_with_their_index() -> None:
    tag_filter = semver("^1.2", exclusions=["latest", "regex:v(1", "", "regex:"])
    got = violations(tag_filter, "source.tag_filter")
    assert set(got) == {
        "source.tag_filter.exclusions[1]",
        "source.tag_filter.exclusions[2]",
        "source.tag_filter.exclusions[3]",
    }
    assert "invalid RE2 expression 'regex:v(1'" in got["source.tag_filter.exclusions[1]"]
    assert "empty pattern" in got["source.tag_filter.exclusions[2]"]


def test_too_many_exclusions() -> None:
    tag_filter = TagFilter(type=TagFilter.ANY, exclusions=[f"t{i}" for i in range(101)])
    assert violations(tag_filter) == {"exclusions": "at most 100 patterns"}


def test_compile_rejects_an_exclusion_that_does_not_compile() -> None:
    with pytest.raises(InvalidTagFilter, match="exclusion"):
        tagfilter.compile_matcher(TagFilter(type=TagFilter.ANY, exclusions=["regex:("]))
