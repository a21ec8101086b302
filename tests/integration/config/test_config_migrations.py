"""Alembic migrations: they build exactly the schema the code uses, on SQLite and PostgreSQL, idempotently."""

from __future__ import annotations

import pathlib
import subprocess

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from conveyor_config.adapters.storage import migrations
from conveyor_config.adapters.storage.engine import open_database
from conveyor_config.adapters.storage.schema import metadata
from tests.support.procs import console_script


async def schema_differences(url: str) -> list[object]:
    database = open_database(url)
    try:
        async with database.read_engine.connect() as conn:
            return await conn.run_sync(
                lambda sync: compare_metadata(MigrationContext.configure(sync, opts={"compare_type": True}), metadata)
            )
    finally:
        await database.dispose()


async def test_migrated_schema_matches_the_code(database_url: str) -> None:
    assert await schema_differences(database_url) == []
    assert await migrations.current_revision(database_url) == migrations.head_revision()


async def test_upgrading_again_changes_nothing(database_url: str) -> None:
    await migrations.upgrade(database_url)
    assert await migrations.current_revision(database_url) == migrations.head_revision()
    assert await schema_differences(database_url) == []


async def test_fresh_sqlite_file_and_its_directory_are_created(tmp_path: pathlib.Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'nested' / 'dir' / 'conveyor.db'}"
    assert await migrations.current_revision(f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}") is None
    await migrations.upgrade(url)
    database = open_database(url)
    try:
        async with database.read_engine.connect() as conn:
            tables = await conn.run_sync(lambda sync: set(inspect(sync).get_table_names()))
            journal = (await conn.exec_driver_sql("PRAGMA journal_mode")).scalar()
    finally:
        await database.dispose()
    assert {"pipelines", "runs", "run_logs", "run_event_ids", "request_ids", "outbox", "alembic_version"} <= tables
    assert journal == "wal"


def test_migrate_command(tmp_path: pathlib.Path) -> None:
    database = tmp_path / "data" / "conveyor.db"
    result = subprocess.run(
        [console_script("conveyor-config"), "migrate"],
        env={"CONVEYOR_DATA_DIR": str(tmp_path / "data"), "PATH": "/usr/bin:/bin", "CONVEYOR_LOG_FORMAT": "text"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert database.exists()
    assert "database is up to date" in result.stderr


def test_bad_settings_exit_2_with_a_readable_message(tmp_path: pathlib.Path) -> None:
    result = subprocess.run(
        [console_script("conveyor-config"), "migrate"],
        env={"CONVEYOR_DATABASE_URL": "mysql://root:hunter2@db/x", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "CONVEYOR_DATABASE_URL" in result.stderr and "hunter2" not in result.stderr
