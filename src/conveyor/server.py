"""gRPC server bootstrap and process lifecycle shared by the three services.

Every server gets: the error-mapping interceptor, a tracing interceptor when tracing is on
(`conveyor.tracing.rpc`), the standard health service, server reflection (for grpcurl), and an
orderly shutdown: health -> NOT_SERVING, stop
accepting, let in-flight RPCs finish within a grace period.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from conveyor import logs, metrics
from conveyor.errors import ErrorMappingInterceptor
from conveyor.settings import SettingsError
from conveyor.tracing.rpc import server_interceptors

log = logging.getLogger(__name__)


class GrpcServer:
    """A grpc.aio server with health, reflection, error mapping and (when on) tracing."""

    def __init__(self, address: str, service_names: Iterable[str]) -> None:
        self.address = address
        self.service_names = list(service_names)
        self.server = grpc.aio.server(
            # Tracing outermost (when on): its span covers the error mapping too.
            interceptors=[*server_interceptors(), ErrorMappingInterceptor(on_error=metrics.count_rpc_error)],
            options=[("grpc.so_reuseport", 0), ("grpc.max_receive_message_length", 8 * 1024 * 1024)],
        )
        self.health = health.aio.HealthServicer() if hasattr(health, "aio") else health.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        reflection.enable_server_reflection(
            [*self.service_names, health.SERVICE_NAME, reflection.SERVICE_NAME], self.server
        )
        self.port: int = 0

    def add(self, register: Callable[[Any, grpc.aio.Server], None], servicer: Any) -> None:
        register(servicer, self.server)

    async def start(self) -> int:
        self.port = self.server.add_insecure_port(self.address)
        if self.port == 0:
            raise OSError(f"cannot listen on {self.address}")
        await self.server.start()
        await self.set_serving(True)
        log.info("gRPC server listening", extra={"address": self.bound_address})
        return self.port

    @property
    def bound_address(self) -> str:
        host = self.address.rpartition(":")[0]
        return f"{host}:{self.port}"

    async def set_serving(self, serving: bool) -> None:
        status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        for name in ["", *self.service_names]:
            result = self.health.set(name, status)
            if asyncio.iscoroutine(result):
                await result

    async def stop(self, grace: float = 10.0) -> None:
        await self.set_serving(False)
        await self.server.stop(grace)


def run_service(service: str, main: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    """Run `main(stop)` on one asyncio loop; SIGTERM/SIGINT set `stop`.

    `main` must return once `stop` is set and its work is drained. Settings errors
    exit with status 2 and a readable message (fail fast).
    """

    async def runner() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)
        await main(stop)

    # Until `main` has read its settings and reconfigured logging.
    logs.configure(service)
    try:
        asyncio.run(runner())
    except SettingsError as exc:
        print(f"{service}: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        pass
    log.info("stopped", extra={"service": service})
