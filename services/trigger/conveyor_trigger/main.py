"""`conveyor-trigger`: registry webhooks and bus events in, matched deploy requests out.

Settings: see `conveyor_trigger.settings` (every env var with its default).
"""

from __future__ import annotations

import asyncio
import logging
import os

from conveyor import logs, metrics
from conveyor.server import run_service
from conveyor_trigger.app import TriggerApp

log = logging.getLogger("conveyor_trigger")


async def serve(stop: asyncio.Event) -> None:
    app = TriggerApp.from_env(os.environ)
    common = app.settings.common
    logs.configure("conveyor-trigger", common.log_level, common.log_format)
    metrics.serve_metrics(common.metrics_address)
    try:
        await app.run(stop)
    except (ConnectionError, OSError) as exc:
        # NATS unreachable at start, or a listen address in use: say so plainly and exit non-zero.
        log.error("cannot start: %s", exc)
        raise SystemExit(1) from None


def main() -> None:
    run_service("conveyor-trigger", serve)


if __name__ == "__main__":
    main()
