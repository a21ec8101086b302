# ruff: noqa: E501 - the env var table is meant to be copied into the README as is
"""conveyor-trigger settings, read once from the environment at start-up (invalid -> exit 2).

| Variable | Default | Meaning |
|---|---|---|
| `CONVEYOR_TRIGGER_ADDR` | `127.0.0.1:50052` | gRPC listen address: EventService (ListEvents, ListTags), health, reflection |
| `CONVEYOR_WEBHOOK_ADDR` | `127.0.0.1:8080` | HTTP listen address: `POST /webhooks/{format}`, `GET /healthz`, `GET /metrics` |
| `CONVEYOR_CONFIG_ADDR` | `127.0.0.1:50051` | config service (PipelineService), source of the pipeline cache |
| `CONVEYOR_NATS_URL` | `nats://127.0.0.1:4222` | NATS server with JetStream |
| `CONVEYOR_LOG_LEVEL` | `info` | `debug`, `info`, `warning` or `error` |
| `CONVEYOR_LOG_FORMAT` | `json` | `json` (one object per line) or `text` |
| `CONVEYOR_TRIGGER_METRICS_ADDR` | unset | extra HOST:PORT serving only `/metrics` (the webhook listener serves it too) |
| `CONVEYOR_WEBHOOK_TOKEN` | unset | shared webhook secret (>= 16 chars), accepted as `Authorization: Bearer`, `X-Conveyor-Token` header, `?token=` and as GitHub's HMAC secret |
| `CONVEYOR_WEBHOOK_SOURCES_FILE` | unset | YAML file of webhook sources, each with its own auth method, secret, formats, default registry, origin (see `conveyor_trigger.adapters.webhook_sources`) |
| `CONVEYOR_WEBHOOK_ALLOW_UNAUTHENTICATED` | `false` | accept webhooks without valid credentials; with no token/sources and `false`, every webhook gets 401 |
| `CONVEYOR_WEBHOOK_DEFAULT_REGISTRY` | unset | registry host for payloads that carry none (Docker Hub-like formats), when neither `?registry=` nor the source gives one |
| `CONVEYOR_WEBHOOK_MAX_BODY` | `1MiB` | largest webhook body accepted (bytes, or with KiB/MiB); larger -> 413 |
| `CONVEYOR_WEBHOOK_PUBLISH_TIMEOUT` | `5s` | how long a webhook waits for JetStream to store its events before answering 503 |
| `CONVEYOR_TRIGGER_MATCHER_ENABLED` | `true` | `false` runs a receive-only trigger: webhooks are stored, nothing is matched |
| `CONVEYOR_TRIGGER_RESYNC_INTERVAL` | `60s` | period of the full pipeline re-load from config (also done on NATS reconnect) |
| `CONVEYOR_TRIGGER_DEDUPE_WINDOW` | `1h` | how long a pushed image is remembered, so the same digest under another tag does not deploy again (TTL of the `conveyor_pushes` KV bucket, set when it is created) |
| `CONVEYOR_TRIGGER_EVENTS_LOG_SIZE` | `1000` | registry events kept in memory for ListEvents |
| `CONVEYOR_TRIGGER_ACK_WAIT` | `30s` | JetStream ack wait of the matcher's consumer (redelivery after a crash) |
| `CONVEYOR_TRIGGER_DIGEST_TIMEOUT` | `10s` | limit on resolving a missing digest before matching; after it the push proceeds by tag |
| `CONVEYOR_TRIGGER_SHUTDOWN_GRACE` | `10s` | on SIGTERM, how long in-flight webhooks and RPCs may take to finish |
| `CONVEYOR_REGISTRIES_FILE` | unset | registry hosts and credentials for digest resolution and ListTags (read by `conveyor.registry`) |
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace

from conveyor import refs
from conveyor.settings import CommonSettings, EnvReader
from conveyor_trigger.adapters.webhook_sources import load_sources_file
from conveyor_trigger.domain.formats import FORMATS
from conveyor_trigger.domain.webhook_auth import Authenticator, Source, shared_token_source

_SIZE = re.compile(r"^\s*(\d+)\s*(b|kib|kb|k|mib|mb|m)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {None: 1, "b": 1, "k": 1024, "kb": 1024, "kib": 1024, "m": 1 << 20, "mb": 1 << 20, "mib": 1 << 20}
MIN_TOKEN_LENGTH = 16


@dataclass(frozen=True)
class TriggerSettings:
    common: CommonSettings
    grpc_address: str
    webhook_address: str
    config_address: str
    authenticator: Authenticator
    max_body: int
    publish_timeout: float
    matcher_enabled: bool
    resync_interval: float
    dedupe_window: float
    events_log_size: int
    ack_wait: float
    digest_timeout: float
    shutdown_grace: float

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> TriggerSettings:
        """Read and validate; raises SettingsError listing every problem."""
        reader = EnvReader(dict(environ))
        common = CommonSettings.read(reader, service="trigger")
        max_body = _size(reader, "CONVEYOR_WEBHOOK_MAX_BODY", 1 << 20)
        default_registry = reader.optional_str("CONVEYOR_WEBHOOK_DEFAULT_REGISTRY")
        if default_registry is not None:
            default_registry = refs.normalize_registry(default_registry)
            if not refs.is_valid_registry(default_registry):
                reader.problems.append(f"CONVEYOR_WEBHOOK_DEFAULT_REGISTRY={default_registry!r}: expected HOST[:PORT]")
        sources: list[Source] = []
        token = reader.optional_str("CONVEYOR_WEBHOOK_TOKEN")
        if token is not None:
            if len(token) < MIN_TOKEN_LENGTH:
                reader.problems.append(f"CONVEYOR_WEBHOOK_TOKEN: too short (at least {MIN_TOKEN_LENGTH} characters)")
            sources.append(shared_token_source(token, registry=default_registry))
        sources_file = reader.path("CONVEYOR_WEBHOOK_SOURCES_FILE", None)
        settings = cls(
            common=common,
            grpc_address=reader.address("CONVEYOR_TRIGGER_ADDR", "127.0.0.1:50052"),
            webhook_address=reader.address("CONVEYOR_WEBHOOK_ADDR", "127.0.0.1:8080"),
            config_address=reader.address("CONVEYOR_CONFIG_ADDR", "127.0.0.1:50051"),
            authenticator=Authenticator(()),
            max_body=max_body,
            publish_timeout=reader.duration("CONVEYOR_WEBHOOK_PUBLISH_TIMEOUT", 5.0, minimum=0.1),
            matcher_enabled=reader.bool("CONVEYOR_TRIGGER_MATCHER_ENABLED", True),
            resync_interval=reader.duration("CONVEYOR_TRIGGER_RESYNC_INTERVAL", 60.0, minimum=0.1),
            dedupe_window=reader.duration("CONVEYOR_TRIGGER_DEDUPE_WINDOW", 3600.0, minimum=1.0),
            events_log_size=reader.int("CONVEYOR_TRIGGER_EVENTS_LOG_SIZE", 1000, minimum=1, maximum=1_000_000),
            ack_wait=reader.duration("CONVEYOR_TRIGGER_ACK_WAIT", 30.0, minimum=1.0),
            digest_timeout=reader.duration("CONVEYOR_TRIGGER_DIGEST_TIMEOUT", 10.0, minimum=0.1),
            shutdown_grace=reader.duration("CONVEYOR_TRIGGER_SHUTDOWN_GRACE", 10.0),
        )
        allow_unauthenticated = reader.bool("CONVEYOR_WEBHOOK_ALLOW_UNAUTHENTICATED", False)
        reader.check()
        if sources_file is not None:
            # Raises its own SettingsError listing the file's problems.
            sources.extend(load_sources_file(sources_file, environ, tuple(FORMATS)))
        authenticator = Authenticator(
            tuple(sources), allow_unauthenticated=allow_unauthenticated, default_registry=default_registry
        )
        return replace(settings, authenticator=authenticator)


def _size(reader: EnvReader, name: str, default: int) -> int:
    raw = reader.optional_str(name)
    if raw is None:
        return default
    match = _SIZE.match(raw)
    if not match:
        reader.problems.append(f"{name}={raw!r}: expected a size in bytes, e.g. 1048576, 512KiB or 1MiB")
        return default
    value = int(match.group(1)) * _SIZE_UNITS[match.group(2).lower() if match.group(2) else None]
    if value < 1024:
        reader.problems.append(f"{name}={raw!r}: must be at least 1KiB")
        return default
    return value
