"""Per-registry settings: where each registry is, how to reach it, and which credentials to use.

See the `conveyor.registry` docstring for the file format and the environment variables.
Secrets live in `Secret` objects whose repr names where the secret comes from, never its value.
"""

from __future__ import annotations

import os
import pathlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from conveyor.refs import DOCKER_HUB, is_valid_registry, normalize_registry
from conveyor.settings import EnvReader, SettingsError

DEFAULT_TIMEOUT = 10.0
DEFAULT_RETRIES = 2
DEFAULT_BACKOFF = 0.5
# Docker Hub's API does not live at docker.io.
_API_HOSTS = {DOCKER_HUB: "registry-1.docker.io"}
_ENV_PREFIX = "CONVEYOR_REGISTRY_"
_ENV_FIELDS = (
    "HOST",
    "SCHEME",
    "USERNAME",
    "PASSWORD",
    "PASSWORD_FILE",
    "TOKEN",
    "TOKEN_FILE",
    "CA_FILE",
    "TLS_VERIFY",
)
_ENV_NAME = re.compile(rf"^{_ENV_PREFIX}([A-Z0-9]+)_({'|'.join(sorted(_ENV_FIELDS, key=len, reverse=True))})$")
_ENV_BOOLEANS = {
    "1": True,
    "true": True,
    "yes": True,
    "on": True,
    "0": False,
    "false": False,
    "no": False,
    "off": False,
}
_FILE_KEYS = {
    "host",
    "scheme",
    "username",
    "password",
    "password_env",
    "password_file",
    "token",
    "token_env",
    "token_file",
    "ca_file",
    "tls_verify",
}


@dataclass(frozen=True)
class Secret:
    """A password or token and where it comes from; files are re-read on use so rotation works."""

    origin: str  # human description: "environment variable X", "file /path", "inline value in FILE"
    _value: str = field(default="", repr=False, compare=False)
    path: pathlib.Path | None = None

    def reveal(self) -> str:
        """The secret itself: only for building an Authorization header. Raises OSError for unreadable files."""
        if self.path is not None:
            return self.path.read_text().strip()
        return self._value

    def __repr__(self) -> str:
        return f"Secret(<redacted, from {self.origin}>)"

    __str__ = __repr__


@dataclass(frozen=True)
class Anonymous:
    def describe(self) -> str:
        return "no credentials"


@dataclass(frozen=True)
class BasicCredentials:
    """Username + password: sent as HTTP Basic to the registry, or to its token service."""

    username: str
    password: Secret

    def describe(self) -> str:
        return f"user {self.username!r} with the password from {self.password.origin}"


@dataclass(frozen=True)
class BearerCredentials:
    """A static bearer token sent as `Authorization: Bearer ...` on every request."""

    token: Secret

    def describe(self) -> str:
        return f"the bearer token from {self.token.origin}"


Credentials = Anonymous | BasicCredentials | BearerCredentials
ANONYMOUS = Anonymous()


@dataclass(frozen=True)
class RegistryConfig:
    """How to reach one registry. `host` is normalised (`conveyor.refs.normalize_registry`)."""

    host: str
    scheme: str = "https"
    credentials: Credentials = ANONYMOUS
    tls_verify: bool = True
    ca_file: pathlib.Path | None = None
    source: str = ""  # where it was configured, for error messages; "" = not configured (defaults)

    @property
    def api_host(self) -> str:
        return _API_HOSTS.get(self.host, self.host)

    @property
    def base_url(self) -> str:
        return f"{self.scheme}://{self.api_host}"

    def where(self) -> str:
        """A hint naming where to change this registry's settings."""
        if self.source:
            return f"configured in {self.source}"
        return (
            "not configured, so Conveyor uses https and no credentials: add it to CONVEYOR_REGISTRIES_FILE "
            "or set CONVEYOR_REGISTRY_<ID>_HOST and its credential variables"
        )


