"""Expiring idempotency keys and run tombstones: the purge loops ask the store to forget what is older
than the retention."""

from __future__ import annotations

import asyncio

import pytest

from conveyor_config.usecases.retention import purge_expired_requests, purge_expired_tombstones


class FakeStore:
    def __init__(self, stop: asyncio.Event, *, fail_first: bool = False) -> None:
        self.stop = stop
        self.fail_first = fail_first
        self.calls: list[int] = []

    async def purge_requests(self, before_us: int) -> int:
        self.calls.append(before_us)
        if self.fail_first and len(self.calls) == 1:
            raise ConnectionError("database is down")
        if len(self.calls) >= 2:
            self.stop.set()
        return 3


async def test_keys_older_than_the_retention_are_purged_each_interval() -> None:
    stop = asyncio.Event()
    store = FakeStore(stop)
    await asyncio.wait_for(
        purge_expired_requests(store, 3600.0, stop, interval=0.01, clock=lambda: 10_000.0), timeout=5
    )
    assert store.calls == [6_400_000_000, 6_400_000_000]


async def test_a_failed_purge_is_logged_and_retried(caplog: pytest.LogCaptureFixture) -> None:
    stop = asyncio.Event()
    store = FakeStore(stop, fail_first=True)
    await asyncio.wait_for(purge_expired_requests(store, 60.0, stop, interval=0.01, clock=lambda: 100.0), timeout=5)
    assert len(store.calls) == 2
    assert any(record.getMessage() == "could not purge request ids" for record in caplog.records)


async def test_nothing_runs_once_stopped() -> None:
    stop = asyncio.Event()
    stop.set()
    store = FakeStore(stop)
    await purge_expired_requests(store, 60.0, stop, interval=0.01)
    assert store.calls == []


class FakeTombstones:
    def __init__(self, stop: asyncio.Event) -> None:
        self.stop = stop
        self.calls: list[int] = []

    async def purge_tombstones(self, before_us: int) -> int:
        self.calls.append(before_us)
        self.stop.set()
        return 1


async def test_tombstones_older_than_the_retention_are_purged() -> None:
    stop = asyncio.Event()
    store = FakeTombstones(stop)
    await asyncio.wait_for(
        purge_expired_tombstones(store, 7 * 24 * 3600.0, stop, interval=0.01, clock=lambda: 1_000_000.0), timeout=5
    )
    assert store.calls == [(1_000_000 - 604_800) * 1_000_000]
