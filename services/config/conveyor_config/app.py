"""The config process assembled: database, NATS, use cases, gRPC servicers, RunEvent consumer, outbox relay.

Start: migrations (unless off) -> database -> NATS (streams) -> outbox relay -> registry and deployer
clients -> use cases -> change- and run-log-notice subscriptions -> servicers, consumers, background tasks -> gRPC.
The RunEvent consumer and the two notice followers run under `bus.consume_forever`: a crashed one is
restarted with backoff, and health is NOT_SERVING while one is down.
Stop (SIGTERM), the stages of `settings.SHUTDOWN_PLAN` (conveyor.lifecycle: 20 s in all, below the pod's grace):
not_serving: health NOT_SERVING, TailRunLogs followers end (UNAVAILABLE);
stop_accepting: gRPC stops accepting calls, consumers and background loops stop fetching;
drain: in-flight RPCs finish (CONVEYOR_CONFIG_SHUTDOWN_GRACE, within the stage), the consumer finishes
the message in hand, the outbox relay flushes; hand_back: NATS drains, then the deployer channel,
the registry client and the database close.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import time
from collections.abc import Awaitable, Callable

import grpc
from nats.aio.client import Client as NATS

from conveyor import bus
from conveyor.aip.page_tokens import codec_from_setting
from conveyor.registry import RegistryClient
from conveyor.server import GrpcServer
from conveyor.tracing.rpc import client_interceptors
from conveyor.v1 import pipeline_service_pb2_grpc, run_service_pb2_grpc, target_service_pb2_grpc
from conveyor_config.adapters.changes import NatsChangePublisher
from conveyor_config.adapters.jetstream import JetStreamPublisher
from conveyor_config.adapters.run_logs import NatsRunLogNotices
from conveyor_config.adapters.storage import SqlStore, migrations
from conveyor_config.adapters.storage.engine import Database, describe_url, open_database
from conveyor_config.adapters.targets import DeployerTargets
from conveyor_config.edges.changes import ChangeFollower
from conveyor_config.edges.grpc_api import PIPELINE_SERVICE, RUN_SERVICE, PipelineServicer, RunServicer
from conveyor_config.edges.run_events import RUN_EVENTS_CONSUMER, RunEventConsumer
from conveyor_config.edges.run_logs import RunLogFollower
from conveyor_config.settings import SHUTDOWN_PLAN, ConfigSettings
from conveyor_config.usecases.caches import PipelineCache
from conveyor_config.usecases.notifier import RunNotifier
from conveyor_config.usecases.outbox import OutboxRelay
from conveyor_config.usecases.pipelines import PipelineUseCases
from conveyor_config.usecases.ports import ImageResolver, WorkloadLookup
from conveyor_config.usecases.retention import purge_expired_requests, purge_expired_tombstones
from conveyor_config.usecases.runs import RunUseCases

log = logging.getLogger(__name__)

SERVICE = "conveyor-config"
RUN_EVENTS = "run-events"
CHANGE_NOTICES = "change-notices"
RUN_LOG_NOTICES = "run-log-notices"
# Nested deadlines end this much before their stage is cut, so what follows them still runs.
_MARGIN = 0.5


class ConfigApp:
    """The wired service: database, NATS, gRPC server, RunEvent consumer and outbox relay."""

    shutdown_plan = SHUTDOWN_PLAN

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
        self._follower_task: asyncio.Task[None] | None = None
        self._log_follower_task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()
        self._stopped = False
        self._stop_began = 0.0
        self._rpcs_stopped: asyncio.Future[None] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        # Consumers that crashed and wait to be restarted: health is NOT_SERVING while any is.
        self.consumers_down: set[str] = set()

    @property
    def address(self) -> str:
        assert self.server is not None, "not started"
        return self.server.bound_address

    async def start(self) -> None:
        try:
            await self._start()
        except Exception as exc:
            log.error("cannot start conveyor-config", extra={"error": str(exc)})
            raise

    async def _start(self) -> None:
        settings = self.settings
        if settings.migrate_on_start:
            await migrations.upgrade(settings.database_url)
        self.database = open_database(settings.database_url, pool_size=settings.database_pool_size)
        store = SqlStore(self.database)
        log.info("database ready", extra={"database": describe_url(settings.database_url)})
        page_tokens = codec_from_setting(settings.page_token_key)

        self.nc = await bus.connect(settings.common.nats_url, SERVICE, on_reconnect=self._on_reconnect)
        js = self.nc.jetstream()
        await bus.ensure_streams(js, replicas=settings.common.bus_replicas)
        self.relay = OutboxRelay(store, JetStreamPublisher(self.nc, js), interval=settings.outbox_interval)

        if self.resolver is None and settings.registry_check:
            # Checks that a manually started tag exists and resolves its digest (CONVEYOR_REGISTRIES_FILE).
            self._owned_registry = RegistryClient.from_env(os.environ)
            self.resolver = self._owned_registry
        if self.targets is None and settings.deployer_address:
            self._deployer_channel = grpc.aio.insecure_channel(
                settings.deployer_address, interceptors=client_interceptors()
            )
            self.targets = DeployerTargets(
                target_service_pb2_grpc.TargetServiceStub(self._deployer_channel),
                address=settings.deployer_address,
                timeout=settings.target_check_timeout,
            )
        self.pipelines = pipelines = PipelineUseCases(
            store,
            NatsChangePublisher(self.nc),
            page_tokens,
            self.targets,
            count_cache_seconds=settings.total_size_cache,
            cache=PipelineCache(settings.cache_ttl),
        )
        follower = ChangeFollower(self.nc, pipelines.pipeline_changed_elsewhere)
        await follower.subscribe()
        log_follower = RunLogFollower(self.nc, self.notifier)
        await log_follower.subscribe()
        runs = RunUseCases(
            store,
            self.notifier,
            deploy_subject=bus.DEPLOY_REQUESTED_SUBJECT,
            page_tokens=page_tokens,
            wake_outbox=self.relay.wake,
            resolver=self.resolver,
            log_notices=NatsRunLogNotices(self.nc),
            tail_poll_interval=settings.tail_poll_interval,
            resolve_timeout=settings.resolve_timeout,
        )

        self.server = GrpcServer(settings.address, [PIPELINE_SERVICE, RUN_SERVICE])
        self.server.add(
            pipeline_service_pb2_grpc.add_PipelineServiceServicer_to_server, PipelineServicer(pipelines, runs)
        )
        self.server.add(run_service_pb2_grpc.add_RunServiceServicer_to_server, RunServicer(runs))
        spec = dataclasses.replace(RUN_EVENTS_CONSUMER, max_deliver=settings.common.max_deliver)
        self.consumer = consumer = RunEventConsumer(runs, spec)
        self._consumer_task = self._supervise(RUN_EVENTS, lambda: consumer.consume(js, self._stop))
        self._follower_task = self._supervise(CHANGE_NOTICES, lambda: follower.follow(self._stop))
        self._log_follower_task = self._supervise(RUN_LOG_NOTICES, lambda: log_follower.follow(self._stop))
        self._tasks = [
            asyncio.create_task(self.relay.run(self._stop), name="outbox"),
            asyncio.create_task(
                purge_expired_requests(store, settings.request_id_retention, self._stop), name="purge-request-ids"
            ),
            asyncio.create_task(
                # The streams are created with bus.DEFAULT_MAX_AGE (bus.ensure_streams above).
                purge_expired_tombstones(store, bus.DEFAULT_MAX_AGE, self._stop),
                name="purge-run-tombstones",
            ),
        ]
        await self.server.start()
        await self._report_health()  # a consumer may have crashed already
        log.info(
            "conveyor-config serving",
            extra={"address": self.address, "target_check": settings.deployer_address or "off"},
        )

    def _supervise(self, name: str, consume: Callable[[], Awaitable[None]]) -> asyncio.Task[None]:
        async def on_health(healthy: bool) -> None:
            if healthy:
                self.consumers_down.discard(name)
            else:
                self.consumers_down.add(name)
            await self._report_health()

        return asyncio.create_task(bus.consume_forever(name, consume, on_health=on_health, stop=self._stop), name=name)

    async def _report_health(self) -> None:
        if self.server is not None and self.server.port and not self._stopped:
            await self.server.set_serving(not self.consumers_down)

    async def _on_reconnect(self) -> None:
        if self.pipelines is not None:
            self.pipelines.pipeline_changed_elsewhere(None)  # notices sent meanwhile were missed
        self.notifier.notify_all()  # run-log notices too: followers re-read
        if self.nc is not None:
            # A NATS server that lost its store would otherwise reject every publish.
            with contextlib.suppress(Exception):
                await bus.ensure_streams(self.nc.jetstream(), replicas=self.settings.common.bus_replicas)
        if self.relay is not None:
            self.relay.wake()

    async def stop(self) -> None:
        """The stages of `shutdown_plan`, in order; copes with a partial start, and with being called twice."""
        if self._stopped:
            return
        self._stopped = True
        log.info("shutting down")
        self._stop_began = time.monotonic()
        await self.shutdown_plan.run(
            {
                "not_serving": self._not_serving,
                "stop_accepting": self._stop_accepting,
                "drain": [self._drain_rpcs_and_outbox, self._drain_consumers],
                "hand_back": self._hand_back,
            }
        )

    async def _not_serving(self, budget: float) -> None:
        if self.server is not None:
            await self.server.set_serving(False)
        self.notifier.close()  # followers end with UNAVAILABLE and reconnect elsewhere

    async def _stop_accepting(self, budget: float) -> None:
        if self.server is not None:
            # In-flight RPCs may run until shortly before the drain stage is cut.
            drain_ends = self._stop_began + self.shutdown_plan.deadlines()["drain"]
            grace = max(0.0, min(self.settings.shutdown_grace, drain_ends - time.monotonic() - _MARGIN))
            self._rpcs_stopped = asyncio.ensure_future(self.server.stop(grace))
            await asyncio.sleep(0)  # let it begin: the server accepts no new call from here on
        self._stop.set()  # consumers stop fetching, background loops end

    async def _drain_rpcs_and_outbox(self, budget: float) -> None:
        if self._rpcs_stopped is not None:
            await self._rpcs_stopped
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.relay is not None:
            # What the last StartPipeline calls wrote; the rest is published after the restart.
            try:
                await self.relay.flush()
            except Exception as exc:
                log.warning("outbox not flushed; it is published after the restart", extra={"error": str(exc)})

    async def _drain_consumers(self, budget: float) -> None:
        if self.consumer is not None and self._consumer_task is not None:
            await self.consumer.finish(self._consumer_task, max(0.0, budget - _MARGIN))
        followers = [task for task in (self._follower_task, self._log_follower_task) if task is not None]
        await asyncio.gather(*followers, return_exceptions=True)

    async def _hand_back(self, budget: float) -> None:
        if self.nc is not None:
            with contextlib.suppress(Exception):
                # Half the stage at most: the database must still be closed after it.
                await asyncio.wait_for(self.nc.drain(), max(0.1, budget / 2))
            if not self.nc.is_closed:
                with contextlib.suppress(Exception):
                    await self.nc.close()
        if self._deployer_channel is not None:
            await self._deployer_channel.close()
        if self._owned_registry is not None:
            await self._owned_registry.close()
        if self.database is not None:
            await self.database.dispose()
