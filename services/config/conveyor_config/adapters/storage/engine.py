"""The engines for one database, tuned for SQLite (WAL, one writer) or PostgreSQL (a pool)."""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
from typing import Any

import asyncpg
from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import StaticPool


def normalize_database_url(url: str) -> str:
    """Accept plain `sqlite:///` and `postgresql://` URLs and pick the async drivers."""
    parsed = make_url(url)
    if parsed.drivername in {"sqlite", "sqlite+pysqlite"}:
        parsed = parsed.set(drivername="sqlite+aiosqlite")
    elif parsed.drivername in {"postgresql", "postgres", "postgresql+psycopg2", "postgresql+psycopg"}:
        parsed = parsed.set(drivername="postgresql+asyncpg")
    return parsed.render_as_string(hide_password=False)


def describe_url(url: str) -> str:
    """The URL without its password, for logs."""
    return make_url(url).render_as_string(hide_password=True)


@dataclasses.dataclass
class Database:
    """The engines for one database: writes and reads (the same engine on PostgreSQL)."""

    url: str
    write_engine: AsyncEngine
    read_engine: AsyncEngine
    busy_timeout: float = 5.0
    pool_size: int = 10
    _point_reader: sqlite3.Connection | None = None
    _point_pool: asyncpg.Pool | None = None
    _point_pool_lock: asyncio.Lock = dataclasses.field(default_factory=asyncio.Lock)

    @property
    def dialect(self) -> str:
        return self.write_engine.dialect.name

    def point_reader(self) -> sqlite3.Connection | None:
        """SQLite file databases: a plain connection for primary-key reads on the event loop."""
        if self._point_reader is None and self.dialect == "sqlite" and self.read_engine is not self.write_engine:
            path = self.read_engine.url.database
            if path:
                self._point_reader = _open_point_reader(path, self.busy_timeout)
        return self._point_reader

    async def point_pool(self) -> asyncpg.Pool | None:
        """PostgreSQL: an asyncpg pool for primary-key reads (created on first use)."""
        if self.dialect != "postgresql":
            return None
        if self._point_pool is None:
            async with self._point_pool_lock:
                if self._point_pool is None:
                    dsn, options = _asyncpg_dsn(self.url)
                    self._point_pool = await asyncpg.create_pool(
                        dsn, min_size=1, max_size=max(2, self.pool_size // 2), command_timeout=30, **options
                    )
        return self._point_pool

    async def dispose(self) -> None:
        if self._point_reader is not None:
            self._point_reader.close()
            self._point_reader = None
        if self._point_pool is not None:
            pool, self._point_pool = self._point_pool, None
            try:
                await asyncio.wait_for(pool.close(), 5.0)
            except TimeoutError:
                pool.terminate()
        await self.write_engine.dispose()
        if self.read_engine is not self.write_engine:
            await self.read_engine.dispose()


def open_database(url: str, *, pool_size: int = 10, busy_timeout: float = 5.0) -> Database:
    url = normalize_database_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return _open_sqlite(url, pool_size=pool_size, busy_timeout=busy_timeout)
    if parsed.get_backend_name() == "postgresql":
        engine = create_async_engine(url, pool_size=pool_size, max_overflow=pool_size // 2, pool_pre_ping=True)
        # Single-statement reads need no transaction: one round trip instead of three.
        reader = engine.execution_options(isolation_level="AUTOCOMMIT")
        return Database(url, engine, reader, pool_size=pool_size)
    raise ValueError(f"unsupported database {parsed.get_backend_name()!r}: use sqlite+aiosqlite or postgresql+asyncpg")


def _open_sqlite(url: str, *, pool_size: int, busy_timeout: float) -> Database:
    database = make_url(url).database
    in_memory = not database or database == ":memory:" or "mode=memory" in url

    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        if not in_memory:
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout * 1000)}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    def take_over_transactions(dbapi_connection: Any, record: Any) -> None:
        on_connect(dbapi_connection, record)
        # sqlite3 must not BEGIN by itself; SQLAlchemy's begin hook emits BEGIN IMMEDIATE.
        dbapi_connection.isolation_level = None

    def begin_immediate(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    if in_memory:
        engine = create_async_engine(url, poolclass=StaticPool)
        event.listen(engine.sync_engine, "connect", take_over_transactions)
        event.listen(engine.sync_engine, "begin", begin_immediate)
        return Database(url, engine, engine)

    connect_args = {"timeout": busy_timeout}
    # One writer connection: writers queue in the pool instead of spinning on the file lock.
    writer = create_async_engine(url, pool_size=1, max_overflow=0, pool_timeout=60, connect_args=connect_args)
    event.listen(writer.sync_engine, "connect", take_over_transactions)
    event.listen(writer.sync_engine, "begin", begin_immediate)
    # Readers never BEGIN (sqlite3's legacy mode skips it for SELECT): nothing to roll back on return.
    reader = create_async_engine(
        url, pool_size=pool_size, max_overflow=0, connect_args=connect_args, pool_reset_on_return=None
    )
    event.listen(reader.sync_engine, "connect", on_connect)
    return Database(url, writer, reader, busy_timeout, pool_size)


def _asyncpg_dsn(url: str) -> tuple[str, dict[str, Any]]:
    """SQLAlchemy's asyncpg URL as a DSN for asyncpg itself (its `ssl` option carried over)."""
    parsed = make_url(url)
    options: dict[str, Any] = {}
    if "ssl" in parsed.query:
        options["ssl"] = parsed.query["ssl"]
    query = {key: value for key, value in parsed.query.items() if key == "sslmode"}
    return parsed.set(drivername="postgresql", query=query).render_as_string(hide_password=False), options


def _open_point_reader(path: str, busy_timeout: float) -> sqlite3.Connection:
    # Autocommit (no transaction is ever left open) and a short busy timeout: a WAL reader
    # only waits in rare recovery cases, and must then not hold the event loop for long.
    connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=min(busy_timeout, 0.2))
    connection.execute("PRAGMA query_only=ON")
    return connection
