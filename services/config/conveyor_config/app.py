"""The config process assembled: database, NATS, use cases, gRPC servicers, RunEvent consumer, outbox relay.

Start: migrations (unless off) -> database -> NATS (streams) -> outbox relay -> registry and deployer
clients -> use cases -> change-notice subscription -> servicers, consumer, background tasks -> gRPC.
Stop (SIGTERM): health NOT_SERVING and TailRunLogs followers end (UNAVAILABLE); gRPC drains in-flight
RPCs (shutdown grace); the consumer finishes the message in hand (shutdown grace); the relay flushes
(5 s) and NATS drains (5 s); then the deployer channel, the registry client and the database close.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os

import grpc
from nats.aio.client import Client as NATS

from conveyor import bus
from conveyor.registry import RegistryClient
from conveyor.server import GrpcServer
from conveyor.v1 import pipeline_service_pb2_grpc, run_service_pb2_grpc, target_service_pb2_grpc
from conveyor_config.adapters.changes import NatsChangePublisher
from conveyor_config.adapters.jetstream import JetStreamPublisher
from conveyor_config.adapters.storage import SqlStore, migrations
from conveyor_config.adapters.storage.engine import Database, describe_url, open_database
from conveyor_config.adapters.targets import DeployerTargets
from conveyor_config.edges.changes import follow_changes
from conveyor_config.edges.grpc_api import PIPELINE_SERVICE, RUN_SERVICE, PipelineServicer, RunServicer
from conveyor_config.edges.run_events import RunEventConsumer
from conveyor_config.settings import ConfigSettings
from conveyor_config.usecases.caches import PipelineCache
from conveyor_config.usecases.notifier import RunNotifier
from conveyor_config.usecases.outbox import OutboxRelay
from conveyor_config.usecases.pipelines import PipelineUseCases
from conveyor_config.usecases.ports import ImageResolver, WorkloadLookup
from conveyor_config.usecases.requests import purge_expired_requests
from conveyor_config.usecases.runs import RunUseCases

log = logging.getLogger(__name__)

SERVICE = "conveyor-config"


class ConfigApp:
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
        self._deployer_channel: grpc.aio.Channel | None = None
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
            self._deployer_channel = grpc.aio.insecure_channel(settings.deployer_address)
            self.targets = DeployerTargets(
                target_service_pb2_grpc.TargetServiceStub(self._deployer_channel),
                address=settings.deployer_address,
                timeout=settings.target_check_timeout,
            )
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
            deploy_subject=bus.DEPLOY_REQUESTED_SUBJECT,
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
            asyncio.create_task(
                purge_expired_requests(store, settings.request_id_retention, self._stop), name="purge-request-ids"
            ),
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
        if self._deployer_channel is not None:
            await self._deployer_channel.close()
        if self._owned_registry is not None:
            await self._owned_registry.close()
        if self.database is not None:
            await self.database.dispose()
