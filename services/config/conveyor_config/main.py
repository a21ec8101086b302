"""`conveyor-config`: the config service (pipelines and run records).

    conveyor-config            serve gRPC (PipelineService, RunService, health, reflection)
    conveyor-config migrate    apply database migrations and exit

Settings come from the environment; see `conveyor_config.settings` (and the README table).
The process is assembled in `conveyor_config.app` and run by `conveyor.lifecycle.run_until_signal`.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence

from conveyor import lifecycle, logs, metrics
from conveyor.settings import SettingsError
from conveyor.tracing import setup as tracing_setup
from conveyor_config.adapters.storage import migrations
from conveyor_config.adapters.storage.engine import describe_url
from conveyor_config.app import SERVICE, ConfigApp
from conveyor_config.settings import ConfigSettings

log = logging.getLogger(__name__)


def make_app() -> ConfigApp:
    settings = ConfigSettings.from_env()
    logs.configure(SERVICE, settings.common.log_level, settings.common.log_format)
    tracing_setup.configure(SERVICE, settings.common.tracing)
    metrics.serve_metrics(settings.common.metrics_address)
    return ConfigApp(settings)


async def _migrate(settings: ConfigSettings) -> None:
    await migrations.upgrade(settings.database_url)
    revision = await migrations.current_revision(settings.database_url)
    log.info("database is up to date", extra={"database": describe_url(settings.database_url), "revision": revision})


def migrate() -> int:
    logs.configure(SERVICE)
    try:
        settings = ConfigSettings.from_env()
    except SettingsError as exc:
        print(f"{SERVICE}: {exc}", file=sys.stderr)
        return lifecycle.EXIT_SETTINGS
    logs.configure(SERVICE, settings.common.log_level, settings.common.log_format)
    asyncio.run(_migrate(settings))
    return lifecycle.EXIT_OK


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
    if args.command == "migrate":
        raise SystemExit(migrate())
    raise SystemExit(lifecycle.run_until_signal(make_app, service=SERVICE))


if __name__ == "__main__":
    main()
