"""conveyor.aip.filtering: the AIP-160 subset, with config's pipeline and run filters declared on top of it."""

from __future__ import annotations

from typing import Any

import pytest

from conveyor import refs
from conveyor.aip import filtering
from conveyor.aip.filtering import Comparison
from conveyor.errors import InvalidArgument
from conveyor.v1.run_pb2 import Run

PIPELINE_EXAMPLE = 'e.g. source.registry = "registry.example.com" AND target.cluster = "prod"'
PIPELINE_FIELDS: dict[str, filtering.ValueParser] = {
    "source.registry": refs.normalize_registry,
    "source.repository": str,
    "target.cluster": str,
    "target.namespace": str,
    "target.workload": str,
    "disabled": filtering.boolean("disabled"),
}
RUN_EXAMPLE = "e.g. state = FAILED OR state = RUNNING"
STATE_NAMES = [name for name in Run.State.keys() if not name.endswith("_UNSPECIFIED")]  # noqa: SIM118


def parse_state(raw: str) -> int:
    if raw.upper() not in STATE_NAMES:
        raise ValueError(f"unknown state {raw!r}; states: {', '.join(STATE_NAMES)}")
    return int(Run.State.Value(raw.upper()))


def pipelines(text: str) -> dict[str, Any]:
    return filtering.parse_all_of(text, PIPELINE_FIELDS, example=PIPELINE_EXAMPLE)


def runs(text: str) -> set[int]:
    return set(filtering.parse_any_of(text, "state", parse_state, subject="runs", example=RUN_EXAMPLE))


def error_of(parse: Any, text: str) -> str:
    with pytest.raises(InvalidArgument) as error:
        parse(text)
    [violation] = error.value.violations
    assert violation.field == "filter"
    return str(violation.description)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", {}),
        ("   ", {}),
        ('source.registry = "demo.tencentcloudcr.com"', {"source.registry": "demo.tencentcloudcr.com"}),
        (
            'source.registry = "Demo.TencentCloudCR.com" AND target.cluster = "prod"',
            {"source.registry": "demo.tencentcloudcr.com", "target.cluster": "prod"},
        ),
        (
            "target.namespace=web AND target.workload = 'front end'",
            {"target.namespace": "web", "target.workload": "front end"},
        ),
        ('source.repository = "team/app" AND disabled = true', {"source.repository": "team/app", "disabled": True}),
        ('(disabled = "false")', {"disabled": False}),
        ("disabled = TRUE", {"disabled": True}),
        (r'target.cluster = "a\"b"', {"target.cluster": 'a"b'}),
        (r"target.cluster = 'it\'s'", {"target.cluster": "it's"}),
        ('target.cluster = "生产"', {"target.cluster": "生产"}),
    ],
)
def test_all_of(text: str, expected: dict[str, Any]) -> None:
    assert pipelines(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            'owner = "me"',
            "unknown field 'owner'; filterable fields: source.registry, source.repository, target.cluster, "
            "target.namespace, target.workload, disabled",
        ),
        ('target.cluster = "a" OR target.cluster = "b"', "OR is not supported here, only AND; " + PIPELINE_EXAMPLE),
        ('target.cluster != "a"', "operator '!=' is not supported, only '='; " + PIPELINE_EXAMPLE),
        ("target.cluster:a", "operator ':' is not supported"),
        ("target.cluster < a", "operator '<' is not supported"),
        ('target.cluster = "a" AND', "filter ends with AND; " + PIPELINE_EXAMPLE),
        ('target.cluster = "a', "unterminated string starting at position 17"),
        ("target.cluster = a !", "unexpected '!' at position 19"),
        ("target.cluster = a & b", "expected AND at position 19, got '&'"),
        ("target.cluster =", "expected a value after 'target.cluster ='"),
        ("target.cluster = (", "expected a value after 'target.cluster ='"),
        ("target.cluster", "expected '=' after 'target.cluster'; " + PIPELINE_EXAMPLE),
        ("target.cluster a", "expected '=' after 'target.cluster' at position 15"),
        ('target.cluster = "a" target.namespace = "b"', "expected AND at position 21, got 'target.namespace'"),
        ('target.cluster = "a" AND target.cluster = "b"', "target.cluster is compared more than once"),
        ("disabled = maybe", "disabled must be compared with true or false, got 'maybe'"),
        ("AND disabled = true", "expected a field name at position 0, got 'AND'"),
        ("NOT disabled = true", "expected a field name at position 0, got 'NOT'"),
        ('"x" = y', "expected a field name at position 0"),
        ("((disabled = true))", "expected a field name at position 1, got '('"),
    ],
)
def test_bad_all_of_filters_are_clear_errors(text: str, message: str) -> None:
    assert message in error_of(pipelines, text)


def test_any_of() -> None:
    assert runs("") == set()
    assert runs("state = FAILED") == {Run.FAILED}
    assert runs("state = FAILED OR state = running") == {Run.FAILED, Run.RUNNING}
    assert runs('(state = "SUCCEEDED")') == {Run.SUCCEEDED}
    # The values come back in filter order, repeats included; the caller decides what a repeat means.
    assert filtering.parse_any_of("s = b OR s = a OR s = b", "s", str, subject="x", example="") == ["b", "a", "b"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("state = DONE", "unknown state 'DONE'; states: QUEUED, RUNNING"),
        ("state = FAILED AND state = RUNNING", "AND is not supported here, only OR; " + RUN_EXAMPLE),
        ("tag = v1", "unknown field 'tag'; runs can be filtered by state; " + RUN_EXAMPLE),
        ("state = FAILED OR", "filter ends with OR"),
        ("state = FAILED state = RUNNING", "expected OR at position 15, got 'state'"),
    ],
)
def test_bad_any_of_filters_are_clear_errors(text: str, message: str) -> None:
    assert message in error_of(runs, text)


def test_comparisons_carry_unquoted_values_and_positions() -> None:
    assert filtering.parse_comparisons("a = 'x y' AND b=z", "AND", "") == [
        Comparison("a", "x y", 0),
        Comparison("b", "z", 14),
    ]


def test_a_value_parser_error_becomes_the_filter_violation() -> None:
    def only_even(raw: str) -> int:
        if int(raw) % 2:  # int() raises ValueError for non-numbers too
            raise ValueError(f"n must be even, got {raw}")
        return int(raw)

    assert filtering.parse_all_of("n = 4", {"n": only_even}, example="") == {"n": 4}
    assert error_of(lambda text: filtering.parse_all_of(text, {"n": only_even}, example=""), "n = 3") == (
        "n must be even, got 3"
    )


def test_errors_are_invalid_argument_on_filter() -> None:
    error = filtering.filter_error("boom")
    assert isinstance(error, InvalidArgument)
    assert [(v.field, v.description) for v in error.violations] == [("filter", "boom")]
    assert error.message == "invalid request: filter: boom"
