"""The trigger process assembled: one asyncio loop running the webhook receiver, the gRPC
EventService, the pipeline cache and the matcher, all sharing one NATS connection.

Start order: NATS (streams, pushes bucket) -> change-notice subscription -> webhook
listener -> gRPC (SERVING) -> pipeline cache loop -> matcher (after the first load).
Stop (SIGTERM): health NOT_SERVING and webhooks answer 503, then the listener stops
accepting and lets in-flight webhooks finish; the matcher finishes the message in hand
and hands back the rest; gRPC drains; NATS is drained last so every publish is flushed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping

import grpc
from aiohttp import web
from nats.aio.client import Client as NATS
from nats.aio.subscription import Subscription

from conveyor import bus
from conveyor.server import GrpcServer
from conveyor.settings import parse_address
from conveyor.v1 import event_service_pb2_grpc, pipeline_service_pb2_grpc
from conveyor_trigger.adapters.config_client import GrpcPipelineSource
from conveyor_trigger.adapters.events_log import EventsLog
from conveyor_trigger.adapters.jetstream import JetStreamPublisher, KvPushRegistry, RegistryEventsConsumer
from conveyor_trigger.adapters.pipeline_cache import PipelineCache
from conveyor_trigger.adapters.registry_access import RegistryAccess, registry_access_from_env
from conveyor_trigger.edges.grpc_api import SERVICE_NAME, EventService
from conveyor_trigger.edges.matcher_consumer import MatcherConsumer
from conveyor_trigger.edges.receiver import WebhookReceiver
from conveyor_trigger.settings import TriggerSettings
from conveyor_trigger.usecases.match import PushMatcher
from conveyor_trigger.usecases.ports import PipelineSource

log = logging.getLogger(__name__)


class TriggerApp:
    def __init__(
        self,
        settings: TriggerSettings,
        *,
        registry: RegistryAccess | None = None,
        pipeline_source: PipelineSource | None = None,
    ) -> None:
        self.settings = settings
        self.registry = registry
        self._pipeline_source = pipeline_source
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.nc: NATS | None = None
        self.cache: PipelineCache | None = None
        self.events_log = EventsLog(settings.events_log_size)
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
        await bus.ensure_streams(js)
        pushes = await KvPushRegistry.open(js, ttl=settings.dedupe_window)
        publisher = JetStreamPublisher(self.nc, js, timeout=settings.publish_timeout)

        source = self._pipeline_source
        if source is None:
            self._config_channel = grpc.aio.insecure_channel(settings.config_address)
            stub = pipeline_service_pb2_grpc.PipelineServiceStub(self._config_channel)
            source = GrpcPipelineSource(stub, address=settings.config_address)
        self.cache = PipelineCache(source, resync_interval=settings.resync_interval)
        self._changes = await self.nc.subscribe(bus.PIPELINE_CHANGED_SUBJECT, cb=self.cache.on_change_message)

        self.receiver = WebhookReceiver(
            authenticator=settings.authenticator,
            publisher=publisher,
            max_body=settings.max_body,
            bus_connected=publisher.connected,
        )
        self._runner = web.AppRunner(
            self.receiver.app(), access_log=None, handle_signals=False, shutdown_timeout=settings.shutdown_grace
        )
        await self._runner.setup()
        host, port = parse_address(settings.webhook_address)
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        self.webhook_port = _bound_port(self._runner, port)
        log.info("webhook receiver listening", extra={"address": f"{host}:{self.webhook_port}"})

        cache = self.cache
        resolver = self.registry.resolver if self.registry else None
        self.grpc = GrpcServer(settings.grpc_address, [SERVICE_NAME])
        self.grpc.add(
            event_service_pb2_grpc.add_EventServiceServicer_to_server,
            EventService(
                events_log=self.events_log,
                index=cache.current,
                cache_loaded=cache.is_loaded,
                lister=self.registry.lister if self.registry else None,
                resolver=resolver,
            ),
        )
        await self.grpc.start()

        self._tasks.append(asyncio.create_task(cache.run(self._stop), name="pipeline-cache"))
        if settings.matcher_enabled:
            matcher = PushMatcher(
                index=cache.current,
                publisher=publisher,
                pushes=pushes,
                events_log=self.events_log,
                resolver=resolver,
                digest_timeout=settings.digest_timeout,
            )
            consumer = RegistryEventsConsumer(js, MatcherConsumer(matcher).handle, ack_wait=settings.ack_wait)
            self._tasks.append(asyncio.create_task(consumer.run(self._stop, cache.loaded), name="matcher"))
        else:
            log.warning("matcher disabled (CONVEYOR_TRIGGER_MATCHER_ENABLED=false): webhooks are stored, not matched")

    async def stop(self) -> None:
        grace = self.settings.shutdown_grace
        log.info("stopping")
        if self.receiver is not None:
            self.receiver.serving = False
        if self.grpc is not None:
            await self.grpc.set_serving(False)
        self._stop.set()
        if self._runner is not None:
            await self._runner.cleanup()
        if self._tasks:
            _, pending = await asyncio.wait(self._tasks, timeout=grace)
            for task in pending:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.grpc is not None:
            await self.grpc.stop(grace)
        if self.nc is not None and not self.nc.is_closed:
            try:
                await asyncio.wait_for(self.nc.drain(), grace)
            except Exception as exc:
                log.warning("NATS drain failed", extra={"error": str(exc)})
                with contextlib.suppress(Exception):
                    await self.nc.close()
        if self._config_channel is not None:
            await self._config_channel.close()
        if self.registry is not None:
            with contextlib.suppress(Exception):
                await self.registry.close()

    async def run(self, stop: asyncio.Event) -> None:
        """Start, serve until `stop` is set, then stop cleanly."""
        try:
            await self.start()
            await stop.wait()
        finally:
            await self.stop()

    async def _on_reconnect(self) -> None:
        # Change notices sent while disconnected are lost: reload everything.
        if self.cache is not None:
            self.cache.request_resync()


def _bound_port(runner: web.AppRunner, requested: int) -> int:
    for address in runner.addresses:
        if isinstance(address, tuple) and len(address) >= 2:
            return int(address[1])
    return requested
