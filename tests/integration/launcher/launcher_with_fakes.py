"""Run the real launcher with fake services (tests/integration/launcher/launcher_fake_service.py).

The launcher, nats-server, the sandbox and its registry are the real ones; only the three service
commands are replaced, so the supervision logic can be tested without the services. The fakes
serve no API, so the demo pipeline is not created (a line says so).
"""

from __future__ import annotations

import pathlib
import sys

from conveyor_launcher import demo, main, plan

FAKE = pathlib.Path(__file__).with_name("launcher_fake_service.py")


def fake_service_argv(service: str) -> list[str]:
    return [sys.executable, str(FAKE), service]


def no_pipeline(action: plan.EnsurePipeline) -> str:
    return f"fake services: not creating pipelines/{action.pipeline_id} ({action.pipeline.source.registry})"


if __name__ == "__main__":
    plan.service_argv = fake_service_argv
    demo.ensure_pipeline = no_pipeline
    main.main()
