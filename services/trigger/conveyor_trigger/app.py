"""The trigger process assembled: one asyncio loop running the webhook receiver, the gRPC
EventService, the pipeline cache and the matcher, all sharing one NATS connection.

Start order: NATS (streams, pushes bucket) -> change-notice subscription -> webhook
listener -> gRPC (SERVING) -> pipeline cache loop -> matcher (after the first load).
The pipeline cache loop and the matcher run under `bus.consume_forever`: a crashed one is
restarted with backoff, and gRPC health is NOT_SERVING until it runs again.

Stop (SIGTERM), the stages of `shutdown_plan` (one budget, `conveyor.lifecycle`):
not_serving (health NOT_SERVING, webhooks answer 503) -> stop_accepting (listeners closed,
consumers stop fetching) -> drain (in-flight webhooks and RPCs, the matcher's message in hand;
the rest of its batch is handed back) -> hand_back (NATS drained last, so every publish is
flushed; clients closed).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping

import grpc
from aiohttp import web
from nats.aio.client import Client as NATS
from nats.aio.subscription import Subscription

from conveyor import bus, retry
from conveyor.aip.page_tokens import codec_from_setting
from conveyor.server import GrpcServer
from conveyor.settings import parse_address
from conveyor.tracing.rpc import client_interceptors
from conveyor.v1 import event_service_pb2_grpc, pipeline_service_pb2_grpc
from conveyor_trigger.adapters.config_client import GrpcPipelineSource
from conveyor_trigger.adapters.event_history import JetStreamEventHistory
from conveyor_trigger.adapters.jetstream import JetStreamPublisher, KvPushRegistry, RegistryEventsConsumer
from conveyor_trigger.adapters.pipeline_cache import PipelineCache
from conveyor_trigger.adapters.registry_access import RegistryAccess, registry_access_from_env
from conveyor_trigger.edges.grpc_api import SERVICE_NAME, EventService
from conveyor_trigger.edges.matcher_consumer import MatcherConsumer
from conveyor_trigger.edges.receiver import WebhookReceiver
from conveyor_trigger.settings import SHUTDOWN_PLAN, TriggerSettings
from conveyor_trigger.usecases.match import PushMatcher
from conveyor_trigger.usecases.ports import PipelineSource

log = logging.getLogger(__name__)

PIPELINE_CACHE = "pipeline-cache"
MATCHER = "matcher"
# Kept from a stage's budget so an action ends before the stage is cut.
_MARGIN = 0.5


class TriggerApp:
    shutdown_plan = SHUTDOWN_PLAN

    def __init__(
        self,
        settings: TriggerSettings,
        *,
        registry: RegistryAccess | None = None,
        pipeline_source: PipelineSource | None = None,
        restart_policy: retry.RetryPolicy = bus.CONSUMER_RESTART_POLICY,
    ) -> None:
        self.settings = settings
        self.registry = registry
        self._pipeline_source = pipeline_source
        self._restart_policy = restart_policy
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        # Consumers crashed and waiting for their restart: gRPC health is NOT_SERVING meanwhile.
        self.consumers_down: set[str] = set()
        self._stopping = False
        self._stop_began = 0.0
        self._rpcs_stopped: asyncio.Future[None] | None = None
        self.codec = codec_from_setting(settings.page_token_key)
        self.nc: NATS | None = None
        self.cache: PipelineCache | None = None
        self.events_log: JetStreamEventHistory | None = None
        self.receiver: WebhookReceiver | None = None
        self.grpc: GrpcServer | None = None
        self._runner: web.AppRunner | None = None
        self._changes: Subscription | None = None
        self._config_channel: grpc.aio.Channel | None = None
        self.webhook_port = 0

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> TriggerApp:
        """The app as configured by the environment (raises SettingsError when invalid)."""
        return cls(TriggerSettings.from_env(environ), registry=registry_access_from_env(environ))

    # --- addresses once started -------------------------------------------------------------

    @property
    def webhook_url(self) -> str:
        host, _ = parse_address(self.settings.webhook_address)
        return f"http://{host}:{self.webhook_port}"

    @property
    def grpc_address(self) -> str:
        assert self.grpc is not None
        return self.grpc.bound_address

    # --- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        settings = self.settings
        if not settings.authenticator.configured:
            log.warning(
                "no webhook authentication is configured: every webhook will be refused (401). Set "
                "CONVEYOR_WEBHOOK_TOKEN or CONVEYOR_WEBHOOK_SOURCES_FILE, "
                "or CONVEYOR_WEBHOOK_ALLOW_UNAUTHENTICATED=true"
            )
        elif settings.authenticator.allow_unauthenticated:
            log.warning("webhooks are accepted without authentication (CONVEYOR_WEBHOOK_ALLOW_UNAUTHENTICATED=true)")

        self.nc = await bus.connect(settings.common.nats_url, "conveyor-trigger", on_reconnect=self._on_reconnect)
        js = self.nc.jetstream()
        await bus.ensure_streams(js, replicas=settings.common.bus_replicas)
        pushes = await KvPushRegistry.open(js, ttl=settings.dedupe_window, replicas=settings.common.bus_replicas)
        publisher = JetStreamPublisher(self.nc, js, timeout=settings.publish_timeout)
        history = self.events_log = await JetStreamEventHistory.open(
            js,
            codec=self.codec,
            capacity=settings.events_log_size,
            max_age=settings.events_max_age,
            replicas=settings.common.bus_replicas,
            timeout=settings.publish_timeout,
        )

        source = self._pipeline_source
        if source is None:
            self._config_channel = grpc.aio.insecure_channel(
                settings.config_address, interceptors=client_interceptors()
            )
            stub = pipeline_service_pb2_grpc.PipelineServiceStub(self._config_channel)
            source = GrpcPipelineSource(stub, address=settings.config_address)
        self.cache = PipelineCache(source, resync_interval=settings.resync_interval)
        self._changes = await self.nc.subscribe(bus.PIPELINE_CHANGED_SUBJECT, cb=self.cache.on_change_message)

        resolver = self.registry.resolver if self.registry else None
        self.receiver = WebhookReceiver(
            authenticator=settings.authenticator,
            publisher=publisher,
            max_body=settings.max_body,
            bus_connected=publisher.connected,
            resolver=resolver,
            digest_timeout=settings.digest_timeout,
        )
        # In-flight webhooks get the grace in full unless it would outlast the drain stage.
        deadlines = self.shutdown_plan.deadlines()
        webhook_grace = min(settings.shutdown_grace, deadlines["drain"] - deadlines["not_serving"] - _MARGIN)
        self._runner = web.AppRunner(
            self.receiver.app(), access_log=None, handle_signals=False, shutdown_timeout=max(0.0, webhook_grace)
        )
        await self._runner.setup()
        host, port = parse_address(settings.webhook_address)
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        self.webhook_port = _bound_port(self._runner, port)
        log.info("webhook receiver listening", extra={"address": f"{host}:{self.webhook_port}"})

        cache = self.cache
        self.grpc = GrpcServer(settings.grpc_address, [SERVICE_NAME])
        self.grpc.add(
            event_service_pb2_grpc.add_EventServiceServicer_to_server,
            EventService(
                events_log=history,
                index=cache.current,
                cache_loaded=cache.is_loaded,
                lister=self.registry.lister if self.registry else None,
                resolver=resolver,
                codec=self.codec,
            ),
        )
        await self.grpc.start()

        self._tasks.append(self._supervise(PIPELINE_CACHE, lambda: cache.run(self._stop)))
        if settings.matcher_enabled:
            matcher = PushMatcher(
                index=cache.current,
                publisher=publisher,
                pushes=pushes,
                events_log=history,
                resolver=resolver,
                digest_timeout=settings.digest_timeout,
            )
            consumer = RegistryEventsConsumer(
                js,
                MatcherConsumer(matcher).handle,
                ack_wait=settings.ack_wait,
                max_deliver=settings.common.max_deliver,
            )
            self._tasks.append(self._supervise(MATCHER, lambda: consumer.run(self._stop, cache.loaded)))
        else:
            log.warning("matcher disabled (CONVEYOR_TRIGGER_MATCHER_ENABLED=false): webhooks are stored, not matched")

    def _supervise(self, name: str, consume: Callable[[], Awaitable[None]]) -> asyncio.Task[None]:
        async def on_health(healthy: bool) -> None:
            if healthy:
                self.consumers_down.discard(name)
            else:
                self.consumers_down.add(name)
            await self._report_health()

        return asyncio.create_task(
            bus.consume_forever(name, consume, policy=self._restart_policy, on_health=on_health, stop=self._stop),
            name=name,
        )

    async def _report_health(self) -> None:
        if self.grpc is not None and self.grpc.port and not self._stopping:
            await self.grpc.set_serving(not self.consumers_down)

    async def stop(self) -> None:
        """The stages of `shutdown_plan`, in order; copes with a partial start, and with being called twice."""
        if self._stopping:
            return
        self._stopping = True
        self._stop_began = time.monotonic()
        await self.shutdown_plan.run(
            {
                "not_serving": self._not_serving,
                "stop_accepting": self._stop_accepting,
                "drain": [self._drain_webhooks, self._drain_rpcs, self._drain_consumers],
                "hand_back": self._hand_back,
            }
        )

    async def _not_serving(self, budget: float) -> None:
        if self.receiver is not None:
            self.receiver.serving = False
        if self.grpc is not None:
            await self.grpc.set_serving(False)

    async def _stop_accepting(self, budget: float) -> None:
        self._stop.set()  # consumers stop fetching, the cache loop ends
        if self._runner is not None:
            for site in self._runner.sites:
                await site.stop()
        if self.grpc is not None:
            # In-flight RPCs may run until shortly before the drain stage is cut.
            drain_ends = self._stop_began + self.shutdown_plan.deadlines()["drain"]
            grace = max(0.0, min(self.settings.shutdown_grace, drain_ends - time.monotonic() - _MARGIN))
            self._rpcs_stopped = asyncio.ensure_future(self.grpc.stop(grace))
            await asyncio.sleep(0)  # let it begin: the server accepts no new call from here on

    async def _drain_webhooks(self, budget: float) -> None:
        if self._runner is not None:
            await self._runner.cleanup()  # in-flight webhooks finish within the runner's shutdown timeout

    async def _drain_rpcs(self, budget: float) -> None:
        if self._rpcs_stopped is not None:
            await self._rpcs_stopped

    async def _drain_consumers(self, budget: float) -> None:
        if not self._tasks:
            return
        _, pending = await asyncio.wait(
            self._tasks, timeout=max(0.0, min(self.settings.shutdown_grace, budget - _MARGIN))
        )
        for task in pending:
            task.cancel()  # the message in hand is redelivered after the ack wait
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _hand_back(self, budget: float) -> None:
        if self.nc is not None and not self.nc.is_closed:
            try:
                # Half the stage at most: the clients must still be closed after it.
                await asyncio.wait_for(self.nc.drain(), max(0.1, budget / 2))
            except Exception as exc:
                log.warning("NATS drain failed", extra={"error": str(exc)})
                with contextlib.suppress(Exception):
                    await self.nc.close()
        if self._config_channel is not None:
            await self._config_channel.close()
        if self.registry is not None:
            with contextlib.suppress(Exception):
                await self.registry.close()

    async def _on_reconnect(self) -> None:
        # Change notices sent while disconnected are lost: reload everything.
        if self.cache is not None:
            self.cache.request_resync()


def _bound_port(runner: web.AppRunner, requested: int) -> int:
    for address in runner.addresses:
        if isinstance(address, tuple) and len(address) >= 2:
            return int(address[1])
    return requested
