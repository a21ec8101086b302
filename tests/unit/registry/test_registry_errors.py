"""Mapping final registry answers to RegistryError kinds and actionable messages."""

from __future__ import annotations

import pytest

from conveyor.registry import (
    ANONYMOUS,
    BasicCredentials,
    BearerCredentials,
    Challenge,
    RegistryConfig,
    RegistryError,
    Secret,
    error_for_reply,
)

PASSWORD = "p4ssw0rd-secret"
BASIC = BasicCredentials("ci", Secret("environment variable REG_PASSWORD", PASSWORD))


def error(status: int, *, credentials=ANONYMOUS, codes=(), challenges=(), reference="v1") -> RegistryError:  # type: ignore[no-untyped-def]
    config = RegistryConfig("registry.example.com", credentials=credentials, source="/etc/conveyor/registries.yaml")
    return error_for_reply(
        status,
        challenges=list(challenges),
        error_codes=list(codes),
        config=config,
        repository="team/app",
        reference=reference,
        operation="read team/app:v1",
    )


def test_401_without_credentials_says_none_are_configured() -> None:
    failure = error(401)
    assert failure.kind == "unauthorized"
    assert failure.registry == "registry.example.com"
    assert "requires credentials" in failure.message
    assert "none are configured" in failure.message
    assert "/etc/conveyor/registries.yaml" in failure.message


def test_401_with_credentials_names_the_user_and_the_secret_source_not_the_secret() -> None:
    failure = error(401, credentials=BASIC)
    assert failure.kind == "unauthorized"
    assert "registry.example.com" in failure.message
    assert "user 'ci'" in failure.message
    assert "REG_PASSWORD" in failure.message
    assert PASSWORD not in failure.message
    assert PASSWORD not in repr(failure)


def test_insufficient_scope_with_credentials_is_forbidden() -> None:
    challenge = Challenge("bearer", {"realm": "https://auth", "error": "insufficient_scope"})
    failure = error(401, credentials=BASIC, challenges=[challenge])
    assert failure.kind == "forbidden"
    assert "no pull access to team/app" in failure.message


def test_403_is_forbidden_with_a_hint() -> None:
    failure = error(403, credentials=BearerCredentials(Secret("file /run/token", "tok")))
    assert failure.kind == "forbidden"
    assert "grant pull access to team/app" in failure.message
    assert "file /run/token" in failure.message
    assert failure.status == 403


@pytest.mark.parametrize(
    ("codes", "reference", "expected"),
    [
        (["NAME_UNKNOWN"], "v1", "repository team/app does not exist on registry registry.example.com"),
        (["MANIFEST_UNKNOWN"], "v1", "tag 'v1' does not exist in registry.example.com/team/app"),
        (["MANIFEST_UNKNOWN"], "sha256:" + "a" * 64, "manifest sha256:aaaa"),
        ([], "v1", "registry.example.com/team/app:v1 does not exist (no such repository or tag)"),
        ([], None, "repository team/app does not exist"),
    ],
)
def test_404_names_the_missing_repository_or_tag(codes: list[str], reference: str | None, expected: str) -> None:
    failure = error(404, codes=codes, reference=reference)
    assert failure.kind == "not_found"
    assert expected in failure.message


def test_other_statuses_are_protocol_errors_with_the_registry_codes() -> None:
    failure = error(400, codes=["NAME_INVALID"])
    assert failure.kind == "protocol"
    assert "HTTP 400 (NAME_INVALID)" in failure.message


def test_unknown_kinds_are_refused() -> None:
    with pytest.raises(ValueError):
        RegistryError("teapot", "r", "m")
