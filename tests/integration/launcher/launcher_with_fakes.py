"""Run the real launcher with fake services (tests/integration/launcher/launcher_fake_service.py).

The launcher, nats-server and the sandbox are the real ones; only the three service
commands are replaced, so the supervision logic can be tested without the services.
"""

from __future__ import annotations

import pathlib
import sys

from conveyor_launcher import main, plan

FAKE = pathlib.Path(__file__).with_name("launcher_fake_service.py")


def fake_service_argv(service: str) -> list[str]:
    return [sys.executable, str(FAKE), service]


if __name__ == "__main__":
    plan.service_argv = fake_service_argv
    main.main()
