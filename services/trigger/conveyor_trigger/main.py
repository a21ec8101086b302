"""`conveyor-trigger`: registry webhooks and bus events in, matched deploy requests out.

Settings: see `conveyor_trigger.settings` (and the README table). The process is assembled in
`conveyor_trigger.app` and run by `conveyor.lifecycle.run_until_signal`.
"""

from __future__ import annotations

import os

from conveyor import lifecycle, logs, metrics
from conveyor.tracing import setup as tracing_setup
from conveyor_trigger.app import TriggerApp

SERVICE = "conveyor-trigger"


def make_app() -> TriggerApp:
    """The app as the environment configures it (SettingsError: exit 2), logging and metrics set up."""
    app = TriggerApp.from_env(os.environ)
    common = app.settings.common
    logs.configure(SERVICE, common.log_level, common.log_format)
    tracing_setup.configure(SERVICE, common.tracing)
    metrics.serve_metrics(common.metrics_address)
    return app


def main() -> None:
    # NATS unreachable at start or a listen address in use: logged, exit 1; SIGTERM: the stop plan, exit 0.
    raise SystemExit(lifecycle.run_until_signal(make_app, service=SERVICE))


if __name__ == "__main__":
    main()
