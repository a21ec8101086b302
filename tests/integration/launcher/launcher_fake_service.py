"""A stand-in for a Conveyor service in launcher tests: gRPC health on its address, nothing else.

Usage: python launcher_fake_service.py SERVICE. Reads CONVEYOR_<SERVICE>_ADDR like the real one,
prints the CONVEYOR_* settings it was given (so tests can check the wiring), serves until
SIGTERM/SIGINT and exits 0; exits 3 after FAKE_CRASH_AFTER seconds when FAKE_CRASH names it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys

from conveyor.server import GrpcServer


async def serve(service: str) -> int:
    server = GrpcServer(os.environ[f"CONVEYOR_{service.upper()}_ADDR"], [f"fake.{service}"])
    await server.start()
    settings = {k: v for k, v in sorted(os.environ.items()) if k.startswith("CONVEYOR_")}
    print(f"fake {service} serving; settings {json.dumps(settings)}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    crash = os.environ.get("FAKE_CRASH") == service
    try:
        await asyncio.wait_for(stop.wait(), float(os.environ.get("FAKE_CRASH_AFTER", "1")) if crash else None)
    except TimeoutError:
        print(f"fake {service}: crashing on purpose", flush=True)
        return 3
    if os.environ.get("FAKE_IGNORE_SIGTERM") == service:
        # A dead launcher's pipe must not end what is meant to be stopped only by SIGKILL.
        with contextlib.suppress(BrokenPipeError):
            print(f"fake {service}: ignoring SIGTERM", flush=True)
        await asyncio.sleep(3600)
    await server.stop(1)
    print(f"fake {service} stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(serve(sys.argv[1])))
