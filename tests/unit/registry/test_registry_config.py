"""Registry settings from CONVEYOR_REGISTRIES_FILE and CONVEYOR_REGISTRY_<ID>_*: parsing, problems, redaction."""

from __future__ import annotations

import pathlib

import pytest

from conveyor.registry import (
    ANONYMOUS,
    BasicCredentials,
    BearerCredentials,
    RegistryClient,
    RegistryConfig,
    RegistrySettings,
    Secret,
)
from conveyor.settings import SettingsError

PASSWORD = "hunter2-very-secret"
TOKEN = "tok-0123456789-secret"


def write(tmp_path: pathlib.Path, name: str, text: str) -> pathlib.Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_file_with_every_credential_form(tmp_path: pathlib.Path) -> None:
    password_file = write(tmp_path, "pw", PASSWORD + "\n")
    token_file = write(tmp_path, "tok", TOKEN)
    ca = write(tmp_path, "ca.pem", "-----BEGIN CERTIFICATE-----\n")
    registries = write(
        tmp_path,
        "registries.yaml",
        f"""
registries:
  - host: Registry.Example.com
    username: ci
    password_file: {password_file}
  - host: ghcr.io
    username: bot
    password_env: GHCR_PAT
  - host: inline.example
    username: u
    password: {PASSWORD}
  - host: gar.example
    token_file: {token_file}
  - host: 127.0.0.1:5000
    scheme: http
  - host: internal.example:5443
    ca_file: {ca}
    tls_verify: true
  - host: index.docker.io
""",
    )
    settings = RegistrySettings.from_env({"CONVEYOR_REGISTRIES_FILE": str(registries), "GHCR_PAT": PASSWORD})
    example = settings.for_host("registry.example.com")
    assert example.host == "registry.example.com"  # normalised
    assert isinstance(example.credentials, BasicCredentials)
    assert example.credentials.username == "ci"
    assert example.credentials.password.reveal() == PASSWORD  # trailing newline stripped
    ghcr = settings.for_host("ghcr.io").credentials
    assert isinstance(ghcr, BasicCredentials)
    assert ghcr.password.reveal() == PASSWORD
    assert ghcr.password.origin == "environment variable GHCR_PAT"
    inline = settings.for_host("inline.example").credentials
    assert isinstance(inline, BasicCredentials)
    assert inline.password.reveal() == PASSWORD
    gar = settings.for_host("gar.example").credentials
    assert isinstance(gar, BearerCredentials)
    assert gar.token.reveal() == TOKEN
    local = settings.for_host("127.0.0.1:5000")
    assert (local.scheme, local.base_url, local.credentials) == ("http", "http://127.0.0.1:5000", ANONYMOUS)
    assert settings.for_host("internal.example:5443").ca_file == ca
    # Docker Hub: configured under an alias, found under the canonical name, API at registry-1.
    hub = settings.for_host("docker.io")
    assert hub.source.startswith(str(registries))
    assert hub.base_url == "https://registry-1.docker.io"


def test_unconfigured_registry_defaults_to_https_anonymous() -> None:
    config = RegistrySettings().for_host("HTTPS://Quay.io/")
    assert config == RegistryConfig("quay.io")
    assert config.base_url == "https://quay.io"
    assert config.credentials is ANONYMOUS
    assert "not configured" in config.where()


def test_password_file_is_reread_so_rotation_works(tmp_path: pathlib.Path) -> None:
    password_file = write(tmp_path, "pw", "old-password")
    settings = RegistrySettings.from_env(
        {
            "CONVEYOR_REGISTRY_MAIN_HOST": "registry.example.com",
            "CONVEYOR_REGISTRY_MAIN_USERNAME": "ci",
            "CONVEYOR_REGISTRY_MAIN_PASSWORD_FILE": str(password_file),
        }
    )
    credentials = settings.for_host("registry.example.com").credentials
    assert isinstance(credentials, BasicCredentials)
    assert credentials.password.reveal() == "old-password"
    password_file.write_text("new-password")
    assert credentials.password.reveal() == "new-password"


