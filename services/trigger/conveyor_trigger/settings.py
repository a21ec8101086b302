"""conveyor-trigger settings, read once from the environment at start-up (invalid -> exit 2).

Each variable is declared once, below (name, default, parser, meaning); the README's
"### conveyor-trigger" table is checked against `TriggerSettings.declarations()`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from conveyor import lifecycle, refs
from conveyor.settings import (
    PAGE_TOKEN_KEY,
    CommonSettings,
    EnvReader,
    Parser,
    Setting,
    address,
    boolean,
    declarations,
    duration,
    integer,
    path,
    read_settings,
    setting,
)
from conveyor_trigger.adapters.webhook_sources import load_sources_file
from conveyor_trigger.domain.formats import FORMATS
from conveyor_trigger.domain.webhook_auth import Authenticator, Source, shared_token_source

MIN_TOKEN_LENGTH = 16
METRICS_DOC = "extra HOST:PORT serving only `/metrics` (the webhook listener serves it too)"

_SIZE = re.compile(r"^\s*(\d+)\s*(b|kib|kb|k|mib|mb|m)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {None: 1, "b": 1, "k": 1024, "kb": 1024, "kib": 1024, "m": 1 << 20, "mb": 1 << 20, "mib": 1 << 20}


def _parse_size(raw: str) -> int:
    match = _SIZE.match(raw)
    if not match:
        raise ValueError("expected a size in bytes, e.g. 1048576, 512KiB or 1MiB")
    value = int(match.group(1)) * _SIZE_UNITS[match.group(2).lower() if match.group(2) else None]
    if value < 1024:
        raise ValueError("must be at least 1KiB")
    return value


def _format_size(value: int) -> str:
    for unit, size in (("MiB", 1 << 20), ("KiB", 1024)):
        if value % size == 0:
            return f"{value // size}{unit}"
    return str(value)


def _parse_token(raw: str) -> str:
    if len(raw) < MIN_TOKEN_LENGTH:
        raise ValueError(f"too short (at least {MIN_TOKEN_LENGTH} characters)")
    return raw


def _parse_registry(raw: str) -> str:
    host = refs.normalize_registry(raw)
    if not refs.is_valid_registry(host):
        raise ValueError("expected HOST[:PORT]")
    return host


# The stop stages of TriggerApp; the shutdown grace below is bounded by its drain stage.
SHUTDOWN_PLAN = lifecycle.DEFAULT_PLAN

# Read by conveyor.registry (RegistryClient.from_env), documented with the trigger's settings.
REGISTRIES_FILE: Setting[Path | None] = Setting(
    "CONVEYOR_REGISTRIES_FILE",
    None,
    path(),
    "registry hosts and credentials for digest resolution and ListTags (read by `conveyor.registry`)",
)


@dataclass(frozen=True)
class TriggerSettings:
    common: CommonSettings
    # Built from the webhook token, the sources file and the two settings after them.
    authenticator: Authenticator
    grpc_address: str = setting(
        "CONVEYOR_TRIGGER_ADDR",
        "127.0.0.1:50052",
        parse=address(),
        doc="gRPC listen address: EventService (ListEvents, ListTags), health, reflection",
    )
    webhook_address: str = setting(
        "CONVEYOR_WEBHOOK_ADDR",
        "127.0.0.1:8080",
        parse=address(),
        doc="HTTP listen address: `POST /webhooks/{format}`, `GET /healthz`, `GET /metrics`",
    )
    config_address: str = setting(
        "CONVEYOR_CONFIG_ADDR",
        "127.0.0.1:50051",
        parse=address(),
        doc="config service (PipelineService), source of the pipeline cache",
    )
    webhook_token: str | None = setting(
        "CONVEYOR_WEBHOOK_TOKEN",
        None,
        parse=Parser(_parse_token),
        secret=True,
        doc="shared webhook secret (>= 16 chars), accepted as `Authorization: Bearer`, `X-Conveyor-Token` header, "
        "`?token=` and as GitHub's HMAC secret",
    )
    webhook_sources_file: Path | None = setting(
        "CONVEYOR_WEBHOOK_SOURCES_FILE",
        None,
        parse=path(),
        doc="YAML file of webhook sources, each with its own auth method, secret, formats, default registry, "
        "origin (see `conveyor_trigger.adapters.webhook_sources`)",
    )
    allow_unauthenticated: bool = setting(
        "CONVEYOR_WEBHOOK_ALLOW_UNAUTHENTICATED",
        False,
        parse=boolean(),
        doc="accept webhooks without valid credentials; with no token/sources and `false`, every webhook gets 401",
    )
    default_registry: str | None = setting(
        "CONVEYOR_WEBHOOK_DEFAULT_REGISTRY",
        None,
        parse=Parser(_parse_registry),
        doc="registry host for payloads that carry none (Docker Hub-like formats), when neither `?registry=` "
        "nor the source gives one",
    )
    max_body: int = setting(
        "CONVEYOR_WEBHOOK_MAX_BODY",
        1 << 20,
        parse=Parser(_parse_size, _format_size),
        doc="largest webhook body accepted (bytes, or with KiB/MiB); larger -> 413",
    )
    publish_timeout: float = setting(
        "CONVEYOR_WEBHOOK_PUBLISH_TIMEOUT",
        5.0,
        parse=duration(minimum=0.1),
        doc="how long a webhook waits for JetStream to store its events before answering 503",
    )
    matcher_enabled: bool = setting(
        "CONVEYOR_TRIGGER_MATCHER_ENABLED",
        True,
        parse=boolean(),
        doc="`false` runs a receive-only trigger: webhooks are stored, nothing is matched",
    )
    resync_interval: float = setting(
        "CONVEYOR_TRIGGER_RESYNC_INTERVAL",
        60.0,
        parse=duration(minimum=0.1),
        doc="period of the full pipeline re-load from config (also done on NATS reconnect)",
    )
    dedupe_window: float = setting(
        "CONVEYOR_TRIGGER_DEDUPE_WINDOW",
        3600.0,
        parse=duration(minimum=1.0),
        doc="how long a pushed image is remembered, so the same digest under another tag does not deploy again "
        "(TTL of the `conveyor_pushes` KV bucket, set when it is created)",
    )
    events_log_size: int = setting(
        "CONVEYOR_TRIGGER_EVENTS_LOG_SIZE",
        1000,
        parse=integer(minimum=1, maximum=1_000_000),
        doc="registry events kept for ListEvents (max messages of the event history stream)",
    )
    events_max_age: float = setting(
        "CONVEYOR_TRIGGER_EVENTS_MAX_AGE",
        7 * 24 * 3600.0,
        parse=duration(minimum=60.0),
        doc="how long a registry event is kept for ListEvents (max age of the event history stream)",
    )
    ack_wait: float = setting(
        "CONVEYOR_TRIGGER_ACK_WAIT",
        30.0,
        parse=duration(minimum=1.0),
        doc="JetStream ack wait of the matcher's consumer (redelivery after a crash)",
    )
    digest_timeout: float = setting(
        "CONVEYOR_TRIGGER_DIGEST_TIMEOUT",
        10.0,
        parse=duration(minimum=0.1),
        doc="limit on resolving a missing digest before matching; after it the push proceeds by tag",
    )
    shutdown_grace: float = setting(
        "CONVEYOR_TRIGGER_SHUTDOWN_GRACE",
        10.0,
        parse=duration(),
        doc="on SIGTERM, how long in-flight webhooks, messages and RPCs may take to finish (at most until "
        f"{SHUTDOWN_PLAN.deadlines()['drain']:g}s into the {SHUTDOWN_PLAN.total:g}s stop)",
    )
    page_token_key: str | None = setting(
        PAGE_TOKEN_KEY.env,
        PAGE_TOKEN_KEY.default,
        parse=PAGE_TOKEN_KEY.parse,
        doc=PAGE_TOKEN_KEY.doc,
        secret=PAGE_TOKEN_KEY.secret,
    )

    @staticmethod
    def declarations() -> list[Setting[Any]]:
        """Every variable the trigger reads: the README table's rows, in its order."""
        return [
            *declarations(TriggerSettings),
            *CommonSettings.declarations("trigger", metrics_doc=METRICS_DOC),
            REGISTRIES_FILE,
        ]

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> TriggerSettings:
        """Read and validate; raises SettingsError listing every problem."""
        reader = EnvReader(dict(environ))
        common = CommonSettings.read(reader, service="trigger")
        settings = read_settings(
            cls, reader.environ, problems=reader.problems, common=common, authenticator=Authenticator(())
        )
        reader.check()
        sources: list[Source] = []
        if settings.webhook_token is not None:
            sources.append(shared_token_source(settings.webhook_token, registry=settings.default_registry))
        if settings.webhook_sources_file is not None:
            # Raises its own SettingsError listing the file's problems.
            sources.extend(load_sources_file(settings.webhook_sources_file, environ, tuple(FORMATS)))
        authenticator = Authenticator(
            tuple(sources),
            allow_unauthenticated=settings.allow_unauthenticated,
            default_registry=settings.default_registry,
        )
        return replace(settings, authenticator=authenticator)
