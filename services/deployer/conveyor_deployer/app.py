"""The deployer process assembled: clusters and the Kubernetes client, the TargetService, and the
deploy-request consumer feeding the dispatcher, all on one asyncio loop and one NATS connection.

Start-up: read clusters (fail fast), serve gRPC (health NOT_SERVING until the bus is ready),
connect to NATS, ensure streams and the durable consumer, then SERVING.
Stop (SIGTERM): health NOT_SERVING, stop fetching, finish in-flight runs within the grace period or
hand them back (nak), stop gRPC, drain NATS, close the Kubernetes clients.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor

from nats.aio.client import Client as NATS

from conveyor import bus, metrics as shared_metrics
from conveyor.server import GrpcServer
from conveyor.v1 import target_service_pb2_grpc
from conveyor_deployer.adapters.clusters import load_clusters
from conveyor_deployer.adapters.jetstream import JetStreamDeployRequests, JetStreamRunEvents
from conveyor_deployer.adapters.kube import KubeWorkloadApi
from conveyor_deployer.edges.consumer import DeployRequestConsumer
from conveyor_deployer.edges.grpc_api import SERVICE_NAME, TargetServicer
from conveyor_deployer.settings import DeployerSettings
from conveyor_deployer.usecases.deploy import DeployRunner
from conveyor_deployer.usecases.dispatcher import Dispatcher
from conveyor_deployer.usecases.retry import RetryPolicy
from conveyor_deployer.usecases.targets import TargetQueries

log = logging.getLogger(__name__)


class DeployerApp:
    def __init__(self, settings: DeployerSettings, environ: Mapping[str, str]) -> None:
        self.settings = settings
        self.environ = environ  # KUBECONFIG and HOME, for the clusters
        self.api: KubeWorkloadApi | None = None
        self.grpc: GrpcServer | None = None
        self.nc: NATS | None = None
        self.dispatcher: Dispatcher | None = None
        self._stop_fetching = asyncio.Event()
        self._fetching: asyncio.Task[None] | None = None
        self._ready = False

    async def start(self) -> None:
        settings = self.settings
        # asyncio.to_thread runs on the default executor: size it for the Kubernetes call bound.
        asyncio.get_running_loop().set_default_executor(
            ThreadPoolExecutor(max_workers=settings.kube_concurrency + 2, thread_name_prefix="kube")
        )
        clusters = load_clusters(settings.clusters_file, self.environ)
        api = self.api = KubeWorkloadApi.from_clusters(
            clusters, concurrency=settings.kube_concurrency, timeout=settings.kube_timeout
        )
        log.info(
            "clusters configured",
            extra={"clusters": ", ".join(f"{c.name}{' (sandbox)' if c.sandbox else ''}" for c in clusters) or "none"},
        )
        shared_metrics.serve_metrics(settings.common.metrics_address)
        retry = RetryPolicy(
            attempts=settings.kube_retries, initial_backoff=settings.kube_backoff, max_backoff=settings.kube_max_backoff
        )
        server = GrpcServer(settings.address, [SERVICE_NAME])
        server.add(
            target_service_pb2_grpc.add_TargetServiceServicer_to_server,
            TargetServicer(TargetQueries(api, clusters, retry)),
        )
        await server.start()
        self.grpc = server
        await server.set_serving(False)  # until deploy requests can be taken
        self.nc = await bus.connect(settings.common.nats_url, "conveyor-deployer")
        js = self.nc.jetstream()
        await bus.ensure_streams(js)
        runner = DeployRunner(
            api,
            JetStreamRunEvents(js),
            [c.name for c in clusters],
            retry=retry,
            conflict_retries=settings.conflict_retries,
            poll_interval=settings.poll_interval,
        )
        self.dispatcher = Dispatcher(
            runner, max_concurrent=settings.max_concurrent_runs, heartbeat_interval=settings.heartbeat_interval
        )
        consumer = DeployRequestConsumer(
            JetStreamDeployRequests(js, ack_wait=settings.ack_wait, max_held=settings.max_held_requests),
            self.dispatcher,
            runner,
            max_held=settings.max_held_requests,
            default_rollout_timeout=settings.default_rollout_timeout,
        )
        await consumer.prepare()
        self._fetching = asyncio.create_task(consumer.run(self._stop_fetching))
        await server.set_serving(True)
        self._ready = True
        log.info("deployer ready", extra={"address": server.bound_address})

    async def stop(self) -> None:
        """Undo what `start` did; in-flight runs are finished or handed back only after a full start."""
        try:
            if self._ready:
                assert self.grpc is not None and self._fetching is not None and self.dispatcher is not None
                self._stop_fetching.set()
                log.info("stopping: no new deploy requests; finishing or handing back in-flight runs")
                await self.grpc.set_serving(False)
                await self._fetching
                await self.dispatcher.shutdown(self.settings.shutdown_grace)
        finally:
            if self.grpc is not None:
                await self.grpc.stop(grace=2.0)
            if self.nc is not None:
                try:
                    await self.nc.drain()
                except Exception:
                    log.debug("draining NATS failed", exc_info=True)
            if self.api is not None:
                self.api.close()

    async def run(self, stop: asyncio.Event) -> None:
        """Start, serve until `stop` is set, then stop cleanly."""
        try:
            await self.start()
            await stop.wait()
        finally:
            await self.stop()
