"""conveyor.tagfilter: the one TagFilter implementation (validation for config, matching for both services)."""

from __future__ import annotations

import pytest

from conveyor import tagfilter
from conveyor.errors import FieldViolation
from conveyor.tagfilter import AnyTag, ExactTag, InvalidTagFilter, RegexTag, TagFilter


def regex(value: str) -> TagFilter:
    return TagFilter(type=TagFilter.REGEX, value=value)


def exact(value: str) -> TagFilter:
    return TagFilter(type=TagFilter.EXACT, value=value)


def violations(tag_filter: TagFilter) -> dict[str, str]:
    return {v.field: v.description for v in tagfilter.validate(tag_filter)}


# --------------------------------------------------------------------------- matching


@pytest.mark.parametrize("tag_filter", [TagFilter(), TagFilter(type=TagFilter.ANY)])
def test_any_and_unset_match_every_tag(tag_filter: TagFilter) -> None:
    matcher = tagfilter.compile_matcher(tag_filter)
    assert isinstance(matcher, AnyTag)
    assert all(matcher.matches(tag) for tag in ("v1", "latest", "", "ü"))
    assert matcher.explain("v1") == (True, "the pipeline takes any tag")


def test_exact_compares_the_whole_tag() -> None:
    matcher = tagfilter.compile_matcher(exact("stable"))
    assert matcher.matches("stable")
    assert not any(matcher.matches(tag) for tag in ("stable2", "Stable", "stabl", " stable"))
    assert matcher.explain("stable") == (True, "tag 'stable' is the exact tag")
    assert matcher.explain("v2") == (False, "tag 'v2' is not the exact tag 'stable'")


@pytest.mark.parametrize(
    ("expression", "tag", "expected"),
    [
        (r"v\d+", "v12", True),
        (r"v\d+", "v12-rc1", False),  # a prefix match is not enough
        (r"v\d+", "xv12", False),  # nor a match inside the tag
        (r"rc", "v1-rc1", False),
        (r".*rc.*", "v1-rc1", True),
        (r"v1|v2", "v1", True),
        (r"v1|v2", "v1x", False),  # alternation is anchored as a whole
        (r"a|ab", "ab", True),  # full match tries every alternative, not just the first that matches a prefix
        (r"^v\d+$", "v3", True),  # explicit anchors are harmless
        (r"(?i)PROD-.+", "prod-7", True),
        (r"release-[0-9]{4}\.[0-9]{2}", "release-2024.05", True),
        (r"\w+", "ü", False),  # RE2's \w is ASCII only, unlike Python's re
    ],
)
def test_regex_must_match_the_whole_tag(expression: str, tag: str, expected: bool) -> None:
    assert tagfilter.compile_matcher(regex(expression)).matches(tag) is expected
    assert tagfilter.matches(regex(expression), tag) is expected


def test_regex_explanations() -> None:
    matcher = tagfilter.compile_matcher(regex(r"v\d+"))
    assert matcher.explain("v1") == (True, r"tag 'v1' matches regex v\d+")
    assert matcher.explain("v1-rc") == (False, r"tag 'v1-rc' does not match regex v\d+")


def test_an_invalid_regex_cannot_be_compiled_and_says_why() -> None:
    with pytest.raises(InvalidTagFilter) as error:
        tagfilter.compile_matcher(regex("v(1"))
    assert str(error.value) == "tag filter regex 'v(1' does not compile: missing ): v(1"
    # Backreferences are valid for Python's re but not for RE2 (which cannot backtrack).
    with pytest.raises(InvalidTagFilter, match="does not compile"):
        tagfilter.compile_matcher(regex(r"(a)\1"))


def test_what_cannot_be_matched_at_all_is_rejected() -> None:
    with pytest.raises(InvalidTagFilter) as error:
        tagfilter.compile_matcher(exact(""))
    assert str(error.value) == "EXACT tag filter without a tag"
    unknown = TagFilter()
    unknown.type = 42  # type: ignore[assignment]
    with pytest.raises(InvalidTagFilter) as error:
        tagfilter.compile_matcher(unknown)
    assert str(error.value) == "unknown tag filter type 42"
    assert isinstance(error.value, ValueError)


