"""`python -m conveyor.healthcheck` (the compose health check) against a real gRPC server."""

from __future__ import annotations

import asyncio
import sys

from conveyor.server import GrpcServer


async def healthcheck(*args: str) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "conveyor.healthcheck",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode().strip()


async def test_serving_not_serving_and_unreachable() -> None:
    server = GrpcServer("127.0.0.1:0", ["conveyor.v1.PipelineService"])
    await server.start()
    try:
        serving = await healthcheck(server.bound_address)
        named = await healthcheck(server.bound_address, "--service", "conveyor.v1.PipelineService")
        unknown = await healthcheck(server.bound_address, "--service", "nope")
        await server.set_serving(False)
        draining = await healthcheck(server.bound_address)
    finally:
        await server.stop(0)
    down = await healthcheck(server.bound_address, "--timeout", "1")

    assert serving == (0, f"{server.bound_address}: SERVING")
    assert named[0] == 0
    assert unknown == (1, f"{server.bound_address}: NOT_FOUND")
    assert draining == (1, f"{server.bound_address}: NOT_SERVING")
    assert down == (1, f"{server.bound_address}: UNAVAILABLE")
