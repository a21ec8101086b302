"""SQL storage for pipelines, runs, run logs, idempotency keys and the outbox (SQLAlchemy 2 asyncio).

SQLite (aiosqlite) is the embedded default: WAL journal, a busy timeout, foreign keys on,
and writes serialised through one connection that starts `BEGIN IMMEDIATE` (so a
read-then-write transaction never fails to upgrade its lock). PostgreSQL (asyncpg) is used
for anything bigger; there, row locks (`FOR UPDATE` / `FOR KEY SHARE`) and unique
constraints keep several replicas correct.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import logging
import sqlite3
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
from google.protobuf import timestamp_pb2
from sqlalchemy import ColumnElement, delete, event, func, select, text, tuple_, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import StaticPool

from conveyor.names import RunName
from conveyor.v1.pipeline_pb2 import Pipeline
from conveyor.v1.run_pb2 import Run, RunLogEntry
from conveyor_config import domain
from conveyor_config.domain import (
    CreateOutcome,
    DeleteOutcome,
    EventOutcome,
    PipelineFilter,
    StartOutcome,
)
from conveyor_config.schema import outbox, pipelines, request_ids, run_event_ids, run_logs, runs

log = logging.getLogger(__name__)


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


# --------------------------------------------------------------------------- conversions


def _us(ts: timestamp_pb2.Timestamp) -> int:
    return int(ts.ToMicroseconds())


def _ts(target: timestamp_pb2.Timestamp, micros: int | None) -> None:
    if micros is not None:
        target.FromMicroseconds(micros)


def _text(value: str) -> str:
    # PostgreSQL text cannot hold NUL; one stray byte must not make an event undeliverable.
    return value.replace("\x00", "\ufffd")


_PIPELINE_COLUMNS = (
    pipelines.c.id,
    pipelines.c.body,
    pipelines.c.etag,
    pipelines.c.create_time_us,
    pipelines.c.update_time_us,
)


def _pipeline_from_row(row: Any) -> Pipeline:
    pipeline = Pipeline.FromString(row.body)
    pipeline.name = f"pipelines/{row.id}"
    _ts(pipeline.create_time, row.create_time_us)
    _ts(pipeline.update_time, row.update_time_us)
    pipeline.etag = row.etag
    return pipeline


def _pipeline_values(pipeline: Pipeline) -> dict[str, Any]:
    body = Pipeline()
    body.CopyFrom(pipeline)
    domain.clear_output_only(body)
    return {
        "registry": pipeline.source.registry,
        "repository": pipeline.source.repository,
        "cluster": pipeline.target.cluster,
        "namespace": pipeline.target.namespace,
        "workload": pipeline.target.workload,
        "disabled": pipeline.disabled,
        "body": body.SerializeToString(deterministic=True),
        "etag": pipeline.etag,
        "create_time_us": _us(pipeline.create_time),
        "update_time_us": _us(pipeline.update_time),
    }


def _run_from_row(row: Any) -> Run:
    run = Run(
        name=f"pipelines/{row.pipeline_id}/runs/{row.run_id}",
        trigger=row.trigger,
        image=row.image,
        tag=row.tag,
        digest=row.digest,
        previous_image=row.previous_image,
        state=row.state,
        error=row.error,
        event_id=row.event_id,
    )
    _ts(run.create_time, row.create_time_us)
    _ts(run.start_time, row.start_time_us)
    _ts(run.end_time, row.end_time_us)
    return run


def _run_values(run: Run) -> dict[str, Any]:
    return {
        "trigger": run.trigger,
        "state": run.state,
        "image": _text(run.image),
        "tag": _text(run.tag),
        "digest": _text(run.digest),
        "previous_image": _text(run.previous_image),
        "error": _text(run.error),
        "event_id": _text(run.event_id),
        "create_time_us": _us(run.create_time),
        "start_time_us": _us(run.start_time) if run.HasField("start_time") else None,
        "end_time_us": _us(run.end_time) if run.HasField("end_time") else None,
    }


def _log_rows(name: RunName, first_seq: int, entries: Sequence[RunLogEntry]) -> list[dict[str, Any]]:
    return [
        {
            "pipeline_id": name.pipeline,
            "run_id": name.run,
            "seq": first_seq + offset,
            "time_us": _us(entry.time),
            "level": entry.level,
            "step": _text(entry.step),
            "message": _text(entry.message),
        }
        for offset, entry in enumerate(entries)
    ]


def _entry_from_row(row: Any) -> RunLogEntry:
    entry = RunLogEntry(level=row.level, step=row.step, message=row.message)
    entry.time.FromMicroseconds(row.time_us)
    return entry


def _pipeline_conditions(where: PipelineFilter) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    for attribute in ("registry", "repository", "cluster", "namespace", "workload", "disabled"):
        value = getattr(where, attribute)
        if value is not None:
            conditions.append(pipelines.c[attribute] == value)
    return conditions


@dataclasses.dataclass(frozen=True)
class RequestRecord:
    """An idempotency key and the response to replay to its retries."""

    scope: str
    request_id: str
    response: bytes
    create_time_us: int


@dataclasses.dataclass(frozen=True)
class OutboxMessage:
    id: int
    msg_id: str
    subject: str
    payload: bytes
    attempts: int


@dataclasses.dataclass(frozen=True)
class NewOutboxMessage:
    msg_id: str
    subject: str
    payload: bytes


@dataclasses.dataclass(frozen=True)
class RunProgress:
    state: int
    log_count: int


_PipelineRow = collections.namedtuple("_PipelineRow", "id body etag create_time_us update_time_us")
_RunRow = collections.namedtuple(
    "_RunRow",
    "pipeline_id run_id trigger state image tag digest previous_image error event_id "
    "create_time_us start_time_us end_time_us",
)
_GET_PIPELINE = "SELECT id, body, etag, create_time_us, update_time_us FROM pipelines WHERE id = {0}"
_GET_RUN = (
    "SELECT pipeline_id, run_id, trigger, state, image, tag, digest, previous_image, error, event_id, "
    "create_time_us, start_time_us, end_time_us FROM runs WHERE pipeline_id = {0} AND run_id = {1}"
)
_RUN_PROGRESS = "SELECT state, log_count FROM runs WHERE pipeline_id = {0} AND run_id = {1}"


class SqlStore:
    """The repository behind every use case; one instance per process."""

    def __init__(self, database: Database) -> None:
        self.database = database
        postgres = database.dialect == "postgresql"
        self._insert = postgresql.insert if postgres else sqlite.insert
        self._placeholder: Callable[[int], str] = (lambda i: f"${i + 1}") if postgres else (lambda i: "?")
        self._statements: dict[str, str] = {}

    async def _fetch(self, statement: str, *params: Any) -> list[Sequence[Any]]:
        """Hot primary-key reads (Get, TailRunLogs polls), straight on the driver.

        SQLite: on the event loop itself. A point read in WAL mode takes ~10 us and never
        waits for writers, while handing it to aiosqlite's thread costs 20-50 times that
        (five hops through SQLAlchemy's adapter) and capped Get throughput.
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

    # ---------------------------------------------------------------- plumbing

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

    # ---------------------------------------------------------------- pipelines

    async def get_pipeline(self, pipeline_id: str) -> Pipeline | None:
        rows = await self._fetch(_GET_PIPELINE, pipeline_id)
        return _pipeline_from_row(_PipelineRow(*rows[0])) if rows else None

    async def insert_pipeline(
        self, pipeline: Pipeline, request: RequestRecord | None
    ) -> tuple[CreateOutcome, bytes | None]:
        """Insert a new pipeline (its name carries the id); with a request key, exactly once."""
        pipeline_id = pipeline.name.removeprefix("pipelines/")
        async with self._writing() as conn:
            if request is not None:
                earlier = await self._claim_request(conn, request)
                if earlier is not None:
                    await conn.rollback()
                    return CreateOutcome.REPLAYED, earlier
            inserted = await conn.execute(
                self._insert(pipelines).values(id=pipeline_id, **_pipeline_values(pipeline)).on_conflict_do_nothing()
            )
            if inserted.rowcount != 1:
                await conn.rollback()
                return CreateOutcome.ALREADY_EXISTS, None
        return CreateOutcome.CREATED, None

    async def list_pipelines(self, where: PipelineFilter, after_id: str | None, limit: int) -> list[Pipeline]:
        query = select(*_PIPELINE_COLUMNS).where(*_pipeline_conditions(where))
        if after_id is not None:
            query = query.where(pipelines.c.id > after_id)
        query = query.order_by(pipelines.c.id).limit(limit)
        async with self._reading() as conn:
            rows = (await conn.execute(query)).all()
        return [_pipeline_from_row(row) for row in rows]

    async def count_pipelines(self, where: PipelineFilter) -> int:
        query = select(func.count()).select_from(pipelines).where(*_pipeline_conditions(where))
        async with self._reading() as conn:
            return int(await conn.scalar(query) or 0)

    async def replace_pipeline(self, pipeline: Pipeline, expected_etag: str) -> bool:
        """Compare-and-set: write `pipeline` only while the stored etag is still `expected_etag`."""
        pipeline_id = pipeline.name.removeprefix("pipelines/")
        values = _pipeline_values(pipeline)
        del values["create_time_us"]
        async with self._writing() as conn:
            result = await conn.execute(
                update(pipelines)
                .where(pipelines.c.id == pipeline_id, pipelines.c.etag == expected_etag)
                .values(**values)
            )
            return result.rowcount == 1

    async def delete_pipeline(self, pipeline_id: str, etag: str) -> tuple[DeleteOutcome, list[str]]:
        """Delete a pipeline with its finished runs and their logs; never one with an active run."""
        async with self._writing() as conn:
            current = await conn.scalar(select(pipelines.c.etag).where(pipelines.c.id == pipeline_id).with_for_update())
            if current is None:
                return DeleteOutcome.NOT_FOUND, []
            if etag and etag != current:
                return DeleteOutcome.STALE_ETAG, []
            active = (
                await conn.scalars(
                    select(runs.c.run_id)
                    .where(runs.c.pipeline_id == pipeline_id, runs.c.state.in_(domain.ACTIVE_STATES))
                    .order_by(runs.c.create_time_us)
                    .limit(5)
                )
            ).all()
            if active:
                return DeleteOutcome.ACTIVE_RUNS, [f"pipelines/{pipeline_id}/runs/{run}" for run in active]
            # Foreign keys cascade to runs, their logs and their event ids.
            await conn.execute(delete(pipelines).where(pipelines.c.id == pipeline_id))
        return DeleteOutcome.DELETED, []

    # ---------------------------------------------------------------- runs

    async def start_run(
        self,
        run: Run,
        entries: Sequence[RunLogEntry],
        message: NewOutboxMessage,
        *,
        expected_etag: str,
        request: RequestRecord | None,
    ) -> tuple[StartOutcome, bytes | None]:
        """Store a QUEUED run, its first log entries and its DeployRequested outbox row at once."""
        name = RunName(*run.name.removeprefix("pipelines/").split("/runs/"))
        now_us = _us(run.create_time)
        async with self._writing() as conn:
            if request is not None:
                earlier = await self._claim_request(conn, request)
                if earlier is not None:
                    await conn.rollback()
                    return StartOutcome.REPLAYED, earlier
            row = (
                await conn.execute(
                    select(pipelines.c.etag, pipelines.c.disabled)
                    .where(pipelines.c.id == name.pipeline)
                    .with_for_update(key_share=True)
                )
            ).first()
            outcome = None
            if row is None:
                outcome = StartOutcome.NOT_FOUND
            elif row.disabled:
                outcome = StartOutcome.DISABLED
            elif row.etag != expected_etag:
                outcome = StartOutcome.CHANGED
            if outcome is not None:
                await conn.rollback()
                return outcome, None
            await conn.execute(
                runs.insert().values(
                    pipeline_id=name.pipeline,
                    run_id=name.run,
                    update_time_us=now_us,
                    log_count=len(entries),
                    **_run_values(run),
                )
            )
            if entries:
                await conn.execute(run_logs.insert(), _log_rows(name, 0, entries))
            await conn.execute(
                self._insert(outbox)
                .values(
                    msg_id=message.msg_id,
                    subject=message.subject,
                    payload=message.payload,
                    create_time_us=now_us,
                    attempts=0,
                    next_attempt_us=now_us,
                    last_error="",
                )
                .on_conflict_do_nothing()
            )
        return StartOutcome.STARTED, None

    async def get_run(self, name: RunName) -> Run | None:
        rows = await self._fetch(_GET_RUN, name.pipeline, name.run)
        return _run_from_row(_RunRow(*rows[0])) if rows else None

    async def run_progress(self, name: RunName) -> RunProgress | None:
        rows = await self._fetch(_RUN_PROGRESS, name.pipeline, name.run)
        return RunProgress(rows[0][0], rows[0][1]) if rows else None

    async def list_runs(
        self,
        pipeline_id: str | None,
        states: frozenset[int],
        after: tuple[int, str, str] | None,
        limit: int,
    ) -> list[Run]:
        """Newest first: by create time, then pipeline and run id (all descending)."""
        query = select(runs)
        if pipeline_id is not None:
            query = query.where(runs.c.pipeline_id == pipeline_id)
        if states:
            query = query.where(runs.c.state.in_(sorted(states)))
        if after is not None:
            created, after_pipeline, after_run = after
            if pipeline_id is not None:
                query = query.where(tuple_(runs.c.create_time_us, runs.c.run_id) < tuple_(created, after_run))
            else:
                query = query.where(
                    tuple_(runs.c.create_time_us, runs.c.pipeline_id, runs.c.run_id)
                    < tuple_(created, after_pipeline, after_run)
                )
        query = query.order_by(runs.c.create_time_us.desc(), runs.c.pipeline_id.desc(), runs.c.run_id.desc())
        async with self._reading() as conn:
            rows = (await conn.execute(query.limit(limit))).all()
        return [_run_from_row(row) for row in rows]

    async def pipeline_exists(self, pipeline_id: str) -> bool:
        async with self._reading() as conn:
            return (await conn.scalar(select(pipelines.c.id).where(pipelines.c.id == pipeline_id))) is not None

    async def delete_run(self, name: RunName) -> DeleteOutcome:
        async with self._writing() as conn:
            state = await conn.scalar(
                select(runs.c.state)
                .where(runs.c.pipeline_id == name.pipeline, runs.c.run_id == name.run)
                .with_for_update()
            )
            if state is None:
                return DeleteOutcome.NOT_FOUND
            if not domain.is_terminal(state):
                return DeleteOutcome.NOT_TERMINAL
            await conn.execute(delete(runs).where(runs.c.pipeline_id == name.pipeline, runs.c.run_id == name.run))
        return DeleteOutcome.DELETED

    async def read_run_logs(self, name: RunName, from_seq: int, limit: int) -> list[tuple[int, RunLogEntry]]:
        query = (
            select(run_logs)
            .where(run_logs.c.pipeline_id == name.pipeline, run_logs.c.run_id == name.run, run_logs.c.seq >= from_seq)
            .order_by(run_logs.c.seq)
            .limit(limit)
        )
        async with self._reading() as conn:
            rows = (await conn.execute(query)).all()
        return [(row.seq, _entry_from_row(row)) for row in rows]

    async def apply_run_event(
        self, name: RunName, event_id: str, event: Any, now: timestamp_pb2.Timestamp
    ) -> EventOutcome:
        """Persist one RunEvent: create the run if needed, dedupe by event id, move state forward, append logs."""
        now_us = _us(now)
        key = (runs.c.pipeline_id == name.pipeline, runs.c.run_id == name.run)
        async with self._writing() as conn:
            pipeline_known = await conn.scalar(
                select(pipelines.c.id).where(pipelines.c.id == name.pipeline).with_for_update(key_share=True)
            )
            if pipeline_known is None:
                await conn.rollback()
                return EventOutcome.NO_PIPELINE
            row = (await conn.execute(select(runs).where(*key).with_for_update())).first()
            if row is None:
                fresh = domain.new_run_from_event(str(name), event, now)
                await conn.execute(
                    self._insert(runs)
                    .values(
                        pipeline_id=name.pipeline,
                        run_id=name.run,
                        update_time_us=now_us,
                        log_count=0,
                        **_run_values(fresh),
                    )
                    .on_conflict_do_nothing()
                )
                row = (await conn.execute(select(runs).where(*key).with_for_update())).one()
            first_time = await conn.execute(
                self._insert(run_event_ids)
                .values(event_id=event_id, pipeline_id=name.pipeline, run_id=name.run)
                .on_conflict_do_nothing()
            )
            if first_time.rowcount != 1:
                await conn.rollback()
                return EventOutcome.DUPLICATE
            run = _run_from_row(row)
            domain.apply_run_event(run, event, now)
            entries = list(event.log_entries)
            values = _run_values(run)
            values.update(update_time_us=now_us, log_count=row.log_count + len(entries))
            await conn.execute(update(runs).where(*key).values(**values))
            if entries:
                for entry in entries:
                    if not entry.HasField("time"):
                        entry.time.CopyFrom(event.time if event.HasField("time") else now)
                await conn.execute(run_logs.insert(), _log_rows(name, row.log_count, entries))
        return EventOutcome.STORED

    # ---------------------------------------------------------------- outbox

    async def due_outbox(self, now_us: int, limit: int) -> list[OutboxMessage]:
        query = (
            select(outbox.c.id, outbox.c.msg_id, outbox.c.subject, outbox.c.payload, outbox.c.attempts)
            .where(outbox.c.next_attempt_us <= now_us)
            .order_by(outbox.c.id)
            .limit(limit)
        )
        async with self._reading() as conn:
            rows = (await conn.execute(query)).all()
        return [OutboxMessage(row.id, row.msg_id, row.subject, row.payload, row.attempts) for row in rows]

    async def outbox_delivered(self, ids: Sequence[int]) -> None:
        if not ids:
            return
        async with self._writing() as conn:
            await conn.execute(delete(outbox).where(outbox.c.id.in_(list(ids))))

    async def outbox_failed(self, message_id: int, error: str, next_attempt_us: int) -> None:
        async with self._writing() as conn:
            await conn.execute(
                update(outbox)
                .where(outbox.c.id == message_id)
                .values(attempts=outbox.c.attempts + 1, next_attempt_us=next_attempt_us, last_error=_text(error))
            )

    async def outbox_pending(self) -> int:
        async with self._reading() as conn:
            return int(await conn.scalar(select(func.count()).select_from(outbox)) or 0)
