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
from conveyor_trigger.registry_access import registry_access_from_env
from conveyor_trigger.settings import TriggerSettings

log = logging.getLogger("conveyor_trigger")


async def serve(stop: asyncio.Event) -> None:
    settings = TriggerSettings.from_env(os.environ)
    registry = registry_access_from_env(os.environ)
    logs.configure("conveyor-trigger", settings.common.log_level, settings.common.log_format)
    metrics.serve_metrics(settings.common.metrics_address)
    try:
        await TriggerApp(settings, registry=registry).run(stop)
    except (ConnectionError, OSError) as exc:
        # NATS unreachable at start, or a listen address in use: say so plainly and exit non-zero.
        log.error("cannot start: %s", exc)
        raise SystemExit(1) from None


def main() -> None:
    run_service("conveyor-trigger", serve)


if __name__ == "__main__":
    main()
