"""`conveyor-deployer`: turns deploy requests into updated Kubernetes workloads and run records.

Settings: see `conveyor_deployer.settings` (every env var with its default); the process: `conveyor_deployer.app`.
"""

from __future__ import annotations

import os

from conveyor import lifecycle, logs
from conveyor.tracing import setup as tracing_setup
from conveyor_deployer.app import DeployerApp
from conveyor_deployer.settings import SERVICE, DeployerSettings

PROCESS = f"conveyor-{SERVICE}"


def make_app() -> DeployerApp:
    settings = DeployerSettings.from_env()
    logs.configure(PROCESS, settings.common.log_level, settings.common.log_format)
    tracing_setup.configure(PROCESS, settings.common.tracing)
    return DeployerApp(settings, os.environ)


def main() -> None:
    raise SystemExit(lifecycle.run_until_signal(make_app, service=PROCESS))


if __name__ == "__main__":
    main()
