"""Settings of conveyor-config, read once from the environment at start-up.

Each field is declared once (variable, default, parser, README text); `ConfigSettings.declarations()`
lists them in the order of the README's "### conveyor-config" table, which a test checks against them
(`conveyor.settings.markdown_table(ConfigSettings.declarations())` prints the table).
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from conveyor import lifecycle
from conveyor.settings import (
    DATA_DIR,
    PAGE_TOKEN_KEY,
    CommonSettings,
    EnvReader,
    Parser,
    Setting,
    address as host_port,
    boolean,
    declarations,
    duration,
    integer,
    read_settings,
    setting,
)
from conveyor_config.adapters.storage.engine import normalize_database_url

T = TypeVar("T")

DEFAULT_ADDRESS = "127.0.0.1:50051"


def _database_url(value: str) -> str:
    """The URL with its async driver; the reason of a ValueError never quotes the URL (it holds a password)."""
    try:
        url = normalize_database_url(value)
        backend = make_url(url).get_backend_name()
    except (ArgumentError, ValueError):
        raise ValueError(
            "not a database URL (expected sqlite+aiosqlite:///PATH or postgresql+asyncpg://USER:PASSWORD@HOST/DB)"
        ) from None
    if backend not in {"sqlite", "postgresql"}:
        raise ValueError(f"unsupported database {backend!r} (use SQLite or PostgreSQL)")
    return url


DATABASE_URL: Setting[str] = Setting(
    "CONVEYOR_DATABASE_URL",
    "",  # until `from_env` derives the default from the data directory
    Parser(_database_url),
    "Database: `sqlite+aiosqlite:///path` or `postgresql+asyncpg://user:pass@host/db` "
    "(`sqlite:///` and `postgresql://` are accepted too)",
    shown="sqlite+aiosqlite:///<data dir>/conveyor.db",
)
# The stop stages of ConfigApp; the shutdown grace below is bounded by its drain stage.
SHUTDOWN_PLAN = lifecycle.DEFAULT_PLAN


@dataclass(frozen=True)
class ConfigSettings:
    common: CommonSettings
    address: str = setting(
        "CONVEYOR_CONFIG_ADDR",
        DEFAULT_ADDRESS,
        parse=host_port(),
        doc="gRPC listen address (PipelineService, RunService, health, reflection)",
    )
    # Declared in conveyor.settings (DATA_DIR, PAGE_TOKEN_KEY) or above (DATABASE_URL), as `from_env` reads them too.
    data_dir: pathlib.Path = setting(
        DATA_DIR.env, DATA_DIR.default, parse=DATA_DIR.parse, doc=DATA_DIR.doc, shown=DATA_DIR.shown
    )
    database_url: str = setting(
        DATABASE_URL.env, DATABASE_URL.default, parse=DATABASE_URL.parse, doc=DATABASE_URL.doc, shown=DATABASE_URL.shown
    )
    database_pool_size: int = setting(
        "CONVEYOR_DATABASE_POOL_SIZE",
        10,
        parse=integer(minimum=1, maximum=200),
        doc="Database connections per process (PostgreSQL: up to twice this under load)",
    )
    migrate_on_start: bool = setting(
        "CONVEYOR_CONFIG_MIGRATE",
        True,
        parse=boolean(),
        doc="Apply database migrations at start-up (`conveyor-config migrate` does it on demand)",
    )
    deployer_address: str | None = setting(
        "CONVEYOR_DEPLOYER_ADDR",
        None,
        parse=host_port(),
        doc="Deployer gRPC address; when set, Create/Update check that the target workload and container exist",
    )
    target_check_timeout: float = setting(
        "CONVEYOR_CONFIG_TARGET_CHECK_TIMEOUT",
        2.0,
        parse=duration(minimum=0.05),
        doc="Deadline of that check; an unreachable deployer does not block a change",
    )
    registry_check: bool = setting(
        "CONVEYOR_CONFIG_REGISTRY_CHECK",
        True,
        parse=boolean(),
        doc='StartPipeline asks the registry (credentials as for the registry client, README "Registry '
        'credentials") whether the tag exists and what its digest is; `false` starts by tag without asking',
    )
    resolve_timeout: float = setting(
        "CONVEYOR_CONFIG_RESOLVE_TIMEOUT",
        10.0,
        parse=duration(minimum=0.05),
        doc="Deadline for resolving a tag's digest on StartPipeline",
    )
    tail_poll_interval: float = setting(
        "CONVEYOR_CONFIG_TAIL_POLL_INTERVAL",
        5.0,
        parse=duration(minimum=0.05),
        doc="TailRunLogs(follow) wakes on a `conveyor.runs.logged` notice from the replica that stored new "
        "entries; it also re-reads the database this often, in case a notice was lost",
    )
    outbox_interval: float = setting(
        "CONVEYOR_CONFIG_OUTBOX_INTERVAL",
        1.0,
        parse=duration(minimum=0.05),
        doc="How often unpublished DeployRequested messages are retried",
    )
    request_id_retention: float = setting(
        "CONVEYOR_CONFIG_REQUEST_ID_RETENTION",
        24 * 3600.0,
        parse=duration(minimum=60.0),
        doc="How long request_id idempotency keys are remembered",
    )
    cache_ttl: float = setting(
        "CONVEYOR_CONFIG_CACHE_TTL",
        5.0,
        parse=duration(),
        doc="GetPipeline cache lifetime; entries are also dropped on every change notice from any replica "
        "(0 = no cache)",
    )
    total_size_cache: float = setting(
        "CONVEYOR_CONFIG_TOTAL_SIZE_CACHE",
        2.0,
        parse=duration(),
        doc="How long ListPipelines may reuse a total_size count (0 = count every time)",
    )
    shutdown_grace: float = setting(
        "CONVEYOR_CONFIG_SHUTDOWN_GRACE",
        10.0,
        parse=duration(),
        doc="On SIGTERM, how long in-flight RPCs may take to finish (at most until "
        f"{SHUTDOWN_PLAN.deadlines()['drain']:g}s into the {SHUTDOWN_PLAN.total:g}s stop)",
    )
    page_token_key: str | None = setting(
        PAGE_TOKEN_KEY.env, PAGE_TOKEN_KEY.default, parse=PAGE_TOKEN_KEY.parse, doc=PAGE_TOKEN_KEY.doc
    )

    @staticmethod
    def declarations() -> list[Setting[Any]]:
        """Every variable read, in the README table's order: config's own, then those every service reads."""
        return [*declarations(ConfigSettings), *CommonSettings.declarations("config")]

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ConfigSettings:
        """Read and validate; raises SettingsError listing every problem (never quoting a secret)."""
        reader = EnvReader(dict(os.environ if environ is None else environ))
        common = CommonSettings.read(reader, service="config")
        settings = read_settings(
            cls,
            reader.environ,
            problems=reader.problems,
            common=common,
            database_url=_read_secret(reader, DATABASE_URL),
            page_token_key=_read_secret(reader, PAGE_TOKEN_KEY),
        )
        reader.check()
        if not settings.database_url:
            default_url = f"sqlite+aiosqlite:///{(settings.data_dir / 'conveyor.db').as_posix()}"
            settings = dataclasses.replace(settings, database_url=default_url)
        return settings


def _read_secret(reader: EnvReader, declared: Setting[T]) -> T:
    """Like `Setting.read`, but a problem names the variable and the reason, not the value."""
    raw = reader.optional_str(declared.env)
    if raw is None:
        return declared.default
    try:
        return declared.parse(raw)
    except ValueError as exc:
        reader.problems.append(f"{declared.env}: {exc}")
        return declared.default
