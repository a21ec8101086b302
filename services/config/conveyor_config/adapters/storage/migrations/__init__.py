"""Alembic migrations of the config database, shipped inside the package.

`upgrade(url)` applies them programmatically (no alembic.ini needed at run time); it is
called at start-up (unless CONVEYOR_CONFIG_MIGRATE=false) and by `conveyor-config migrate`.
Several replicas may start at once: on PostgreSQL a transaction-scoped advisory lock lets
one migrate while the others wait; on SQLite `BEGIN IMMEDIATE` does the same.

New revision (developers): `alembic -c services/config/conveyor_config/adapters/storage/migrations/alembic.ini
revision -m "..."` or write one by hand next to `versions/0001_initial.py`.
"""

from __future__ import annotations

import asyncio
import logging
import pathlib
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text

from conveyor_config.adapters.storage.engine import describe_url, normalize_database_url, open_database

log = logging.getLogger(__name__)

MIGRATIONS_DIR = pathlib.Path(__file__).resolve().parent
# pg_advisory_xact_lock key: "conveyor-config migrations".
_LOCK_KEY = 0x636F6E76_6D696772


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", normalize_database_url(url).replace("%", "%%"))
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
    assert head is not None
    return head


async def current_revision(url: str) -> str | None:
    database = open_database(url)
    try:
        async with database.read_engine.connect() as conn:
            return await conn.run_sync(lambda sync: MigrationContext.configure(sync).get_current_revision())
    finally:
        await database.dispose()


def _ensure_parent_directory(path: str) -> None:
    pathlib.Path(path).expanduser().parent.mkdir(parents=True, exist_ok=True)


async def upgrade(url: str, revision: str = "head") -> None:
    """Bring the database at `url` up to `revision` (creating the SQLite file's directory if needed)."""
    url = normalize_database_url(url)
    database = open_database(url)
    if database.dialect == "sqlite":
        path = database.write_engine.url.database
        if path and path != ":memory:":
            await asyncio.to_thread(_ensure_parent_directory, path)
    config = alembic_config(url)

    def run(connection: Any) -> None:
        before = MigrationContext.configure(connection).get_current_revision()
        config.attributes["connection"] = connection
        command.upgrade(config, revision)
        after = MigrationContext.configure(connection).get_current_revision()
        if before != after:
            log.info("database migrated", extra={"database": describe_url(url), "from": before or "empty", "to": after})

    try:
        async with database.write_engine.begin() as conn:
            if database.dialect == "postgresql":
                await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK_KEY})
            await conn.run_sync(run)
    finally:
        await database.dispose()
