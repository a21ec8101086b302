"""What the parts of the store share: connections, point reads, idempotency keys, value conversions."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

from google.protobuf import timestamp_pb2
from sqlalchemy import delete, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from conveyor_config.adapters.storage.engine import Database
from conveyor_config.adapters.storage.schema import request_ids
from conveyor_config.usecases.ports import RequestRecord


def to_us(ts: timestamp_pb2.Timestamp) -> int:
    return int(ts.ToMicroseconds())


def set_us(target: timestamp_pb2.Timestamp, micros: int | None) -> None:
    if micros is not None:
        target.FromMicroseconds(micros)


def safe_text(value: str) -> str:
    # PostgreSQL text cannot hold NUL; one stray byte must not make an event undeliverable.
    return value.replace("\x00", "\ufffd")


class SqlBase:
    """Plumbing of `SqlStore`; its parts (pipelines, runs, outbox) subclass this."""

    def __init__(self, database: Database) -> None:
        self.database = database
        postgres = database.dialect == "postgresql"
        self._insert = postgresql.insert if postgres else sqlite.insert
        self._placeholder: Callable[[int], str] = (lambda i: f"${i + 1}") if postgres else (lambda i: "?")
        self._statements: dict[str, str] = {}

    async def _fetch(self, statement: str, *params: Any) -> list[Sequence[Any]]:
        """Hot primary-key reads (GetPipeline on a cache miss, GetRun, TailRunLogs polls), straight on the driver.

        Measured: `make bench` serves GetPipeline at 2,200-3,900/s over 100,000 pipelines (target >= 3,000/s),
        bound by gRPC's per-call cost, with a SQLite point read of ~35 us. The same read through SQLAlchemy
        costs ~600 us of event-loop CPU on SQLite (aiosqlite's thread hops) and ~450 us on PostgreSQL, which
        alone caps Get near 1,800-2,000/s; hence these paths, for these reads only.
        SQLite: on the event loop itself (a WAL read never waits for writers).
        PostgreSQL: an asyncpg pool, without SQLAlchemy's per-checkout ping and overhead.
        """
        point_reader = self.database.point_reader()
        if point_reader is not None:
            return point_reader.execute(self._sql(statement, len(params)), params).fetchall()
        pool = await self.database.point_pool()
        if pool is not None:
            return list(await pool.fetch(self._sql(statement, len(params)), *params))
        # In-memory SQLite (tests, experiments): the one shared connection.
        names = [f":p{i}" for i in range(len(params))]
        async with self._reading() as conn:
            result = await conn.execute(
                text(statement.format(*names)), {n[1:]: v for n, v in zip(names, params, strict=True)}
            )
            return list(result.all())

    def _sql(self, statement: str, count: int) -> str:
        sql = self._statements.get(statement)
        if sql is None:
            sql = self._statements[statement] = statement.format(*(self._placeholder(i) for i in range(count)))
        return sql

    @asynccontextmanager
    async def _reading(self) -> AsyncIterator[AsyncConnection]:
        async with self.database.read_engine.connect() as conn:
            yield conn

    @asynccontextmanager
    async def _writing(self) -> AsyncIterator[AsyncConnection]:
        """A write transaction; it commits on exit unless the body rolled it back."""
        async with self.database.write_engine.connect() as conn, conn.begin():
            yield conn

    async def _find_request(self, conn: AsyncConnection, scope: str, request_id: str) -> bytes | None:
        return await conn.scalar(
            select(request_ids.c.response).where(request_ids.c.scope == scope, request_ids.c.request_id == request_id)
        )

    async def _claim_request(self, conn: AsyncConnection, request: RequestRecord) -> bytes | None:
        """Record the key first; None when claimed, else the response of whoever got there first."""
        claimed = await conn.execute(
            self._insert(request_ids)
            .values(
                scope=request.scope,
                request_id=request.request_id,
                response=request.response,
                create_time_us=request.create_time_us,
            )
            .on_conflict_do_nothing()
        )
        if claimed.rowcount == 1:
            return None
        return await self._find_request(conn, request.scope, request.request_id)

    async def find_request(self, scope: str, request_id: str) -> bytes | None:
        async with self._reading() as conn:
            return await self._find_request(conn, scope, request_id)

    async def purge_requests(self, before_us: int) -> int:
        async with self._writing() as conn:
            result = await conn.execute(delete(request_ids).where(request_ids.c.create_time_us < before_us))
            return int(result.rowcount or 0)
