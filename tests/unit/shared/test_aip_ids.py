"""conveyor.aip.ids: RFC-1034 label ids, and generated ULID-based ids that are valid ones."""

from __future__ import annotations

import pytest
from ulid import ULID

from conveyor import names
from conveyor.aip import ids
from conveyor.errors import FieldViolation, InvalidArgument


@pytest.mark.parametrize("value", ["a", "web", "web-1", "a" * 63, "a1-b2", "x0"])
def test_valid_ids(value: str) -> None:
    assert ids.is_valid_id(value)
    ids.validate_id(value)


@pytest.mark.parametrize(
    "value", ["", "1abc", "-a", "a-", "A", "aB", "a_b", "a.b", "a" * 64, "ü", "a b", "a\n", "web\n"]
)
def test_invalid_ids(value: str) -> None:
    assert not ids.is_valid_id(value)


def test_the_violation_is_config_s_message_on_the_named_field() -> None:
    with pytest.raises(InvalidArgument) as error:
        ids.validate_id("1web", "pipeline_id")
    assert error.value.violations == [
        FieldViolation(
            "pipeline_id",
            "'1web' is not a valid id: 1-63 lowercase letters, digits and hyphens, "
            "starting with a letter and not ending with a hyphen",
        )
    ]
    with pytest.raises(InvalidArgument) as same:
        names.validate_user_id("1web")
    assert same.value.violations == error.value.violations


def test_a_bare_ulid_is_what_the_validator_rejects() -> None:
    assert not ids.is_valid_id(names.new_id())


def test_generated_ids_are_valid_and_unique() -> None:
    generated = [ids.new_id("p") for _ in range(1000)]
    assert all(ids.is_valid_id(value) for value in generated)
    assert len(set(generated)) == 1000
    assert all(value.startswith("p") and len(value) == 27 for value in generated)


def test_generated_ids_sort_by_time() -> None:
    times = [0, 1, 999, 1_700_000_000_000, 1_700_000_000_001, 2**48 - 1]
    derived = [ids.derived_id("r", ms, "x") for ms in times]
    assert sorted(derived) == derived
    assert [ULID.from_str(value[1:].upper()).milliseconds for value in derived] == times
    assert all(ids.is_valid_id(value) for value in derived)


def test_new_ids_carry_the_current_time() -> None:
    before = ULID().milliseconds
    value = ids.new_id("run-")
    after = ULID().milliseconds
    assert before <= ULID.from_str(value.removeprefix("run-").upper()).milliseconds <= after


def test_derived_ids_are_deterministic() -> None:
    assert ids.derived_id("r", 5, "push", "web") == ids.derived_id("r", 5, "push", "web")
    assert ids.derived_id("r", 5, "push", "web") != ids.derived_id("r", 5, "push", "api")
    # Same ULID as conveyor.names.derived_id: only the prefix is new.
    assert ids.derived_id("r", 5, "push", "web") == "r" + names.derived_id(5, "push", "web")


@pytest.mark.parametrize("prefix", ["", "1", "-", "P", "p_", "p\n", "a" * 38])
def test_prefixes_must_keep_ids_valid(prefix: str) -> None:
    with pytest.raises(ValueError, match="id prefix"):
        ids.new_id(prefix)
    with pytest.raises(ValueError, match="id prefix"):
        ids.derived_id(prefix, 0)


def test_the_longest_prefix_still_gives_a_valid_id() -> None:
    value = ids.new_id("a" * 37)
    assert len(value) == 63 and ids.is_valid_id(value)
