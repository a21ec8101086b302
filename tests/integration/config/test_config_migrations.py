"""Alembic migrations: they build exactly the schema the code uses, on SQLite and PostgreSQL, idempotently."""

from __future__ import annotations

import pathlib
import subprocess

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text

from conveyor.names import RunName
from conveyor.v1.run_pb2 import Run
from conveyor_config.adapters.storage import SqlStore, migrations
from conveyor_config.adapters.storage.engine import open_database
from conveyor_config.adapters.storage.schema import metadata, pipelines, runs
from conveyor_config.domain.outcomes import EventOutcome
from conveyor_config.domain.runs import LOG_PHASE_OUTCOME, LOG_PHASE_PROGRESS
from conveyor_config.usecases.ports import LogPosition
from tests.integration.config.test_config_storage import NOW_US, event, new_pipeline, stamp
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


async def test_0003_orders_existing_log_entries_by_their_time(empty_database_url: str) -> None:
    url = empty_database_url
    await migrations.upgrade(url, "0002")
    pipeline = new_pipeline("web")
    database = open_database(url)
    try:
        async with database.write_engine.begin() as conn:
            await conn.execute(
                pipelines.insert().values(
                    id="web", registry="r", repository="a", cluster="c", namespace="n", workload="w",
                    disabled=False, body=pipeline.SerializeToString(), etag="e", create_time_us=NOW_US,
                    update_time_us=NOW_US,
                )
            )  # fmt: skip
            await conn.execute(
                runs.insert().values(
                    pipeline_id="web", run_id="r1", trigger=Run.PUSH, state=Run.RUNNING, image="r/a:v1", tag="v1",
                    digest="", previous_image="", error="", event_id="", create_time_us=NOW_US,
                    update_time_us=NOW_US, log_count=3,
                )
            )  # fmt: skip
            for seq, time_us in enumerate((NOW_US + 30, NOW_US + 10, NOW_US + 20)):
                await conn.execute(
                    text(
                        "INSERT INTO run_logs (pipeline_id, run_id, seq, time_us, level, step, message) "
                        "VALUES ('web', 'r1', :seq, :time_us, 2, 'deploy', :message)"
                    ),
                    {"seq": seq, "time_us": time_us, "message": f"arrived {seq}"},
                )
    finally:
        await database.dispose()

    await migrations.upgrade(url)
    assert await schema_differences(url) == []
    database = open_database(url)
    try:
        store = SqlStore(database)
        name = RunName("web", "r1")
        done = event("pipelines/web/runs/r1", "done", Run.SUCCEEDED, "rollout complete", time=stamp(NOW_US + 1))
        assert await store.apply_run_event(name, "done", done, stamp(NOW_US + 40)) is EventOutcome.STORED
        logs = await store.read_run_logs(name, range(10), limit=10)
    finally:
        await database.dispose()
    assert [(position, entry.message) for position, entry in logs] == [
        (LogPosition(LOG_PHASE_PROGRESS, NOW_US + 10, 1), "arrived 1"),
        (LogPosition(LOG_PHASE_PROGRESS, NOW_US + 20, 2), "arrived 2"),
        (LogPosition(LOG_PHASE_PROGRESS, NOW_US + 30, 0), "arrived 0"),
        (LogPosition(LOG_PHASE_OUTCOME, NOW_US + 1, 3), "rollout complete"),
    ]


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
