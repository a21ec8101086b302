# ruff: noqa: E501 - the env var table is meant to be copied into the README as is
"""Settings of conveyor-config, read once from the environment at start-up.

| Variable | Default | Meaning |
|---|---|---|
| `CONVEYOR_CONFIG_ADDR` | `127.0.0.1:50051` | gRPC listen address (PipelineService, RunService, health, reflection) |
| `CONVEYOR_DATA_DIR` | `./data` | Directory of the default SQLite database |
| `CONVEYOR_DATABASE_URL` | `sqlite+aiosqlite:///<data dir>/conveyor.db` | Database: `sqlite+aiosqlite:///path` or `postgresql+asyncpg://user:pass@host/db` (`sqlite:///` and `postgresql://` are accepted too) |
| `CONVEYOR_DATABASE_POOL_SIZE` | `10` | Database connections per process (PostgreSQL: up to twice this under load) |
| `CONVEYOR_CONFIG_MIGRATE` | `true` | Apply database migrations at start-up (`conveyor-config migrate` does it on demand) |
| `CONVEYOR_NATS_URL` | `nats://127.0.0.1:4222` | NATS server with JetStream |
| `CONVEYOR_DEPLOYER_ADDR` | unset | Deployer gRPC address; when set, Create/Update check that the target workload and container exist |
| `CONVEYOR_CONFIG_TARGET_CHECK_TIMEOUT` | `2s` | Deadline of that check; an unreachable deployer does not block a change |
| `CONVEYOR_CONFIG_REGISTRY_CHECK` | `true` | StartPipeline asks the registry (credentials as for the registry client, README "Registry credentials") whether the tag exists and what its digest is; `false` starts by tag without asking |
| `CONVEYOR_CONFIG_RESOLVE_TIMEOUT` | `10s` | Deadline for resolving a tag's digest on StartPipeline |
| `CONVEYOR_CONFIG_TAIL_POLL_INTERVAL` | `2s` | TailRunLogs(follow) re-reads the database this often (events stored by other replicas) |
| `CONVEYOR_CONFIG_OUTBOX_INTERVAL` | `1s` | How often unpublished DeployRequested messages are retried |
| `CONVEYOR_CONFIG_REQUEST_ID_RETENTION` | `24h` | How long request_id idempotency keys are remembered |
| `CONVEYOR_CONFIG_CACHE_TTL` | `5s` | GetPipeline cache lifetime; entries are also dropped on every change notice from any replica (0 = no cache) |
| `CONVEYOR_CONFIG_TOTAL_SIZE_CACHE` | `2s` | How long ListPipelines may reuse a total_size count (0 = count every time) |
| `CONVEYOR_CONFIG_SHUTDOWN_GRACE` | `10s` | On SIGTERM, how long in-flight RPCs may take to finish |
| `CONVEYOR_CONFIG_METRICS_ADDR` | unset | `HOST:PORT` to serve Prometheus `/metrics` on |
| `CONVEYOR_LOG_LEVEL` | `info` | `debug`, `info`, `warning` or `error` |
| `CONVEYOR_LOG_FORMAT` | `json` | `json` (one object per line) or `text` |
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from conveyor.settings import CommonSettings, EnvReader, data_dir
from conveyor_config.adapters.storage.engine import normalize_database_url

DEFAULT_ADDRESS = "127.0.0.1:50051"


@dataclass(frozen=True)
class ConfigSettings:
    common: CommonSettings
    address: str
    database_url: str
    database_pool_size: int
    migrate_on_start: bool
    deployer_address: str | None
    target_check_timeout: float
    registry_check: bool
    resolve_timeout: float
    tail_poll_interval: float
    outbox_interval: float
    request_id_retention: float
    total_size_cache: float
    cache_ttl: float
    shutdown_grace: float

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ConfigSettings:
        """Read and validate; raises SettingsError listing every problem."""
        reader = EnvReader(dict(os.environ if environ is None else environ))
        common = CommonSettings.read(reader, service="config")
        directory = data_dir(reader)
        default_url = f"sqlite+aiosqlite:///{(directory / 'conveyor.db').as_posix()}"
        database_url = _database_url(reader, reader.str("CONVEYOR_DATABASE_URL", default_url), default_url)
        deployer = reader.optional_str("CONVEYOR_DEPLOYER_ADDR")
        if deployer is not None:
            deployer = reader.address("CONVEYOR_DEPLOYER_ADDR", deployer)
        settings = cls(
            common=common,
            address=reader.address("CONVEYOR_CONFIG_ADDR", DEFAULT_ADDRESS),
            database_url=database_url,
            database_pool_size=reader.int("CONVEYOR_DATABASE_POOL_SIZE", 10, minimum=1, maximum=200),
            migrate_on_start=reader.bool("CONVEYOR_CONFIG_MIGRATE", True),
            deployer_address=deployer,
            target_check_timeout=reader.duration("CONVEYOR_CONFIG_TARGET_CHECK_TIMEOUT", 2.0, minimum=0.05),
            registry_check=reader.bool("CONVEYOR_CONFIG_REGISTRY_CHECK", True),
            resolve_timeout=reader.duration("CONVEYOR_CONFIG_RESOLVE_TIMEOUT", 10.0, minimum=0.05),
            tail_poll_interval=reader.duration("CONVEYOR_CONFIG_TAIL_POLL_INTERVAL", 2.0, minimum=0.05),
            outbox_interval=reader.duration("CONVEYOR_CONFIG_OUTBOX_INTERVAL", 1.0, minimum=0.05),
            request_id_retention=reader.duration("CONVEYOR_CONFIG_REQUEST_ID_RETENTION", 24 * 3600.0, minimum=60.0),
            total_size_cache=reader.duration("CONVEYOR_CONFIG_TOTAL_SIZE_CACHE", 2.0),
            cache_ttl=reader.duration("CONVEYOR_CONFIG_CACHE_TTL", 5.0),
            shutdown_grace=reader.duration("CONVEYOR_CONFIG_SHUTDOWN_GRACE", 10.0),
        )
        reader.check()
        return settings


def _database_url(reader: EnvReader, value: str, default: str) -> str:
    try:
        url = normalize_database_url(value)
        backend = make_url(url).get_backend_name()
    except (ArgumentError, ValueError):
        reader.problems.append(
            "CONVEYOR_DATABASE_URL: not a database URL (expected sqlite+aiosqlite:///PATH or "
            "postgresql+asyncpg://USER:PASSWORD@HOST/DB)"
        )
        return default
    if backend not in {"sqlite", "postgresql"}:
        reader.problems.append(f"CONVEYOR_DATABASE_URL: unsupported database {backend!r} (use SQLite or PostgreSQL)")
        return default
    return url
