"""The deployer process assembled: clusters and the Kubernetes client, the TargetService, and the
deploy-request consumer feeding the dispatcher, all on one asyncio loop and one NATS connection.

Start-up: read clusters (fail fast), serve gRPC (health NOT_SERVING until the bus is ready),
connect to NATS, ensure streams and the durable consumer, then SERVING. The consumer runs under
`bus.consume_forever`: a crash takes health to NOT_SERVING until it has been restarted.

Stop (SIGTERM), the stages of `SHUTDOWN_PLAN`: health NOT_SERVING; stop fetching; in-flight runs
get CONVEYOR_DEPLOYER_SHUTDOWN_GRACE to finish, never more than the drain stage allows; what is
still running is cancelled and handed back (nak) so the restarted deployer resumes it, gRPC stops
and NATS is drained; the Kubernetes clients close last.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor

from nats.aio.client import Client as NATS

from conveyor import bus, lifecycle, metrics as shared_metrics, retry
from conveyor.server import GrpcServer
from conveyor.v1 import target_service_pb2_grpc
from conveyor_deployer.adapters.clusters import load_clusters
from conveyor_deployer.adapters.jetstream import JetStreamDeployRequests, JetStreamRunEvents
from conveyor_deployer.adapters.kube import KubeWorkloadApi
from conveyor_deployer.adapters.leases import KvAppliedOrders, KvLeases
from conveyor_deployer.edges.consumer import CONSUMER, DeployRequestConsumer
from conveyor_deployer.edges.grpc_api import SERVICE_NAME, TargetServicer
from conveyor_deployer.settings import DeployerSettings
from conveyor_deployer.usecases.deploy import DeployRunner
from conveyor_deployer.usecases.dispatcher import Dispatcher
from conveyor_deployer.usecases.targets import TargetQueries

log = logging.getLogger(__name__)

# 40 s: NOT_SERVING by 4 s, fetching stopped by 10 s, in-flight runs drained by 30 s (the default
# 20 s grace fits even when the first stages used all of theirs), handed back by 40 s; the watchdog
# exits at 43 s, well inside the pod's terminationGracePeriodSeconds of 60 (deploy/kubernetes).
SHUTDOWN_PLAN = lifecycle.DEFAULT_PLAN.with_total(40.0)
# Stage actions end this much before their stage's deadline rather than being cut at it.
_STAGE_SLACK = 0.25
# TargetService calls in flight get at most this long to finish, as before the stop plan.
_GRPC_GRACE = 2.0


def kube_retry_policy(settings: DeployerSettings) -> retry.RetryPolicy:
    """Transient Kubernetes failures: waits double from KUBE_BACKOFF up to KUBE_MAX_BACKOFF, each
    drawn from the upper half of its ceiling (jitter 0.5), KUBE_RETRIES attempts in all."""
    return retry.RetryPolicy(
        initial=settings.kube_backoff,
        maximum=settings.kube_max_backoff,
        multiplier=2.0,
        jitter=0.5,
        max_attempts=settings.kube_retries,
    )


class DeployerApp:
    def __init__(
        self,
        settings: DeployerSettings,
        environ: Mapping[str, str],
        *,
        shutdown_plan: lifecycle.ShutdownPlan = SHUTDOWN_PLAN,
        consumer_restart: retry.RetryPolicy = bus.CONSUMER_RESTART_POLICY,
    ) -> None:
        self.settings = settings
        self.environ = environ  # KUBECONFIG and HOME, for the clusters
        self.shutdown_plan = shutdown_plan
        self.consumer_restart = consumer_restart
        self.api: KubeWorkloadApi | None = None
        self.grpc: GrpcServer | None = None
        self.nc: NATS | None = None
        self.dispatcher: Dispatcher | None = None
        self._stop_fetching = asyncio.Event()
        self._consuming: asyncio.Task[None] | None = None
        self._ready = False  # started fully and not stopping
        self._consumer_up = True
        # Names this replica in the leases it holds (for whoever reads the bucket).
        self.holder = f"{socket.gethostname()}/{os.getpid()}/{uuid.uuid4().hex[:8]}"

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
        kube_retry = kube_retry_policy(settings)
        server = GrpcServer(settings.address, [SERVICE_NAME])
        server.add(
            target_service_pb2_grpc.add_TargetServiceServicer_to_server,
            TargetServicer(TargetQueries(api, clusters, kube_retry)),
        )
        await server.start()
        self.grpc = server
        await server.set_serving(False)  # until deploy requests can be taken
        self.nc = await bus.connect(settings.common.nats_url, "conveyor-deployer")
        js = self.nc.jetstream()
        await bus.ensure_streams(js, replicas=settings.common.bus_replicas)
        runner = DeployRunner(
            api,
            JetStreamRunEvents(js),
            [c.name for c in clusters],
            retry=kube_retry,
            policies={c.name: c.policy for c in clusters},
            conflict_retries=settings.conflict_retries,
            poll_interval=settings.poll_interval,
            shared=await KvAppliedOrders.open(js, replicas=settings.common.bus_replicas),
        )
        # Every replica shares the durable consumer; the per-workload leases keep each workload's runs on one.
        self.dispatcher = Dispatcher(
            runner,
            max_concurrent=settings.max_concurrent_runs,
            heartbeat_interval=settings.heartbeat_interval,
            leases=await KvLeases.open(js, ttl=settings.lease_ttl, replicas=settings.common.bus_replicas),
            holder=self.holder,
        )
        consumer = DeployRequestConsumer(
            JetStreamDeployRequests(
                js,
                ack_wait=settings.ack_wait,
                max_held=settings.max_held_requests,
                max_deliver=settings.common.max_deliver,
            ),
            self.dispatcher,
            runner,
            max_held=settings.max_held_requests,
            default_rollout_timeout=settings.default_rollout_timeout,
        )
        await consumer.prepare()
        self._consuming = asyncio.create_task(
            bus.consume_forever(
                CONSUMER,
                lambda: consumer.run(self._stop_fetching),
                policy=self.consumer_restart,
                on_health=self._consumer_health,
                stop=self._stop_fetching,
            )
        )
        self._ready = True
        await self._report_health()
        log.info("deployer ready", extra={"address": server.bound_address})

    async def _consumer_health(self, up: bool) -> None:
        self._consumer_up = up
        await self._report_health()

    async def _report_health(self) -> None:
        # SERVING only while deploy requests are being taken: started, consumer up, not stopping.
        if self.grpc is not None:
            await self.grpc.set_serving(self._ready and self._consumer_up)

    async def stop(self) -> None:
        """Stop within `shutdown_plan.total`, undoing what `start` got to (it may have failed halfway)."""
        try:
            await self.shutdown_plan.run(
                {
                    "not_serving": self._not_serving,
                    "stop_accepting": self._stop_accepting,
                    "drain": self._drain,
                    "hand_back": [self._hand_back, self._stop_grpc],
                }
            )
        finally:
            if self.nc is not None and not self.nc.is_closed:
                await self.nc.close()  # the drain was cut short
            if self.api is not None:
                self.api.close()

    async def _not_serving(self, budget: float) -> None:
        self._ready = False
        await self._report_health()

    async def _stop_accepting(self, budget: float) -> None:
        self._stop_fetching.set()
        if self._consuming is not None:
            log.info("stopping: no new deploy requests")
            await self._consuming  # the fetch loop ends within its 1 s fetch timeout

    async def _drain(self, budget: float) -> None:
        if self.dispatcher is not None:
            grace = min(self.settings.shutdown_grace, max(budget - _STAGE_SLACK, 0.0))
            log.info("stopping: finishing in-flight runs", extra={"grace_seconds": round(grace, 3)})
            await self.dispatcher.drain(grace)

    async def _hand_back(self, budget: float) -> None:
        if self.dispatcher is not None:
            await self.dispatcher.hand_back()
        if self.nc is not None:
            try:
                await self.nc.drain()  # flushes the naks
            except Exception:
                log.debug("draining NATS failed", exc_info=True)

    async def _stop_grpc(self, budget: float) -> None:
        if self.grpc is not None:
            await self.grpc.stop(grace=min(_GRPC_GRACE, max(budget - _STAGE_SLACK, 0.0)))
