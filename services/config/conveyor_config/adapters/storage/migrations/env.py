"""Alembic environment: uses the connection handed over by `conveyor_config.adapters.storage.migrations.upgrade`,
or (for the alembic CLI) connects to the configured URL / CONVEYOR_DATABASE_URL itself."""

from __future__ import annotations

import asyncio
import os
from typing import Any

from alembic import context

from conveyor_config.adapters.storage.schema import metadata

config = context.config


def _configure(connection: Any) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=True,  # SQLite cannot ALTER most things in place
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_standalone(url: str) -> None:
    from conveyor_config.adapters.storage.engine import open_database

    database = open_database(url)
    try:
        async with database.write_engine.begin() as conn:
            await conn.run_sync(_configure)
    finally:
        await database.dispose()


def _run() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection)
        return
    url = config.get_main_option("sqlalchemy.url") or os.environ.get("CONVEYOR_DATABASE_URL")
    if not url:
        raise SystemExit("set sqlalchemy.url or CONVEYOR_DATABASE_URL")
    if context.is_offline_mode():
        context.configure(url=url, target_metadata=metadata, literal_binds=True, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    asyncio.run(_run_standalone(url))


_run()