def test_environment_registries_and_global_knobs(tmp_path: pathlib.Path) -> None:
    registries = write(tmp_path, "r.yaml", "registries:\n  - host: ghcr.io\n    username: from-file\n    password: x\n")
    settings = RegistrySettings.from_env(
        {
            "CONVEYOR_REGISTRIES_FILE": str(registries),
            "CONVEYOR_REGISTRIES_TIMEOUT": "3s",
            "CONVEYOR_REGISTRIES_RETRIES": "4",
            "CONVEYOR_REGISTRIES_BACKOFF": "100ms",
            "CONVEYOR_REGISTRY_GHCR_HOST": "ghcr.io",
            "CONVEYOR_REGISTRY_GHCR_TOKEN": TOKEN,
            "CONVEYOR_REGISTRY_LOCAL1_HOST": "127.0.0.1:5000",
            "CONVEYOR_REGISTRY_LOCAL1_SCHEME": "HTTP",
            "CONVEYOR_REGISTRY_LOCAL1_TLS_VERIFY": "false",
        }
    )
    assert (settings.timeout, settings.retries, settings.backoff) == (3.0, 4, 0.1)
    ghcr = settings.for_host("ghcr.io")
    # The environment entry replaces the file entry for the same host.
    assert isinstance(ghcr.credentials, BearerCredentials)
    assert ghcr.source == "CONVEYOR_REGISTRY_GHCR_* environment variables"
    local = settings.for_host("127.0.0.1:5000")
    assert (local.scheme, local.tls_verify) == ("http", False)


def test_every_problem_is_reported_at_once(tmp_path: pathlib.Path) -> None:
    registries = write(
        tmp_path,
        "r.yaml",
        """
registries:
  - host: a.example
    scheme: ftp
  - host: b.example
    username: ci
  - host: c.example
    password_env: MISSING_VAR
    username: ci
  - host: d.example
    username: ci
    password: x
    token: y
  - host: e.example
    passwrd: typo
  - username: nobody
  - host: a.example
  - host: f.example
    password: x
    password_file: /nonexistent
""",
    )
    with pytest.raises(SettingsError) as caught:
        RegistrySettings.from_env(
            {
                "CONVEYOR_REGISTRIES_FILE": str(registries),
                "CONVEYOR_REGISTRY_X_USERNAME": "orphan",
                "CONVEYOR_REGISTRY_TYPO_PASWORD": "x",
                "CONVEYOR_REGISTRY_Y_HOST": "y.example",
                "CONVEYOR_REGISTRY_Y_PASSWORD_FILE": str(tmp_path / "missing"),
                "CONVEYOR_REGISTRY_Y_USERNAME": "ci",
                "CONVEYOR_REGISTRIES_TIMEOUT": "soon",
            }
        )
    message = str(caught.value)
    expected = [
        "registries[0]: scheme 'ftp' must be https or http",
        "registries[1]: username 'ci' needs a password",
        "registries[2]: password_env names environment variable MISSING_VAR, which is not set",
        "registries[3]: configure either a token or a username and password, not both",
        "registries[4]: unknown keys passwrd",
        "registries[5]: `host` is required",
        "registries[6]: registry a.example is listed twice",
        "registries[7]: set only one of password, password_file",
        "CONVEYOR_REGISTRY_X_HOST is not set",
        "CONVEYOR_REGISTRY_TYPO_PASWORD: not a registry setting",
        "CONVEYOR_REGISTRY_Y_PASSWORD_FILE: cannot read",
        "CONVEYOR_REGISTRIES_TIMEOUT='soon'",
    ]
    for fragment in expected:
        assert fragment in message, fragment


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("registries: {host: a}", "expected a mapping with a `registries` list"),
        ("registries: [\n", "not valid YAML"),
        ("registries: []\nextra: 1\n", "unknown keys extra"),
    ],
)
def test_malformed_files(tmp_path: pathlib.Path, text: str, problem: str) -> None:
    registries = write(tmp_path, "r.yaml", text)
    with pytest.raises(SettingsError, match=problem):
        RegistrySettings.from_env({"CONVEYOR_REGISTRIES_FILE": str(registries)})


def test_missing_file_is_reported() -> None:
    with pytest.raises(SettingsError, match="cannot read"):
        RegistrySettings.from_env({"CONVEYOR_REGISTRIES_FILE": "/nonexistent/registries.yaml"})


def test_empty_file_means_no_registries(tmp_path: pathlib.Path) -> None:
    registries = write(tmp_path, "r.yaml", "")
    assert RegistrySettings.from_env({"CONVEYOR_REGISTRIES_FILE": str(registries)}).registries == {}