@dataclass(frozen=True)
class RegistrySettings:
    registries: Mapping[str, RegistryConfig] = field(default_factory=dict)
    timeout: float = DEFAULT_TIMEOUT
    retries: int = DEFAULT_RETRIES
    backoff: float = DEFAULT_BACKOFF

    def for_host(self, host: str) -> RegistryConfig:
        """The configuration of `host`, or https + anonymous when it is not configured."""
        normalized = normalize_registry(host)
        return self.registries.get(normalized) or RegistryConfig(host=normalized)

    @classmethod
    def read(cls, reader: EnvReader) -> RegistrySettings:
        """Read CONVEYOR_REGISTRIES_* and CONVEYOR_REGISTRY_<ID>_*; problems go to `reader.problems`."""
        timeout = reader.duration("CONVEYOR_REGISTRIES_TIMEOUT", DEFAULT_TIMEOUT, minimum=0.1)
        retries = reader.int("CONVEYOR_REGISTRIES_RETRIES", DEFAULT_RETRIES, minimum=0, maximum=10)
        backoff = reader.duration("CONVEYOR_REGISTRIES_BACKOFF", DEFAULT_BACKOFF)
        registries: dict[str, RegistryConfig] = {}
        path = reader.path("CONVEYOR_REGISTRIES_FILE", None)
        if path is not None:
            for config in _read_file(path, reader.environ, reader.problems):
                registries[config.host] = config
        # Environment entries replace file entries for the same host.
        for config in _read_env(reader.environ, reader.problems):
            registries[config.host] = config
        return cls(registries=registries, timeout=timeout, retries=retries, backoff=backoff)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> RegistrySettings:
        reader = EnvReader(dict(os.environ if environ is None else environ))
        settings = cls.read(reader)
        reader.check()
        return settings


def _secret_from_file(path_text: str, label: str, problems: list[str]) -> Secret | None:
    path = pathlib.Path(path_text).expanduser()
    try:
        if not path.read_text().strip():
            problems.append(f"{label}: file {path} is empty")
            return None
    except OSError as exc:
        problems.append(f"{label}: cannot read {path}: {exc.strerror or exc}")
        return None
    return Secret(f"file {path}", path=path)


def _build(
    *,
    host: Any,
    scheme: Any,
    username: Any,
    password: Secret | None,
    token: Secret | None,
    ca_file: Any,
    tls_verify: Any,
    source: str,
    problems: list[str],
) -> RegistryConfig | None:
    before = len(problems)
    if not isinstance(host, str) or not host.strip():
        problems.append(f"{source}: `host` is required (a registry host such as ghcr.io or 127.0.0.1:5000)")
        return None
    normalized = normalize_registry(host)
    if not is_valid_registry(normalized):
        problems.append(f"{source}: host {host!r} is not a registry host[:port]")
    scheme_value = str(scheme or "https").lower()
    if scheme_value not in ("https", "http"):
        problems.append(f"{source}: scheme {scheme!r} must be https or http")
    if tls_verify is None:
        tls_verify = True
    if not isinstance(tls_verify, bool):
        problems.append(f"{source}: tls_verify must be true or false")
        tls_verify = True
    ca_path = None
    if ca_file:
        ca_path = pathlib.Path(str(ca_file)).expanduser()
        if not ca_path.is_file():
            problems.append(f"{source}: ca_file {ca_path} does not exist")
    credentials: Credentials = ANONYMOUS
    if token is not None and (username or password is not None):
        problems.append(f"{source}: configure either a token or a username and password, not both")
    elif token is not None:
        credentials = BearerCredentials(token)
    elif username or password is not None:
        if not username or not isinstance(username, str):
            problems.append(f"{source}: a password needs a username")
        elif password is None:
            problems.append(
                f"{source}: username {username!r} needs a password (password, password_env or password_file)"
            )
        else:
            credentials = BasicCredentials(username, password)
    if len(problems) > before:
        return None
    return RegistryConfig(normalized, scheme_value, credentials, tls_verify, ca_path, source)


def _one_secret(
    entry: Mapping[str, Any], kind: str, *, environ: Mapping[str, str], label: str, problems: list[str], file: str
) -> Secret | None:
    """`kind`, `kind_env` or `kind_file` of a file entry (at most one)."""
    given = [key for key in (kind, f"{kind}_env", f"{kind}_file") if entry.get(key) not in (None, "")]
    if len(given) > 1:
        problems.append(f"{label}: set only one of {', '.join(given)}")
        return None
    if not given:
        return None
    key = given[0]
    value = str(entry[key])
    if key == kind:
        return Secret(f"the inline `{kind}` in {file}", value)
    if key.endswith("_env"):
        secret = environ.get(value, "").strip()
        if not secret:
            problems.append(f"{label}: {key} names environment variable {value}, which is not set")
            return None
        return Secret(f"environment variable {value}", secret)
    return _secret_from_file(value, f"{label}: {key}", problems)


