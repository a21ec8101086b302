"""`conveyor-config`: the config service (pipelines and run records).

    conveyor-config            serve gRPC (PipelineService, RunService, health, reflection)
    conveyor-config migrate    apply database migrations and exit

Settings come from the environment; see `conveyor_config.settings` for the table.
The process is assembled in `conveyor_config.app`.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from collections.abc import Sequence

from conveyor import logs, metrics
from conveyor.server import run_service
from conveyor_config.adapters.storage import migrations
from conveyor_config.adapters.storage.engine import describe_url
from conveyor_config.app import SERVICE, ConfigApp
from conveyor_config.settings import ConfigSettings

log = logging.getLogger(__name__)


async def serve(stop: asyncio.Event) -> None:
    settings = ConfigSettings.from_env()
    logs.configure(SERVICE, settings.common.log_level, settings.common.log_format)
    metrics.serve_metrics(settings.common.metrics_address)
    service = ConfigApp(settings)
    try:
        await service.start()
    except Exception as exc:
        log.error("cannot start conveyor-config", extra={"error": str(exc)}, exc_info=True)
        await service.stop()
        raise SystemExit(1) from None
    await stop.wait()
    log.info("shutting down")
    await service.stop()


async def migrate(stop: asyncio.Event) -> None:
    settings = ConfigSettings.from_env()
    logs.configure(SERVICE, settings.common.log_level, settings.common.log_format)
    await migrations.upgrade(settings.database_url)
    revision = await migrations.current_revision(settings.database_url)
    log.info("database is up to date", extra={"database": describe_url(settings.database_url), "revision": revision})


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="conveyor-config",
        description="Conveyor config service: pipelines and run records over gRPC. "
        "Configured by CONVEYOR_* environment variables.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.add_parser("serve", help="serve gRPC (the default)")
    commands.add_parser("migrate", help="apply database migrations and exit")
    args = parser.parse_args(argv)
    run_service(SERVICE, migrate if args.command == "migrate" else serve)


if __name__ == "__main__":
    main()
