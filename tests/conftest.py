"""Fixtures shared by every test layer: real NATS, PostgreSQL URL, data dirs."""

from __future__ import annotations

import os
import pathlib
from collections.abc import AsyncIterator, Iterator

import nats
import pytest
from nats.aio.client import Client as NATS

from tests.support.nats_cluster import NatsCluster
from tests.support.nats_server import NatsServer

POSTGRES_URL = os.environ.get("CONVEYOR_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")


@pytest.fixture
def nats_server(tmp_path: pathlib.Path) -> Iterator[NatsServer]:
    """A fresh JetStream nats-server per test (tests may kill and restart it)."""
    server = NatsServer(tmp_path / "nats")
    server.start()
    try:
        yield server
    finally:
        server.kill()


@pytest.fixture
def nats_cluster(tmp_path: pathlib.Path) -> Iterator[NatsCluster]:
    """A fresh three-node JetStream cluster per test, meta leader elected (tests may kill and restart nodes)."""
    cluster = NatsCluster(tmp_path / "nats-cluster")
    try:
        cluster.start()
        yield cluster
    finally:
        for index in range(len(cluster.nodes)):
            cluster.kill(index)


@pytest.fixture
async def nc(nats_server: NatsServer) -> AsyncIterator[NATS]:
    client = await nats.connect(nats_server.url, max_reconnect_attempts=-1, reconnect_time_wait=0.2)
    try:
        yield client
    finally:
        await client.close()


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """The machine's PostgreSQL; tests that need it fail (not skip) when it is down."""
    return POSTGRES_URL
