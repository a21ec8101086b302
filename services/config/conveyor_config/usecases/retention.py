"""What is kept only for a while: idempotency keys (AIP-155) and the tombstones of deleted runs."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

from conveyor_config.usecases.ports import RequestStore, TombstoneStore

log = logging.getLogger(__name__)

HOUR = 3600.0


async def purge_expired_requests(
    store: RequestStore,
    retention: float,
    stop: asyncio.Event,
    *,
    interval: float = HOUR,
    clock: Callable[[], float] = time.time,
) -> None:
    """Every `interval` seconds until `stop` is set, forget request ids older than `retention` seconds."""
    await _purge_every(store.purge_requests, "request ids", retention, stop, interval=interval, clock=clock)


async def purge_expired_tombstones(
    store: TombstoneStore,
    retention: float,
    stop: asyncio.Event,
    *,
    interval: float = HOUR,
    clock: Callable[[], float] = time.time,
) -> None:
    """The same for tombstones of deleted runs; `retention` is the RunEvents stream's max age, after
    which JetStream holds no event of theirs that could recreate them."""
    await _purge_every(store.purge_tombstones, "run tombstones", retention, stop, interval=interval, clock=clock)


async def _purge_every(
    purge: Callable[[int], Awaitable[int]],
    what: str,
    retention: float,
    stop: asyncio.Event,
    *,
    interval: float,
    clock: Callable[[], float],
) -> None:
    while not stop.is_set():
        try:
            purged = await purge(int((clock() - retention) * 1_000_000))
            if purged:
                log.info(f"expired {what} purged", extra={"count": purged})
        except Exception as exc:
            log.warning(f"could not purge {what}", extra={"error": str(exc)})
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)
