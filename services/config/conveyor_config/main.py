"""`conveyor-config`: the config service (pipelines and run records).

    conveyor-config            serve gRPC (PipelineService, RunService, health, reflection)
    conveyor-config migrate    apply database migrations and exit

Settings come from the environment; see `conveyor_config.settings` for the table.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Sequence

from nats.aio.client import Client as NATS

from conveyor import bus, logs, metrics
from conveyor.registry import RegistryClient
from conveyor.server import GrpcServer, run_service
from conveyor.v1 import pipeline_service_pb2_grpc, run_service_pb2_grpc
from conveyor_config import migrations
from conveyor_config.changes import NatsChangePublisher, follow_changes
from conveyor_config.grpc_api import PIPELINE_SERVICE, RUN_SERVICE, PipelineServicer, RunServicer
from conveyor_config.outbox import JetStreamPublisher, OutboxRelay
from conveyor_config.run_events import RunEventConsumer
from conveyor_config.settings import ConfigSettings
from conveyor_config.storage import Database, SqlStore, describe_url, open_database
from conveyor_config.targets import DeployerTargets
from conveyor_config.usecases import (
    ImageResolver,
    PipelineCache,
    PipelineUseCases,
    RunNotifier,
    RunUseCases,
    WorkloadLookup,
)

log = logging.getLogger(__name__)

SERVICE = "conveyor-config"


class ConfigService:
    """The wired service: database, NATS, gRPC server, RunEvent consumer and outbox relay."""

    def __init__(
        self,
        settings: ConfigSettings,
        *,
        resolver: ImageResolver | None = None,
        targets: WorkloadLookup | None = None,
    ) -> None:
        self.settings = settings
        self.resolver = resolver
        self.targets = targets
        self._owned_targets: DeployerTargets | None = None
        self._owned_registry: RegistryClient | None = None
        self.database: Database | None = None
        self.nc: NATS | None = None
        self.server: GrpcServer | None = None
        self.notifier = RunNotifier()
        self.relay: OutboxRelay | None = None
        self.pipelines: PipelineUseCases | None = None
        self.consumer: RunEventConsumer | None = None
        self._consumer_task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()
        self._stopped = False
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def address(self) -> str:
        assert self.server is not None, "not started"
        return self.server.bound_address

    async def start(self) -> None:
        settings = self.settings
        if settings.migrate_on_start:
            await migrations.upgrade(settings.database_url)
        self.database = open_database(settings.database_url, pool_size=settings.database_pool_size)
        store = SqlStore(self.database)
        log.info("database ready", extra={"database": describe_url(settings.database_url)})

        self.nc = await bus.connect(settings.common.nats_url, SERVICE, on_reconnect=self._on_reconnect)
        js = self.nc.jetstream()
        await bus.ensure_streams(js)
        self.relay = OutboxRelay(store, JetStreamPublisher(self.nc, js), interval=settings.outbox_interval)

        if self.resolver is None and settings.registry_check:
            # Checks that a manually started tag exists and resolves its digest (CONVEYOR_REGISTRIES_FILE).
            self._owned_registry = RegistryClient.from_env(os.environ)
            self.resolver = self._owned_registry
        if self.targets is None and settings.deployer_address:
            self._owned_targets = DeployerTargets(settings.deployer_address, settings.target_check_timeout)
            self.targets = self._owned_targets
        self.pipelines = pipelines = PipelineUseCases(
            store,
            NatsChangePublisher(self.nc),
            self.targets,
            count_cache_seconds=settings.total_size_cache,
            cache=PipelineCache(settings.cache_ttl),
        )
        await follow_changes(self.nc, pipelines.pipeline_changed_elsewhere)
        runs = RunUseCases(
            store,
            self.notifier,
            wake_outbox=self.relay.wake,
            resolver=self.resolver,
            tail_poll_interval=settings.tail_poll_interval,
            resolve_timeout=settings.resolve_timeout,
        )

        self.server = GrpcServer(settings.address, [PIPELINE_SERVICE, RUN_SERVICE])
        self.server.add(
            pipeline_service_pb2_grpc.add_PipelineServiceServicer_to_server, PipelineServicer(pipelines, runs)
        )
        self.server.add(run_service_pb2_grpc.add_RunServiceServicer_to_server, RunServicer(runs))
        self.consumer = RunEventConsumer(runs)
        self._consumer_task = asyncio.create_task(self.consumer.run(js, self._stop), name="run-events")
        self._tasks = [
            asyncio.create_task(self.relay.run(self._stop), name="outbox"),
            asyncio.create_task(self._purge_request_ids(store), name="purge-request-ids"),
        ]
        await self.server.start()
        log.info(
            "conveyor-config serving",
            extra={"address": self.address, "target_check": settings.deployer_address or "off"},
        )

    async def _on_reconnect(self) -> None:
        if self.pipelines is not None:
            self.pipelines.pipeline_changed_elsewhere(None)  # notices sent meanwhile were missed
        if self.nc is not None:
            # A NATS server that lost its store would otherwise reject every publish.
            with contextlib.suppress(Exception):
                await bus.ensure_streams(self.nc.jetstream())
        if self.relay is not None:
            self.relay.wake()

    async def _purge_request_ids(self, store: SqlStore) -> None:
        while not self._stop.is_set():
            try:
                before = int((time.time() - self.settings.request_id_retention) * 1_000_000)
                purged = await store.purge_requests(before)
                if purged:
                    log.info("expired request ids purged", extra={"count": purged})
            except Exception as exc:
                log.warning("could not purge request ids", extra={"error": str(exc)})
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), 3600)

    async def stop(self) -> None:
        """NOT_SERVING, stop accepting and drain RPCs, stop consuming, flush the outbox, drain NATS."""
        if self._stopped:
            return
        self._stopped = True
        if self.server is not None:
            await self.server.set_serving(False)
        self.notifier.close()  # followers end with UNAVAILABLE and reconnect elsewhere
        self._stop.set()
        if self.server is not None:
            await self.server.stop(self.settings.shutdown_grace)
        if self.consumer is not None and self._consumer_task is not None:
            await self.consumer.finish(self._consumer_task, self.settings.shutdown_grace)
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.relay is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.relay.flush(), 5.0)
        if self.nc is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.nc.drain(), 5.0)
            if not self.nc.is_closed:
                with contextlib.suppress(Exception):
                    await self.nc.close()
        if self._owned_targets is not None:
            await self._owned_targets.close()
        if self._owned_registry is not None:
            await self._owned_registry.close()
        if self.database is not None:
            await self.database.dispose()


async def serve(stop: asyncio.Event) -> None:
    settings = ConfigSettings.from_env()
    logs.configure(SERVICE, settings.common.log_level, settings.common.log_format)
    metrics.serve_metrics(settings.common.metrics_address)
    service = ConfigService(settings)
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
