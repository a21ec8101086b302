"""conveyor.aip.page_tokens: signed, opaque keyset tokens bound to their query."""

from __future__ import annotations

import base64
import json

import pytest

from conveyor.aip.page_tokens import (
    INVALID_TOKEN_MESSAGE,
    MAX_TOKEN_CHARS,
    OTHER_QUERY_MESSAGE,
    PageTokenCodec,
    fingerprint,
)
from conveyor.errors import FieldViolation, InvalidArgument

KEY = b"k" * 32
OTHER_KEY = b"o" * 32


def codec(key: bytes = KEY) -> PageTokenCodec:
    return PageTokenCodec(key)


def rejection(token: str, query: str, types: tuple[type, ...], verifier: PageTokenCodec | None = None) -> str:
    with pytest.raises(InvalidArgument) as error:
        (verifier or codec()).decode(token, query, types)
    [violation] = error.value.violations
    assert violation.field == "page_token"
    return violation.description


def unpadded(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def test_round_trip_is_opaque_and_url_safe() -> None:
    query = fingerprint("runs", "-", "state=4")
    token = codec().encode([1700000000000000, "web", "01h"], query)
    assert codec().decode(token, query, (int, str, str)) == [1700000000000000, "web", "01h"]
    assert "web" not in token and "=" not in token
    assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def test_unicode_cursor_values_survive() -> None:
    query = fingerprint("pipelines", "")
    token = codec().encode(["流水线-ü"], query)
    assert codec().decode(token, query, (str,)) == ["流水线-ü"]


def test_every_flipped_byte_is_detected() -> None:
    query = fingerprint("pipelines", "")
    raw = base64.urlsafe_b64decode(codec().encode(["web"], query) + "==")
    for position in range(len(raw)):
        tampered = bytearray(raw)
        tampered[position] ^= 0x01
        assert rejection(unpadded(bytes(tampered)), query, (str,)) == INVALID_TOKEN_MESSAGE


def test_a_forged_token_in_the_old_unsigned_format_is_rejected() -> None:
    # Before issue 9 a token was plain base64 JSON; anyone could write one.
    forged = unpadded(json.dumps({"v": 1, "k": ["web"], "b": "x"}).encode())
    assert rejection(forged, "x", (str,)) == INVALID_TOKEN_MESSAGE


def test_an_edited_cursor_with_a_recomputed_body_is_rejected() -> None:
    query = fingerprint("pipelines", "")
    raw = base64.urlsafe_b64decode(codec().encode(["web"], query) + "==")
    mac, payload = raw[:32], raw[32:]
    edited = payload.replace(b'"web"', b'"zzz"')
    assert edited != payload
    assert rejection(unpadded(mac + edited), query, (str,)) == INVALID_TOKEN_MESSAGE


def test_a_token_signed_with_another_key_is_rejected() -> None:
    query = fingerprint("pipelines", "")
    token = codec(OTHER_KEY).encode(["web"], query)
    assert rejection(token, query, (str,)) == INVALID_TOKEN_MESSAGE


def test_replicas_sharing_the_key_accept_each_others_tokens() -> None:
    query = fingerprint("pipelines", "")
    token = PageTokenCodec.from_setting("s" * 40).encode(["web"], query)
    assert PageTokenCodec.from_setting("s" * 40).decode(token, query, (str,)) == ["web"]


def test_a_token_reused_with_another_filter_says_so() -> None:
    token = codec().encode(["a"], fingerprint("pipelines", 'target.cluster = "x"'))
    description = rejection(token, fingerprint("pipelines", 'target.cluster = "y"'), (str,))
    assert description == OTHER_QUERY_MESSAGE
    assert description == (
        "the page token was issued for a different parent or filter; "
        "repeat the request's filter or start again without a page token"
    )


def test_fingerprint_parts_do_not_run_together() -> None:
    assert fingerprint("a", "b") != fingerprint("a\x1fb")
    assert fingerprint("a", "b") != fingerprint("ab")
    assert fingerprint("runs", "p", "") == fingerprint("runs", "p", "")


def test_the_error_is_a_page_token_field_violation() -> None:
    with pytest.raises(InvalidArgument) as error:
        codec().decode("garbage!", "q", (str,))
    assert error.value.violations == [FieldViolation("page_token", INVALID_TOKEN_MESSAGE)]


@pytest.mark.parametrize(
    "token",
    [
        "garbage!",  # not base64url
        "e30",  # base64 of "{}": too short to carry a signature
        "eyJ2IjoxLCJrIjpbMV0sImIiOiJ4In0",
        "\u00e9",  # not ASCII
        "a",  # impossible base64 length
        "A" * (MAX_TOKEN_CHARS + 4),
        unpadded(b"\x00" * 32),  # a MAC and no payload
        "abc=d",  # padding in the middle
    ],
)
def test_malformed_tokens_are_rejected(token: str) -> None:
    assert rejection(token, "q", (str,)) == INVALID_TOKEN_MESSAGE


@pytest.mark.parametrize(("types", "cursor"), [((int,), ["web"]), ((str, str), ["web"]), ((str,), [])])
def test_a_cursor_of_another_shape_is_rejected(types: tuple[type, ...], cursor: list[str]) -> None:
    # Signed by us, but for another method (a pipelines token presented to ListRuns with the same query).
    assert rejection(codec().encode(cursor, "q"), "q", types) == INVALID_TOKEN_MESSAGE


def test_a_signed_boolean_is_not_an_integer_cursor() -> None:
    raw = base64.urlsafe_b64decode(codec().encode([1], "q") + "==")
    payload = raw[32:].replace(b"[1]", b"[true]")
    token = unpadded(codec()._mac(KEY, payload) + payload)
    assert rejection(token, "q", (int,)) == INVALID_TOKEN_MESSAGE


def test_cursor_values_are_strings_or_integers() -> None:
    for bad in (True, 1.5, None, ["x"]):
        with pytest.raises(TypeError):
            codec().encode([bad], "q")  # type: ignore[list-item]


def test_key_rotation_accepts_previous_keys_and_signs_with_the_new_one() -> None:
    query = fingerprint("runs", "-", "")
    old_token = codec(OTHER_KEY).encode(["a"], query)
    rotated = PageTokenCodec(KEY, previous_keys=[OTHER_KEY])
    assert rotated.decode(old_token, query, (str,)) == ["a"]
    new_token = rotated.encode(["b"], query)
    assert codec(KEY).decode(new_token, query, (str,)) == ["b"]
    assert rejection(new_token, query, (str,), verifier=codec(OTHER_KEY)) == INVALID_TOKEN_MESSAGE


def test_from_setting_takes_comma_separated_secrets_first_one_signing() -> None:
    new, old = "n" * 32, "o" * 32
    query = fingerprint("x")
    legacy = PageTokenCodec.from_setting(old).encode([1], query)
    both = PageTokenCodec.from_setting(f" {new} , {old} ")
    assert both.decode(legacy, query, (int,)) == [1]
    assert PageTokenCodec.from_setting(new).decode(both.encode([2], query), query, (int,)) == [2]


@pytest.mark.parametrize("value", ["", "   ", "short", "s" * 32 + ",", "s" * 32 + ",short"])
def test_unusable_settings_are_rejected_without_echoing_the_secret(value: str) -> None:
    with pytest.raises(ValueError) as error:
        PageTokenCodec.from_setting(value)
    assert "short" not in str(error.value) and "s" * 32 not in str(error.value)


def test_keys_must_be_long_enough() -> None:
    with pytest.raises(ValueError, match="at least 32 bytes"):
        PageTokenCodec(b"x" * 31)
    with pytest.raises(ValueError, match="at least 32 bytes"):
        PageTokenCodec(KEY, previous_keys=[b"x"])


def test_ephemeral_codecs_do_not_trust_each_other() -> None:
    first, second = PageTokenCodec.ephemeral(), PageTokenCodec.ephemeral()
    token = first.encode(["a"], "q")
    assert first.decode(token, "q", (str,)) == ["a"]
    assert rejection(token, "q", (str,), verifier=second) == INVALID_TOKEN_MESSAGE
