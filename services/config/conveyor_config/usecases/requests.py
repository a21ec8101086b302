"""Idempotency keys (AIP-155) are remembered for a retention period, then purged."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from conveyor_config.usecases.ports import RequestStore

log = logging.getLogger(__name__)


async def purge_expired_requests(
    store: RequestStore,
    retention: float,
    stop: asyncio.Event,
    *,
    interval: float = 3600.0,
    clock: Callable[[], float] = time.time,
) -> None:
    """Every `interval` seconds until `stop` is set, forget request ids older than `retention` seconds."""
    while not stop.is_set():
        try:
            before = int((clock() - retention) * 1_000_000)
            purged = await store.purge_requests(before)
            if purged:
                log.info("expired request ids purged", extra={"count": purged})
        except Exception as exc:
            log.warning("could not purge request ids", extra={"error": str(exc)})
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)
