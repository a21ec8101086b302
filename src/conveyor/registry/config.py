"""Per-registry settings: where each registry is, how to reach it, and which credentials to use.

See the `conveyor.registry` docstring for the file format and the environment variables.
Secrets live in `Secret` objects whose repr names where the secret comes from, never its value.
"""

from __future__ import annotations

import os
import pathlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import pydantic
from pydantic_core import PydanticCustomError

from conveyor.refs import DOCKER_HUB, is_valid_registry, normalize_registry
from conveyor.settings import EnvReader, SettingsError
from conveyor.yamlfile import YamlFileError, YamlModel, load_yaml_file

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
) -> tuple[RegistryConfig | None, list[str]]:
    """One registry's settings, or the problems with them (without a location prefix)."""
    problems: list[str] = []
    if not isinstance(host, str) or not host.strip():
        return None, ["`host` is required (a registry host such as ghcr.io or 127.0.0.1:5000)"]
    normalized = normalize_registry(host)
    if not is_valid_registry(normalized):
        problems.append(f"host {host!r} is not a registry host[:port]")
    scheme_value = str(scheme or "https").lower()
    if scheme_value not in ("https", "http"):
        problems.append(f"scheme {scheme!r} must be https or http")
    if tls_verify is None:
        tls_verify = True
    if not isinstance(tls_verify, bool):
        problems.append("tls_verify must be true or false")
        tls_verify = True
    ca_path = None
    if ca_file:
        ca_path = pathlib.Path(str(ca_file)).expanduser()
        if not ca_path.is_file():
            problems.append(f"ca_file {ca_path} does not exist")
    credentials: Credentials = ANONYMOUS
    if token is not None and (username or password is not None):
        problems.append("configure either a token or a username and password, not both")
    elif token is not None:
        credentials = BearerCredentials(token)
    elif username or password is not None:
        if not username or not isinstance(username, str):
            problems.append("a password needs a username")
        elif password is None:
            problems.append(f"username {username!r} needs a password (password, password_env or password_file)")
        else:
            credentials = BasicCredentials(username, password)
    if problems:
        return None, problems
    return RegistryConfig(normalized, scheme_value, credentials, tls_verify, ca_path, source), []


# --- CONVEYOR_REGISTRIES_FILE -----------------------------------------------------------------


@dataclass(frozen=True)
class _ListedTwice:
    """Stands in for an entry whose host an earlier entry already configures."""

    host: str


def _invalid(problems: list[str]) -> pydantic.ValidationError:
    """Several problems of one entry, each on its own line at the entry's place (pydantic merges a
    ValidationError raised by a validator into the one it is building)."""
    return pydantic.ValidationError.from_exception_data(
        "registry",
        [
            {"type": PydanticCustomError("registry", "{problem}", {"problem": problem}), "loc": (), "input": None}
            for problem in problems
        ],
    )


class _FileEntry(YamlModel):
    """One `registries[]` entry. `host` is checked by the validator, so its message stays the one
    the environment variables get too."""

    # A numeric password or username in YAML is still meant as text.
    model_config = pydantic.ConfigDict(extra="forbid", frozen=True, coerce_numbers_to_str=True)

    host: str | None = None
    scheme: str | None = None
    username: str | None = None
    password: str | None = None
    password_env: str | None = None
    password_file: str | None = None
    token: str | None = None
    token_env: str | None = None
    token_file: str | None = None
    ca_file: str | None = None
    tls_verify: pydantic.StrictBool | None = None

    _config: RegistryConfig | None = pydantic.PrivateAttr(default=None)

    @pydantic.model_validator(mode="before")
    @classmethod
    def _known_keys_once(cls, data: Any) -> Any:
        if isinstance(data, _ListedTwice):
            raise ValueError(f"registry {data.host} is listed twice")
        if isinstance(data, dict):
            unknown = ", ".join(sorted(map(str, set(data) - set(cls.model_fields))))
            if unknown:
                raise ValueError(f"unknown keys {unknown} (known: {', '.join(sorted(cls.model_fields))})")
        return data

    @pydantic.model_validator(mode="after")
    def _usable(self, info: pydantic.ValidationInfo) -> _FileEntry:
        context = info.context or {}
        environ: Mapping[str, str] = context.get("environ", {})
        file = str(context.get("file", "the registries file"))
        problems: list[str] = []
        password = self._secret("password", environ, file, problems)
        token = self._secret("token", environ, file, problems)
        if problems:
            raise _invalid(problems)
        config, problems = _build(
            host=self.host,
            scheme=self.scheme,
            username=self.username,
            password=password,
            token=token,
            ca_file=self.ca_file,
            tls_verify=self.tls_verify,
            source="",
        )
        if config is None:
            raise _invalid(problems)
        self._config = config
        return self

    def _secret(self, kind: str, environ: Mapping[str, str], file: str, problems: list[str]) -> Secret | None:
        """`kind`, `kind_env` or `kind_file` (at most one)."""
        keys = (kind, f"{kind}_env", f"{kind}_file")
        given = [(key, value) for key in keys if (value := getattr(self, key)) not in (None, "")]
        if len(given) > 1:
            problems.append(f"set only one of {', '.join(key for key, _ in given)}")
            return None
        if not given:
            return None
        key, value = given[0]
        if key == kind:
            return Secret(f"the inline `{kind}` in {file}", value)
        if key.endswith("_env"):
            secret = environ.get(value, "").strip()
            if not secret:
                problems.append(f"{key} names environment variable {value}, which is not set")
                return None
            return Secret(f"environment variable {value}", secret)
        return _secret_from_file(value, key, problems)

    def config(self, source: str) -> RegistryConfig:
        assert self._config is not None  # set by the validator
        return replace(self._config, source=source)


class _RegistriesFile(YamlModel):
    registries: list[_FileEntry] = []

    @pydantic.model_validator(mode="before")
    @classmethod
    def _shape(cls, data: Any) -> Any:
        if not isinstance(data, dict) or not isinstance(data.get("registries", []), list):
            raise ValueError("expected a mapping with a `registries` list")
        unknown = set(data) - {"registries"}
        if unknown:
            raise ValueError(f"unknown keys {', '.join(sorted(map(str, unknown)))} (known: registries)")
        # A host listed twice is reported at its second entry, which is then not checked further.
        entries: list[Any] = []
        seen: set[str] = set()
        for entry in data.get("registries", []):
            host = entry.get("host") if isinstance(entry, dict) else None
            if isinstance(host, str) and host.strip() and not set(entry) - set(_FileEntry.model_fields):
                normalized = normalize_registry(host)
                entries.append(_ListedTwice(normalized) if normalized in seen else entry)
                seen.add(normalized)
            else:
                entries.append(entry)
        return {"registries": entries}


def _read_file(path: pathlib.Path, environ: Mapping[str, str], problems: list[str]) -> list[RegistryConfig]:
    label = f"CONVEYOR_REGISTRIES_FILE={path}"
    try:
        document = load_yaml_file(
            path, _RegistriesFile, where=label, what="registries file", context={"environ": environ, "file": str(path)}
        )
    except YamlFileError as exc:
        problems.extend(f"{label}: {problem}" for problem in exc.problems)
        return []
    return [entry.config(f"{path}: registries[{position}]") for position, entry in enumerate(document.registries)]


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
        config, found = _build(
            host=fields["HOST"],
            scheme=fields.get("SCHEME"),
            username=fields.get("USERNAME"),
            password=password,
            token=token,
            ca_file=fields.get("CA_FILE"),
            tls_verify=tls_verify,
            source=where,
        )
        if config is None:
            problems.extend(f"{where}: {problem}" for problem in found)
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