def _read_file(path: pathlib.Path, environ: Mapping[str, str], problems: list[str]) -> list[RegistryConfig]:
    label = f"CONVEYOR_REGISTRIES_FILE={path}"
    try:
        document = yaml.safe_load(path.read_text())
    except OSError as exc:
        problems.append(f"{label}: cannot read: {exc.strerror or exc}")
        return []
    except yaml.YAMLError as exc:
        problems.append(f"{label}: not valid YAML: {exc}")
        return []
    if document is None:
        return []
    if not isinstance(document, dict) or not isinstance(document.get("registries", []), list):
        problems.append(f"{label}: expected a mapping with a `registries` list")
        return []
    unknown_top = set(document) - {"registries"}
    if unknown_top:
        problems.append(f"{label}: unknown keys {', '.join(sorted(unknown_top))}")
    configs: list[RegistryConfig] = []
    seen: set[str] = set()
    for position, entry in enumerate(document.get("registries") or []):
        where = f"{path}: registries[{position}]"
        if not isinstance(entry, dict):
            problems.append(f"{where}: expected a mapping with at least `host`")
            continue
        unknown = set(entry) - _FILE_KEYS
        if unknown:
            problems.append(f"{where}: unknown keys {', '.join(sorted(map(str, unknown)))}")
            continue
        host = entry.get("host")
        if isinstance(host, str) and host.strip():
            if normalize_registry(host) in seen:
                problems.append(f"{where}: registry {normalize_registry(host)} is listed twice")
                continue
            seen.add(normalize_registry(host))
        before = len(problems)
        password = _one_secret(entry, "password", environ=environ, label=where, problems=problems, file=str(path))
        token = _one_secret(entry, "token", environ=environ, label=where, problems=problems, file=str(path))
        if len(problems) > before:
            continue
        config = _build(
            host=entry.get("host"),
            scheme=entry.get("scheme"),
            username=entry.get("username"),
            password=password,
            token=token,
            ca_file=entry.get("ca_file"),
            tls_verify=entry.get("tls_verify"),
            source=where,
            problems=problems,
        )
        if config is not None:
            configs.append(config)
    return configs


def _read_env(environ: Mapping[str, str], problems: list[str]) -> list[RegistryConfig]:
    groups: dict[str, dict[str, str]] = {}
    for name, value in environ.items():
        if not name.startswith(_ENV_PREFIX) or not value.strip():
            continue
        match = _ENV_NAME.match(name)
        if match is None:
            problems.append(
                f"{name}: not a registry setting (expected {_ENV_PREFIX}<ID>_<FIELD>, ID letters/digits, "
                f"FIELD one of {', '.join(_ENV_FIELDS)})"
            )
            continue
        groups.setdefault(match.group(1), {})[match.group(2)] = value.strip()
    configs: list[RegistryConfig] = []
    for ident, fields in sorted(groups.items()):
        prefix = f"{_ENV_PREFIX}{ident}_"
        where = f"{prefix}* environment variables"
        if "HOST" not in fields:
            problems.append(f"{prefix}HOST is not set but {', '.join(prefix + f for f in sorted(fields))} are")
            continue
        before = len(problems)
        password = token = None
        if "PASSWORD" in fields and "PASSWORD_FILE" in fields:
            problems.append(f"{where}: set {prefix}PASSWORD or {prefix}PASSWORD_FILE, not both")
        elif "PASSWORD" in fields:
            password = Secret(f"environment variable {prefix}PASSWORD", fields["PASSWORD"])
        elif "PASSWORD_FILE" in fields:
            password = _secret_from_file(fields["PASSWORD_FILE"], f"{prefix}PASSWORD_FILE", problems)
        if "TOKEN" in fields and "TOKEN_FILE" in fields:
            problems.append(f"{where}: set {prefix}TOKEN or {prefix}TOKEN_FILE, not both")
        elif "TOKEN" in fields:
            token = Secret(f"environment variable {prefix}TOKEN", fields["TOKEN"])
        elif "TOKEN_FILE" in fields:
            token = _secret_from_file(fields["TOKEN_FILE"], f"{prefix}TOKEN_FILE", problems)
        if len(problems) > before:
            continue
        tls_verify: Any = _ENV_BOOLEANS.get(fields.get("TLS_VERIFY", "true").lower(), fields.get("TLS_VERIFY"))
        config = _build(
            host=fields["HOST"],
            scheme=fields.get("SCHEME"),
            username=fields.get("USERNAME"),
            password=password,
            token=token,
            ca_file=fields.get("CA_FILE"),
            tls_verify=tls_verify,
            source=where,
            problems=problems,
        )
        if config is None:
            continue
        if any(other.host == config.host for other in configs):
            problems.append(f"{where}: registry {config.host} is configured by another {_ENV_PREFIX}<ID>_HOST too")
            continue
        configs.append(config)
    return configs


__all__ = [
    "ANONYMOUS",
    "Anonymous",
    "BasicCredentials",
    "BearerCredentials",
    "Credentials",
    "RegistryConfig",
    "RegistrySettings",
    "Secret",
    "SettingsError",
]
