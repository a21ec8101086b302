"""Page tokens and client-side paging of tag lists."""

from __future__ import annotations

import pytest

from conveyor.registry.pagination import PageCursor, client_side_page, decode_page_token, encode_page_token


def test_tokens_round_trip_and_are_opaque() -> None:
    for cursor in (
        PageCursor("team/app", next_path="/v2/team/app/tags/list?last=v9&n=3"),
        PageCursor("team/app", after="v1.2.3"),
    ):
        token = encode_page_token(cursor)
        assert "/" not in token and "v1.2.3" not in token and "=" not in token
        assert decode_page_token(token, "team/app") == cursor


def test_empty_token_is_the_first_page() -> None:
    assert decode_page_token("", "team/app") == PageCursor("team/app")


@pytest.mark.parametrize("token", ["not base64!", "bm90IGpzb24", encode_page_token(PageCursor("other/repo"))])
def test_foreign_or_garbled_tokens_are_rejected(token: str) -> None:
    with pytest.raises(ValueError, match="page token"):
        decode_page_token(token, "team/app")


def test_a_token_cannot_point_outside_the_repository_tag_list() -> None:
    token = encode_page_token(PageCursor("team/app", next_path="/v2/other/secret/tags/list"))
    with pytest.raises(ValueError, match="page token"):
        decode_page_token(token, "team/app")


def test_client_side_pages_are_sorted_and_complete() -> None:
    tags = ["v3", "latest", "v1", "v2", "v10", "a"]
    seen: list[str] = []
    after = ""
    pages = 0
    while True:
        page, after = client_side_page(tags, 4, after)
        seen += page
        pages += 1
        if not after:
            break
    assert pages == 2
    assert seen == sorted(tags)


def test_client_side_page_exact_fit_has_no_next_page() -> None:
    assert client_side_page(["b", "a"], 2, "") == (["a", "b"], "")
    assert client_side_page([], 5, "") == ([], "")
    assert client_side_page(["a", "b", "c"], 2, "b") == (["c"], "")
