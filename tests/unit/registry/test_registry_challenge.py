"""WWW-Authenticate parsing: the challenges real registries send, and malformed ones."""

from __future__ import annotations

import pytest

from conveyor.registry import Challenge, parse_www_authenticate


def test_distribution_bearer_challenge() -> None:
    header = (
        'Bearer realm="http://127.0.0.1:5001/token",service="conveyor-test-registry",scope="repository:team/app:pull"'
    )
    [challenge] = parse_www_authenticate(header)
    assert challenge.scheme == "bearer"
    assert challenge.realm == "http://127.0.0.1:5001/token"
    assert challenge.service == "conveyor-test-registry"
    assert challenge.scope == "repository:team/app:pull"
    assert challenge.error == ""


def test_insufficient_scope_with_several_scopes_and_spaces() -> None:
    header = (
        'Bearer realm="https://auth.docker.io/token", service="registry.docker.io", '
        'scope="repository:library/nginx:pull,push", error="insufficient_scope"'
    )
    [challenge] = parse_www_authenticate(header)
    assert challenge.scope == "repository:library/nginx:pull,push"
    assert challenge.error == "insufficient_scope"
    assert challenge.service == "registry.docker.io"


def test_basic_challenge_and_case_insensitive_names() -> None:
    [challenge] = parse_www_authenticate('BASIC Realm="conveyor-test"')
    assert challenge == Challenge("basic", {"realm": "conveyor-test"})


def test_several_challenges_in_one_header_and_across_headers() -> None:
    challenges = parse_www_authenticate(
        ['Basic realm="a", Bearer realm="https://auth.example/token",service=reg', "Negotiate abc123=="]
    )
    assert [c.scheme for c in challenges] == ["basic", "bearer", "negotiate"]
    assert challenges[0].realm == "a"
    assert challenges[1].realm == "https://auth.example/token"
    assert challenges[1].service == "reg"  # unquoted token value
    assert challenges[2].params == {"": "abc123=="}


def test_quoted_values_keep_commas_equals_and_escapes() -> None:
    [challenge] = parse_www_authenticate(r'Bearer realm="https://a.example/t?x=1,y=2",scope="say \"hi\""')
    assert challenge.realm == "https://a.example/t?x=1,y=2"
    assert challenge.scope == 'say "hi"'


def test_challenges_without_params() -> None:
    assert [c.scheme for c in parse_www_authenticate("Basic, Bearer")] == ["basic", "bearer"]


@pytest.mark.parametrize(
    "header",
    ["", "   ", ",,,", '"quoted"', "Bearer realm=", 'Bearer realm="unterminated', "=== ,, ;;", "Bearer ,realm"],
)
def test_malformed_headers_never_raise(header: str) -> None:
    challenges = parse_www_authenticate(header)
    assert all(isinstance(c, Challenge) for c in challenges)


def test_unterminated_quote_reads_to_the_end() -> None:
    [challenge] = parse_www_authenticate('Bearer realm="https://a.example/token')
    assert challenge.realm == "https://a.example/token"