def test_matching_is_lenient_where_validation_is_strict() -> None:
    # Stored before a rule tightened, or written around config: still matchable.
    assert tagfilter.compile_matcher(TagFilter(type=TagFilter.ANY, value="ignored")).matches("x")
    assert tagfilter.compile_matcher(exact("not a tag!")).matches("not a tag!")
    assert tagfilter.compile_matcher(regex("a" * 2000)).matches("a" * 2000)
    assert not tagfilter.compile_matcher(regex("")).matches("v1")


def test_matchers_are_compiled_once_and_shared() -> None:
    first = tagfilter.compile_matcher(regex(r"shared-\d+"))
    second = tagfilter.compile_matcher(regex(r"shared-\d+"))  # another message, same filter
    assert first is second
    assert isinstance(first, RegexTag) and first.expression == r"shared-\d+"
    before = tagfilter.compile_regex.cache_info()
    tagfilter.validate(regex(r"shared-\d+"))  # validation reuses the compiled program
    assert tagfilter.compile_regex.cache_info().hits == before.hits + 1
    assert tagfilter.compile_matcher(exact("v1")) == ExactTag("v1")


def test_matchers_are_immutable() -> None:
    matcher = tagfilter.compile_matcher(exact("v1"))
    with pytest.raises(AttributeError):
        matcher.value = "v2"  # type: ignore[attr-defined]


# --------------------------------------------------------------------------- validation


def test_valid_filters_have_no_violations() -> None:
    for tag_filter in (TagFilter(), TagFilter(type=TagFilter.ANY), exact("v1.2.3-rc_1"), regex(r"v\d+(\.\d+)*")):
        assert tagfilter.validate(tag_filter) == []


def test_regex_is_checked_with_re2_and_reports_its_message() -> None:
    assert violations(regex("v(1")) == {"value": "invalid RE2 expression 'v(1': missing ): v(1"}
    assert "value" in violations(regex(r"(a)\1"))
    assert violations(regex("")) == {"value": "required for a REGEX filter: an RE2 expression"}
    assert violations(regex("a" * 1024)) == {}
    assert violations(regex("a" * 1025)) == {"value": "at most 1024 characters"}


@pytest.mark.parametrize("tag", ["-bad", ".bad", "a" * 129, "has space", "ütf"])
def test_exact_value_must_be_a_valid_tag(tag: str) -> None:
    assert violations(exact(tag)) == {
        "value": f"{tag!r} is not a valid tag: up to 128 letters, digits, '_', '.' and '-', "
        "not starting with '.' or '-'"
    }


def test_exact_needs_a_value_and_any_none() -> None:
    assert violations(exact("")) == {"value": "required for an EXACT filter: the tag to deploy"}
    assert violations(TagFilter(type=TagFilter.ANY, value="v1")) == {
        "value": "must be empty when the filter type is ANY"
    }
    # An unspecified type means ANY, so a value there is a mistake too.
    assert violations(TagFilter(value="v1")) == {"value": "must be empty when the filter type is ANY"}


def test_unknown_type_is_a_type_violation() -> None:
    unknown = TagFilter(value="v1")
    unknown.type = 42  # type: ignore[assignment]
    assert violations(unknown) == {"type": "unknown tag filter type 42"}


def test_the_caller_can_put_the_paths_under_a_prefix() -> None:
    assert tagfilter.validate(exact(""), prefix="pipeline.source.tag_filter") == [
        FieldViolation("pipeline.source.tag_filter.value", "required for an EXACT filter: the tag to deploy")
    ]


def test_tag_grammar_is_ascii_only() -> None:
    assert tagfilter.is_valid_tag("v1.2.3-rc_1")
    assert not tagfilter.is_valid_tag("ütf")
    assert not tagfilter.is_valid_tag("x" * 129)
