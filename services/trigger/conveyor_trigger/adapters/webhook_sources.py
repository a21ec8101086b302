"""The webhook sources file (CONVEYOR_WEBHOOK_SOURCES_FILE): read, validated, turned into `Source`s.

The auth methods themselves (and the shared token) are in `conveyor_trigger.domain.webhook_auth`.

Sources file::

    sources:
      - name: harbor-prod
        auth: bearer                 # bearer | header | query | github-hmac | none
        token_env: HARBOR_WEBHOOK_TOKEN   # or `token: ...` or `token_file: /run/secrets/...`
        formats: [harbor]            # optional: only for these formats (default: all)
        registry: harbor.example.com # optional: host for payloads that carry none
        origin: local_push           # optional: local_push (default) | platform_build
      - name: ecr
        auth: header
        header: X-Api-Key
        token_env: ECR_WEBHOOK_TOKEN
        formats: [ecr]

Read with `conveyor.yamlfile`: every problem of the file is listed at once, with its line.
The shape (which keys, of which type) is the pydantic model `SourceEntry`; what needs more
than one key or the environment (the auth method, the secret, the registry, the origin, unique
names) is checked per source and reported with the shape's problems.
"""

from __future__ import annotations

import pathlib
from collections.abc import Mapping, Sequence
from typing import Any, NoReturn

import pydantic
from pydantic_core import ErrorDetails, InitErrorDetails, PydanticCustomError

from conveyor import refs, yamlfile
from conveyor_trigger.domain.webhook_auth import DEFAULT_TOKEN_HEADER, METHODS, ORIGINS, AuthMethod, Source

ENV = "CONVEYOR_WEBHOOK_SOURCES_FILE"
MIN_SECRET_LENGTH = 16
_SECRET_KEYS = ("token", "token_env", "token_file")


class SourceEntry(yamlfile.YamlModel):
    """One item of `sources`, as written (validation context: environ, formats, names seen so far)."""

    # A number where a string is expected (a numeric token) is taken as written.
    model_config = pydantic.ConfigDict(coerce_numbers_to_str=True)

    name: str = ""
    auth: str = ""
    token: str = ""
    token_env: str = ""
    token_file: str = ""
    header: str = ""
    formats: list[str] | None = None
    registry: str | None = None
    origin: str = ""
    _secret: bytes = pydantic.PrivateAttr(b"")

    @pydantic.field_validator("formats")
    @classmethod
    def _known_formats(cls, formats: list[str] | None, info: pydantic.ValidationInfo) -> list[str] | None:
        if formats is None:
            return None
        if not formats:
            raise ValueError("must be a non-empty list")
        known = sorted((info.context or {}).get("formats", ()))
        unknown = sorted(set(formats) - set(known))
        if unknown:
            listed = ", ".join(f"unknown format {item!r}" for item in unknown)
            raise ValueError(f"{listed} (known: {', '.join(known)})")
        return formats

    @pydantic.model_validator(mode="wrap")
    @classmethod
    def _checked(cls, data: Any, handler: pydantic.ValidatorFunctionWrapHandler, info: pydantic.ValidationInfo) -> Any:
        """The shape's problems and this source's own, reported together."""
        if not isinstance(data, dict):
            return handler(data)
        context = info.context or {}
        unknown = sorted(str(key) for key in data if key not in cls.model_fields)
        problems: list[str] = []
        if unknown:
            problems.append(f"unknown keys {', '.join(unknown)} (known: {', '.join(sorted(cls.model_fields))})")
        name = data.get("name")
        if isinstance(name, str) and name:
            seen: set[str] = context.setdefault("names", set())
            if name in seen:
                problems.append("duplicate name")
            seen.add(name)
        try:
            entry: SourceEntry = handler({key: value for key, value in data.items() if key in cls.model_fields})
        except pydantic.ValidationError as exc:
            _fail(data, problems, exc)
        entry._secret = entry._check(context.get("environ", {}), problems)
        if problems:
            _fail(data, problems)
        return entry

    def _check(self, environ: Mapping[str, str], problems: list[str]) -> bytes:
        """Add the problems that need several keys or the environment; the secret (b"" when unusable)."""
        if self.registry is not None and not refs.is_valid_registry(refs.normalize_registry(self.registry)):
            problems.append(f"registry {refs.normalize_registry(self.registry)!r} is not a valid host[:port]")
        if (self.origin or "local_push").lower() not in ORIGINS:
            problems.append(f"origin must be one of {', '.join(ORIGINS)}")
        if self.auth not in METHODS:
            problems.append(f"auth must be one of {', '.join(METHODS)}")
            return b""
        return b"" if self.auth == "none" else self._resolve_secret(environ, problems)

    def _resolve_secret(self, environ: Mapping[str, str], problems: list[str]) -> bytes:
        given = [key for key in _SECRET_KEYS if getattr(self, key)]
        if len(given) != 1:
            problems.append(f"give exactly one of {', '.join(_SECRET_KEYS)}")
            return b""
        if self.token:
            secret = self.token
        elif self.token_env:
            secret = environ.get(self.token_env, "")
            if not secret.strip():
                problems.append(f"environment variable {self.token_env} (token_env) is not set")
                return b""
        else:
            try:
                secret = pathlib.Path(self.token_file).expanduser().read_text()
            except OSError as exc:
                problems.append(f"cannot read token_file {self.token_file}: {exc.strerror}")
                return b""
        secret = secret.strip()
        if len(secret) < MIN_SECRET_LENGTH:
            problems.append(f"the token is too short (at least {MIN_SECRET_LENGTH} characters)")
        return secret.encode()

    def source(self, index: int) -> Source:
        return Source(
            name=self.name or f"source-{index}",
            methods=(AuthMethod(self.auth, self._secret, self.header or DEFAULT_TOKEN_HEADER),),
            formats=frozenset(self.formats) if self.formats is not None else None,
            registry=refs.normalize_registry(self.registry) if self.registry is not None else None,
            origin=ORIGINS[(self.origin or "local_push").lower()],
        )


