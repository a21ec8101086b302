"""Webhook authentication: each method, GitHub HMAC, sources configuration, the safe default."""

from __future__ import annotations

import hashlib
import hmac
import pathlib

import pytest

from conveyor.settings import SettingsError
from conveyor.v1 import pipeline_pb2
from conveyor_trigger.adapters.webhook_sources import load_sources_file, parse_sources
from conveyor_trigger.domain.formats import FORMATS
from conveyor_trigger.domain.webhook_auth import Authenticator, AuthMethod, Source, Unauthorized, shared_token_source

SECRET = "s3cret-token-0123456789"
BODY = b'{"events": []}'


def sign(body: bytes, secret: str = SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def source(kind: str, **kw: object) -> Source:
    return Source(name=kind, methods=(AuthMethod(kind, SECRET.encode(), **kw),))  # type: ignore[arg-type]


def auth(*sources: Source, allow: bool = False) -> Authenticator:
    return Authenticator(tuple(sources), allow_unauthenticated=allow)


@pytest.mark.parametrize(
    ("headers", "ok"),
    [
        ({"authorization": f"Bearer {SECRET}"}, True),
        ({"authorization": f"bearer   {SECRET}"}, True),
        ({"authorization": SECRET}, True),  # Harbor sends its "Auth Header" field verbatim
        ({"authorization": f"Bearer {SECRET}x"}, False),
        ({"authorization": f"Basic {SECRET}"}, False),
        ({"authorization": "Bearer "}, False),
        ({}, False),
    ],
)
def test_bearer(headers: dict[str, str], ok: bool) -> None:
    authenticator = auth(source("bearer"))
    if ok:
        assert authenticator.authenticate("harbor", headers, {}, BODY).name == "bearer"
    else:
        with pytest.raises(Unauthorized):
            authenticator.authenticate("harbor", headers, {}, BODY)


def test_custom_header_and_query_token() -> None:
    authenticator = auth(source("header", header="X-Api-Key"), source("query"))
    assert authenticator.authenticate("ecr", {"x-api-key": SECRET}, {}, BODY).name == "header"
    assert authenticator.authenticate("dockerhub", {}, {"token": SECRET}, BODY).name == "query"
    with pytest.raises(Unauthorized, match="invalid webhook credentials"):
        authenticator.authenticate("dockerhub", {}, {"token": "wrong"}, BODY)
    with pytest.raises(Unauthorized, match="missing webhook credentials"):
        authenticator.authenticate("dockerhub", {}, {}, BODY)


def test_github_hmac_signature_covers_the_body() -> None:
    authenticator = auth(source("github-hmac"))
    assert authenticator.authenticate("github", {"x-hub-signature-256": sign(BODY)}, {}, BODY).name == "github-hmac"
    with pytest.raises(Unauthorized):
        authenticator.authenticate("github", {"x-hub-signature-256": sign(BODY)}, {}, BODY + b" ")
    with pytest.raises(Unauthorized):
        authenticator.authenticate("github", {"x-hub-signature-256": sign(BODY, "other-secret-123456")}, {}, BODY)
    with pytest.raises(Unauthorized):
        authenticator.authenticate("github", {"x-hub-signature-256": sign(BODY)[7:]}, {}, BODY)


def test_shared_token_works_with_every_method() -> None:
    authenticator = auth(shared_token_source(SECRET, registry="registry.example.com"))
    for headers, query in [
        ({"authorization": f"Bearer {SECRET}"}, {}),
        ({"x-conveyor-token": SECRET}, {}),
        ({}, {"token": SECRET}),
        ({"x-hub-signature-256": sign(BODY)}, {}),
    ]:
        found = authenticator.authenticate("distribution", headers, query, BODY)
        assert found.registry == "registry.example.com"


def test_sources_can_be_restricted_to_formats() -> None:
    harbor_only = Source("harbor", (AuthMethod("bearer", SECRET.encode()),), formats=frozenset({"harbor"}))
    authenticator = auth(harbor_only)
    assert authenticator.authenticate("harbor", {"authorization": f"Bearer {SECRET}"}, {}, BODY)
    with pytest.raises(Unauthorized, match="no webhook source is configured for the 'quay' format"):
        authenticator.authenticate("quay", {"authorization": f"Bearer {SECRET}"}, {}, BODY)


def test_refuses_everything_when_nothing_is_configured() -> None:
    with pytest.raises(Unauthorized, match="CONVEYOR_WEBHOOK_TOKEN"):
        auth().authenticate("harbor", {"authorization": f"Bearer {SECRET}"}, {}, BODY)
    assert not auth().configured


def test_allow_unauthenticated_falls_back_to_the_anonymous_source() -> None:
    authenticator = Authenticator((source("bearer"),), allow_unauthenticated=True, default_registry="r.example.com")
    assert authenticator.authenticate("harbor", {"authorization": f"Bearer {SECRET}"}, {}, BODY).name == "bearer"
    anonymous = authenticator.authenticate("harbor", {}, {}, BODY)
    assert (anonymous.name, anonymous.registry) == ("anonymous", "r.example.com")


def test_empty_secret_never_matches_an_empty_credential() -> None:
    empty = Source("empty", (AuthMethod("bearer", b""), AuthMethod("query", b"")))
    with pytest.raises(Unauthorized):
        auth(empty).authenticate("harbor", {"authorization": ""}, {"token": ""}, BODY)


# --- sources file ---------------------------------------------------------------------------


def test_parse_sources_reads_every_field(tmp_path: pathlib.Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(SECRET + "\n")
    document = {
        "sources": [
            {"name": "harbor", "auth": "bearer", "token": SECRET, "formats": ["harbor"]},
            {"name": "hub", "auth": "query", "token_env": "HUB_TOKEN", "registry": "HTTPS://Index.Docker.io"},
            {"name": "ecr", "auth": "header", "header": "X-Api-Key", "token_file": str(token_file)},
            {"name": "gh", "auth": "github-hmac", "token": SECRET, "origin": "platform_build"},
            {"name": "lan", "auth": "none", "formats": ["distribution"], "registry": "registry.lan:5000"},
        ]
    }
    sources = {s.name: s for s in parse_sources(document, {"HUB_TOKEN": SECRET}, tuple(FORMATS))}
    assert sources["harbor"].formats == frozenset({"harbor"})
    assert sources["hub"].registry == "docker.io"
    assert sources["ecr"].methods[0].header == "X-Api-Key" and sources["ecr"].methods[0].secret == SECRET.encode()
    assert sources["gh"].origin == pipeline_pb2.IMAGE_ORIGIN_PLATFORM_BUILD
    assert sources["harbor"].origin == pipeline_pb2.IMAGE_ORIGIN_LOCAL_PUSH
    authenticator = Authenticator(tuple(sources.values()))
    assert authenticator.authenticate("distribution", {}, {}, BODY).name == "lan"
    assert authenticator.authenticate("ecr", {"x-api-key": SECRET}, {}, BODY).name == "ecr"


def test_parse_sources_lists_every_problem() -> None:
    document = {
        "sources": [
            {"name": "a", "auth": "password", "token": SECRET},
            {"name": "b", "auth": "bearer"},
            {"name": "c", "auth": "bearer", "token_env": "MISSING"},
            {"name": "d", "auth": "bearer", "token": "short"},
            {"name": "e", "auth": "bearer", "token": SECRET, "formats": ["harbor", "nexus"]},
            {"name": "e", "auth": "query", "token": SECRET, "colour": "blue"},
            {"name": "f", "auth": "query", "token": SECRET, "registry": "not a host", "origin": "mars"},
            "not a mapping",
        ]
    }
    with pytest.raises(SettingsError) as error:
        parse_sources(document, {}, tuple(FORMATS))
    message = str(error.value)
    for expected in [
        "source 'a': auth must be one of",
        "source 'b': give exactly one of token, token_env, token_file",
        "environment variable MISSING (token_env) is not set",
        "source 'd': the token is too short",
        "unknown format 'nexus'",
        "source 'e': duplicate name",
        "unknown keys colour",
        "registry 'not a host' is not a valid host",
        "origin must be one of",
        "sources[7]: expected a mapping",
    ]:
        assert expected in message


def test_load_sources_file_errors(tmp_path: pathlib.Path) -> None:
    missing = tmp_path / "missing.yaml"
    with pytest.raises(SettingsError, match="cannot read"):
        load_sources_file(missing, {}, tuple(FORMATS))
    broken = tmp_path / "broken.yaml"
    broken.write_text("sources: [\n")
    with pytest.raises(SettingsError, match="not valid YAML"):
        load_sources_file(broken, {}, tuple(FORMATS))
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text("- just a list\n")
    with pytest.raises(SettingsError, match="expected a mapping with a `sources` list"):
        load_sources_file(wrong, {}, tuple(FORMATS))


def test_sources_file_problems_name_their_line_and_the_file(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "sources.yaml"
    path.write_text(
        "sources:\n"  # 1
        "  - name: hub\n"  # 2
        "    auth: query\n"  # 3
        "    token: [not, a, string]\n"  # 4
        "    formats: []\n"  # 5
        "  - name: gh\n"  # 6
        "    auth: github-hmac\n"  # 7
        "    token_env: GH_SECRET\n"  # 8
        "    tokn: typo\n"  # 9
    )
    with pytest.raises(SettingsError) as error:
        load_sources_file(path, {}, tuple(FORMATS))
    assert str(error.value).splitlines() == [
        f"CONVEYOR_WEBHOOK_SOURCES_FILE={path}: invalid webhook sources:",
        "  source 'hub'.token: expected a string, not a list (line 4)",
        "  source 'hub'.formats: must be a non-empty list (line 5)",
        "  source 'gh': unknown keys tokn (known: auth, formats, header, name, origin, registry, token, token_env, "
        "token_file) (line 6)",
        "  source 'gh': environment variable GH_SECRET (token_env) is not set (line 6)",
    ]


def test_sources_file_duplicate_keys_and_numeric_tokens(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "sources.yaml"
    path.write_text("sources:\n  - name: a\n    auth: bearer\n    auth: query\n")
    with pytest.raises(SettingsError, match=r"not valid YAML at line 4, column 5: duplicate key 'auth'"):
        load_sources_file(path, {}, tuple(FORMATS))
    # YAML reads an all-digit token as a number: it is the token as written.
    path.write_text("sources:\n  - name: a\n    auth: bearer\n    token: 12345678901234567890\n")
    (loaded,) = load_sources_file(path, {}, tuple(FORMATS))
    assert loaded.methods[0].secret == b"12345678901234567890" and loaded.methods[0].header == "X-Conveyor-Token"
