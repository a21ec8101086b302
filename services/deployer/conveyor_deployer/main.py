"""`conveyor-deployer`: turns deploy requests into updated Kubernetes workloads and run records.

Settings: see `conveyor_deployer.settings` (every env var with its default); the process: `conveyor_deployer.app`.
"""

from __future__ import annotations

import asyncio
import os

from conveyor import logs
from conveyor.server import run_service
from conveyor_deployer.app import DeployerApp
from conveyor_deployer.settings import SERVICE, DeployerSettings


async def serve(stop: asyncio.Event) -> None:
    settings = DeployerSettings.from_env()
    logs.configure(f"conveyor-{SERVICE}", settings.common.log_level, settings.common.log_format)
    await DeployerApp(settings, os.environ).run(stop)


def main() -> None:
    run_service(f"conveyor-{SERVICE}", serve)


if __name__ == "__main__":
    main()