class SourcesFile(yamlfile.YamlModel):
    sources: list[SourceEntry]


def _fail(data: Any, problems: Sequence[str], cause: pydantic.ValidationError | None = None) -> NoReturn:
    """Raise the shape's errors (`cause`) and `problems` as one ValidationError of this source."""
    errors: list[InitErrorDetails] = []
    if cause is not None:
        for error in cause.errors(include_url=False):
            # Re-raised as they were: yamlfile words its messages from the type, the input and ctx.
            errors.append(
                InitErrorDetails(type=error["type"], loc=error["loc"], input=error["input"], ctx=error.get("ctx", {}))
            )
    for problem in problems:
        errors.append(
            InitErrorDetails(type=PydanticCustomError("source", "{problem}", {"problem": problem}), input=data)
        )
    raise pydantic.ValidationError.from_exception_data("SourceEntry", errors)


def _explain(error: ErrorDetails) -> str | None:
    if error["loc"] == () and error["type"] in ("model_type", "model_attributes_type", "dict_type"):
        return "expected a mapping with a `sources` list"
    return None


def _load(
    document: Any, environ: Mapping[str, str], known_formats: Sequence[str], path: pathlib.Path | None, where: str
) -> tuple[Source, ...]:
    options: dict[str, Any] = {
        "where": where,
        "what": "webhook sources",
        "context": {"environ": environ, "formats": tuple(known_formats)},
        "relabel": yamlfile.label_items("sources", "source {!r}"),
        "explain": _explain,
    }
    if path is not None:
        loaded = yamlfile.load_yaml_file(path, SourcesFile, **options)
    else:
        loaded = yamlfile.validate_document(document, SourcesFile, **options)
    return tuple(entry.source(index) for index, entry in enumerate(loaded.sources))


def load_sources_file(
    path: pathlib.Path, environ: Mapping[str, str], known_formats: Sequence[str]
) -> tuple[Source, ...]:
    """Read and validate the sources file; raises SettingsError (YamlFileError) listing every problem."""
    return _load(None, environ, known_formats, path, f"{ENV}={path}")


def parse_sources(
    document: Any, environ: Mapping[str, str], known_formats: Sequence[str], *, where: str = "sources"
) -> tuple[Source, ...]:
    """Validate an already parsed sources document (no line numbers); raises SettingsError."""
    return _load(document, environ, known_formats, None, where)
