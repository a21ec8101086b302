"""A real Distribution registry per test (starts in well under a second)."""

from __future__ import annotations

import pathlib
from collections.abc import AsyncIterator

import pytest

from conveyor.registry import ANONYMOUS, Credentials, RegistryClient, RegistryConfig, RegistrySettings
from tests.support.registry import RegistryServer, running_registry


@pytest.fixture
async def registry(tmp_path: pathlib.Path) -> AsyncIterator[RegistryServer]:
    async with running_registry(tmp_path / "registry") as server:
        yield server


def client_for(server: RegistryServer, credentials: Credentials = ANONYMOUS, *, retries: int = 1) -> RegistryClient:
    """A client that reaches `server` over plain http with `credentials`; fast retries."""
    config = RegistryConfig(server.host, "http", credentials, source="the test's registry settings")
    settings = RegistrySettings(registries={server.host: config}, timeout=5.0, retries=retries, backoff=0.05)
    return RegistryClient(settings)
