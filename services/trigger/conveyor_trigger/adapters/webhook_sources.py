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
"""

from __future__ import annotations

import pathlib
from collections.abc import Mapping, Sequence
from typing import Any

import yaml

from conveyor import refs
from conveyor.settings import SettingsError
from conveyor_trigger.domain.webhook_auth import DEFAULT_TOKEN_HEADER, METHODS, ORIGINS, AuthMethod, Source


def load_sources_file(
    path: pathlib.Path, environ: Mapping[str, str], known_formats: Sequence[str]
) -> tuple[Source, ...]:
    """Read and validate the sources file; raises SettingsError listing every problem."""
    try:
        document = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise SettingsError(f"CONVEYOR_WEBHOOK_SOURCES_FILE={path}: cannot read: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise SettingsError(f"CONVEYOR_WEBHOOK_SOURCES_FILE={path}: not valid YAML: {exc}") from None
    return parse_sources(document, environ, known_formats, where=str(path))


def parse_sources(
    document: Any, environ: Mapping[str, str], known_formats: Sequence[str], *, where: str = "sources"
) -> tuple[Source, ...]:
    problems: list[str] = []
    entries = document.get("sources") if isinstance(document, dict) else None
    if not isinstance(entries, list):
        raise SettingsError(f"{where}: expected a mapping with a `sources` list")
    sources: list[Source] = []
    names: set[str] = set()
    for index, entry in enumerate(entries):
        label = f"{where}: sources[{index}]"
        if not isinstance(entry, dict):
            problems.append(f"{label}: expected a mapping")
            continue
        name = str(entry.get("name") or f"source-{index}")
        label = f"{where}: source {name!r}"
        if name in names:
            problems.append(f"{label}: duplicate name")
        names.add(name)
        unknown = set(entry) - {
            "name",
            "auth",
            "token",
            "token_env",
            "token_file",
            "header",
            "formats",
            "registry",
            "origin",
        }
        if unknown:
            problems.append(f"{label}: unknown keys {', '.join(sorted(map(str, unknown)))}")
        kind = str(entry.get("auth") or "")
        if kind not in METHODS:
            problems.append(f"{label}: auth must be one of {', '.join(METHODS)}")
            continue
        secret = b""
        if kind != "none":
            secret = _secret(entry, environ, label, problems)
        header = str(entry.get("header") or DEFAULT_TOKEN_HEADER)
        formats: frozenset[str] | None = None
        if entry.get("formats") is not None:
            raw_formats = entry["formats"]
            if not isinstance(raw_formats, list) or not raw_formats:
                problems.append(f"{label}: formats must be a non-empty list")
            else:
                formats = frozenset(str(item) for item in raw_formats)
                for item in sorted(formats - set(known_formats)):
                    problems.append(f"{label}: unknown format {item!r} (known: {', '.join(sorted(known_formats))})")
        registry = entry.get("registry")
        if registry is not None:
            registry = refs.normalize_registry(str(registry))
            if not refs.is_valid_registry(registry):
                problems.append(f"{label}: registry {registry!r} is not a valid host[:port]")
        origin_name = str(entry.get("origin") or "local_push").lower()
        if origin_name not in ORIGINS:
            problems.append(f"{label}: origin must be one of {', '.join(ORIGINS)}")
            origin_name = "local_push"
        sources.append(
            Source(
                name=name,
                methods=(AuthMethod(kind, secret, header),),
                formats=formats,
                registry=registry,
                origin=ORIGINS[origin_name],
            )
        )
    if problems:
        raise SettingsError("invalid webhook sources:\n  " + "\n  ".join(problems))
    return tuple(sources)


def _secret(entry: dict[str, Any], environ: Mapping[str, str], label: str, problems: list[str]) -> bytes:
    given = [key for key in ("token", "token_env", "token_file") if entry.get(key)]
    if len(given) != 1:
        problems.append(f"{label}: give exactly one of token, token_env, token_file")
        return b""
    key = given[0]
    value = str(entry[key])
    if key == "token":
        secret = value
    elif key == "token_env":
        secret = environ.get(value, "")
        if not secret.strip():
            problems.append(f"{label}: environment variable {value} (token_env) is not set")
            return b""
    else:
        try:
            secret = pathlib.Path(value).expanduser().read_text()
        except OSError as exc:
            problems.append(f"{label}: cannot read token_file {value}: {exc.strerror}")
            return b""
    secret = secret.strip()
    if len(secret) < 16:
        problems.append(f"{label}: the token is too short (at least 16 characters)")
    return secret.encode()
