"""conveyor.aip.paging: the AIP-158 page_size policy."""

from __future__ import annotations

import pytest

from conveyor.aip.paging import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, PageSizePolicy, page_size
from conveyor.errors import FieldViolation, InvalidArgument


def test_config_figures_are_kept() -> None:
    assert (DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE) == (50, 1000)


@pytest.mark.parametrize(("requested", "served"), [(0, 50), (1, 1), (7, 7), (1000, 1000), (1001, 1000), (5000, 1000)])
def test_default_policy(requested: int, served: int) -> None:
    assert page_size(requested) == served


@pytest.mark.parametrize("requested", [-1, -1000])
def test_negative_sizes_are_a_page_size_violation(requested: int) -> None:
    with pytest.raises(InvalidArgument) as error:
        page_size(requested)
    assert error.value.violations == [FieldViolation("page_size", "must not be negative")]


def test_a_method_can_declare_its_own_figures() -> None:
    tags = PageSizePolicy(default=100, maximum=1000)
    assert (tags.resolve(0), tags.resolve(250), tags.resolve(2000)) == (100, 250, 1000)
    assert page_size(0, tags) == 100
    with pytest.raises(InvalidArgument):
        tags.resolve(-5)


@pytest.mark.parametrize(("default", "maximum"), [(0, 10), (11, 10), (-1, 10)])
def test_inconsistent_figures_are_a_programming_error(default: int, maximum: int) -> None:
    with pytest.raises(ValueError, match="default <= maximum"):
        PageSizePolicy(default=default, maximum=maximum)
