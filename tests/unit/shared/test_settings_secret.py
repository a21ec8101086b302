"""A secret setting's value never reaches an error message."""

from __future__ import annotations

from conveyor.settings import PAGE_TOKEN_KEY


def test_an_invalid_page_token_key_is_reported_without_its_value() -> None:
    problems: list[str] = []
    PAGE_TOKEN_KEY.read({"CONVEYOR_PAGE_TOKEN_KEY": "short-secret-value"}, problems)
    assert len(problems) == 1
    assert problems[0].startswith("CONVEYOR_PAGE_TOKEN_KEY=(secret): ")
    assert "short-secret-value" not in problems[0]