def test_reprs_never_show_secrets(tmp_path: pathlib.Path) -> None:
    password_file = write(tmp_path, "pw", PASSWORD)
    settings = RegistrySettings.from_env(
        {
            "CONVEYOR_REGISTRY_A_HOST": "a.example",
            "CONVEYOR_REGISTRY_A_USERNAME": "ci",
            "CONVEYOR_REGISTRY_A_PASSWORD": PASSWORD,
            "CONVEYOR_REGISTRY_B_HOST": "b.example",
            "CONVEYOR_REGISTRY_B_TOKEN": TOKEN,
            "CONVEYOR_REGISTRY_C_HOST": "c.example",
            "CONVEYOR_REGISTRY_C_USERNAME": "ci",
            "CONVEYOR_REGISTRY_C_PASSWORD_FILE": str(password_file),
        }
    )
    client = RegistryClient(settings)
    shown = " ".join(
        [repr(settings), str(settings), repr(client.settings)]
        + [repr(c) for c in settings.registries.values()]
        + [repr(c.credentials) for c in settings.registries.values()]
        + [str(c.credentials) for c in settings.registries.values()]
        + [c.credentials.describe() for c in settings.registries.values()]
    )
    assert PASSWORD not in shown
    assert TOKEN not in shown
    assert "environment variable CONVEYOR_REGISTRY_A_PASSWORD" in shown
    assert f"file {password_file}" in shown
    secret = Secret("environment variable X", PASSWORD)
    assert PASSWORD not in repr(secret)
    assert PASSWORD not in str(secret)
    assert PASSWORD not in f"{secret}"
    assert secret.reveal() == PASSWORD


def test_from_env_builds_a_client(tmp_path: pathlib.Path) -> None:
    client = RegistryClient.from_env(
        {"CONVEYOR_REGISTRY_L_HOST": "127.0.0.1:5000", "CONVEYOR_REGISTRY_L_SCHEME": "http"}
    )
    assert client.settings.for_host("127.0.0.1:5000").scheme == "http"
    with pytest.raises(SettingsError):
        RegistryClient.from_env({"CONVEYOR_REGISTRY_L_SCHEME": "http"})


def test_file_problems_name_the_variable_the_entry_and_its_line(tmp_path: pathlib.Path) -> None:
    registries = write(
        tmp_path,
        "r.yaml",
        "registries:\n"  # 1
        "  - host: ok.example\n"  # 2
        "    username: 1234\n"  # 3: numbers are text to YAML's author
        "    password: 5678\n"  # 4
        "  - host: bad host\n"  # 5
        "    scheme: gopher\n"  # 6
        "  - host: c.example\n"  # 7
        "    tls_verify: maybe\n",  # 8
    )
    with pytest.raises(SettingsError) as caught:
        RegistrySettings.from_env({"CONVEYOR_REGISTRIES_FILE": str(registries)})
    lines = str(caught.value).splitlines()[1:]
    label = f"  CONVEYOR_REGISTRIES_FILE={registries}"
    # Every problem of one entry on its own line.
    assert lines == [
        f"{label}: registries[1]: host 'bad host' is not a registry host[:port] (line 5)",
        f"{label}: registries[1]: scheme 'gopher' must be https or http (line 5)",
        f"{label}: registries[2].tls_verify: expected true or false, not 'maybe' (line 8)",
    ]
    registries.write_text("registries:\n  - host: ok.example\n    username: 1234\n    password: 5678\n")
    credentials = RegistrySettings.from_env({"CONVEYOR_REGISTRIES_FILE": str(registries)}).for_host("ok.example")
    assert isinstance(credentials.credentials, BasicCredentials)
    assert (credentials.credentials.username, credentials.credentials.password.reveal()) == ("1234", "5678")
    assert credentials.credentials.password.origin == f"the inline `password` in {registries}"
    assert credentials.source == f"{registries}: registries[0]"


def test_a_host_listed_twice_is_found_under_any_spelling(tmp_path: pathlib.Path) -> None:
    registries = write(
        tmp_path,
        "r.yaml",
        "registries:\n  - host: index.docker.io\n  - host: Docker.IO\n    username: ci\n",
    )
    with pytest.raises(SettingsError) as caught:
        RegistrySettings.from_env({"CONVEYOR_REGISTRIES_FILE": str(registries)})
    (problem,) = str(caught.value).splitlines()[1:]
    # Reported at the second entry, which is not checked further (its missing password is not reported).
    assert problem.endswith(": registries[1]: registry docker.io is listed twice (line 3)")
