"""Fixtures for the config service: databases (SQLite and the real PostgreSQL), the running service, stubs."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import pathlib
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from typing import Any

import asyncpg
import grpc
import pytest
from grpc_health.v1 import health_pb2_grpc
from sqlalchemy import text
from sqlalchemy.engine import make_url

from conveyor.v1 import pipeline_service_pb2_grpc, run_service_pb2_grpc
from conveyor_config.adapters.storage import SqlStore, migrations
from conveyor_config.adapters.storage.engine import open_database
from conveyor_config.app import ConfigApp
from conveyor_config.settings import ConfigSettings
from tests.support.nats_server import NatsServer

TABLES = ("outbox", "request_ids", "run_event_ids", "run_logs", "run_tombstones", "runs", "pipelines")


def _run_in_thread(work: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
    """asyncio.run in a thread of its own: session fixtures may be set up from inside a running loop."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(lambda: asyncio.run(work())).result()


def _asyncpg_dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def _pg_admin(postgres_url: str, statement: str) -> None:
    try:
        conn = await asyncpg.connect(_asyncpg_dsn(postgres_url), timeout=10)
    except (OSError, asyncpg.PostgresError) as exc:
        raise RuntimeError(
            f"PostgreSQL is required for these tests and is not reachable at {postgres_url}: {exc}"
        ) from exc
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


@contextlib.contextmanager
def pg_database(postgres_url: str) -> Iterator[str]:
    """The URL of a new, empty database on the real PostgreSQL, dropped afterwards."""
    name = f"conveyor_config_test_{secrets.token_hex(4)}"
    url = make_url(postgres_url).set(database=name).render_as_string(hide_password=False)
    _run_in_thread(lambda: _pg_admin(postgres_url, f'CREATE DATABASE "{name}"'))
    try:
        yield url
    finally:
        _run_in_thread(lambda: _pg_admin(postgres_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def config_pg_url(postgres_url: str) -> Iterator[str]:
    """A database of our own on the real PostgreSQL for this test session, migrated, dropped at the end.

    Fails (never skips) when PostgreSQL is down.
    """
    with pg_database(postgres_url) as url:
        _run_in_thread(lambda: migrations.upgrade(url))
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_database_url(request: pytest.FixtureRequest, tmp_path: pathlib.Path) -> Iterator[str]:
    """A database with no tables yet (for migration tests): a SQLite file, or a new PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}"
        return
    with pg_database(request.getfixturevalue("postgres_url")) as url:
        yield url


async def truncate_tables(url: str) -> None:
    database = open_database(url)
    try:
        async with database.write_engine.begin() as conn:
            await conn.execute(text(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE"))
    finally:
        await database.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
async def database_url(request: pytest.FixtureRequest, tmp_path: pathlib.Path) -> str:
    """A migrated, empty database: a SQLite file, or the session's PostgreSQL database (truncated)."""
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'config.db'}"
        await migrations.upgrade(url)
        return url
    url = request.getfixturevalue("config_pg_url")
    await truncate_tables(url)
    return url


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[SqlStore]:
    database = open_database(database_url)
    try:
        yield SqlStore(database)
    finally:
        await database.dispose()


@dataclasses.dataclass
class Clients:
    channel: grpc.aio.Channel
    pipelines: pipeline_service_pb2_grpc.PipelineServiceStub
    runs: run_service_pb2_grpc.RunServiceStub
    health: health_pb2_grpc.HealthStub


StartConfig = Callable[..., Awaitable[ConfigApp]]


@pytest.fixture
async def start_config(nats_server: NatsServer, tmp_path: pathlib.Path) -> AsyncIterator[StartConfig]:
    """Start a ConfigApp in this process (gRPC on a free port, the test's real nats-server)."""
    started: list[ConfigApp] = []

    async def start(
        *, database_url: str | None = None, env: dict[str, str] | None = None, **adapters: Any
    ) -> ConfigApp:
        environ = {
            "CONVEYOR_CONFIG_ADDR": "127.0.0.1:0",
            "CONVEYOR_NATS_URL": nats_server.url,
            "CONVEYOR_DATABASE_URL": database_url or f"sqlite+aiosqlite:///{tmp_path / 'service.db'}",
            "CONVEYOR_CONFIG_OUTBOX_INTERVAL": "200ms",
            "CONVEYOR_CONFIG_TAIL_POLL_INTERVAL": "500ms",
            "CONVEYOR_CONFIG_SHUTDOWN_GRACE": "1s",
            # Registries here are fictional; tests that need a resolver pass a fake one.
            "CONVEYOR_CONFIG_REGISTRY_CHECK": "false",
            **(env or {}),
        }
        service = ConfigApp(ConfigSettings.from_env(environ), **adapters)
        started.append(service)
        await service.start()
        return service

    yield start
    for service in reversed(started):
        await service.stop()


@pytest.fixture
async def config(start_config: StartConfig) -> ConfigApp:
    return await start_config()


@contextlib.asynccontextmanager
async def connected(address: str) -> AsyncIterator[Clients]:
    async with grpc.aio.insecure_channel(address) as channel:
        yield Clients(
            channel,
            pipeline_service_pb2_grpc.PipelineServiceStub(channel),
            run_service_pb2_grpc.RunServiceStub(channel),
            health_pb2_grpc.HealthStub(channel),
        )


@pytest.fixture
async def clients(config: ConfigApp) -> AsyncIterator[Clients]:
    async with connected(config.address) as clients:
        yield clients
