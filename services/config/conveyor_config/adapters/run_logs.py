"""Run-log notices on core NATS (the `RunLogNotices` of the run use cases): cheap, fire-and-forget."""

from __future__ import annotations

from nats.aio.client import Client as NATS

from conveyor.subjects import RUN_LOGGED_SUBJECT


class NatsRunLogNotices:
    """Best effort: a lost notice only delays followers to their next poll (CONVEYOR_CONFIG_TAIL_POLL_INTERVAL)."""

    def __init__(self, nc: NATS) -> None:
        self.nc = nc

    async def run_logged(self, run_name: str) -> None:
        await self.nc.publish(RUN_LOGGED_SUBJECT, run_name.encode())
