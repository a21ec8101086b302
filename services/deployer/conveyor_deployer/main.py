"""conveyor-deployer: turns deploy requests into updated Kubernetes workloads and run records.

Start-up: read settings and clusters (fail fast), serve gRPC (health NOT_SERVING until the
bus is ready), connect to NATS, ensure streams and the durable consumer, then SERVING.
SIGTERM: health NOT_SERVING, stop fetching, finish in-flight runs within the grace period or
hand them back (nak), stop gRPC, drain NATS, exit 0.
"""

from __future__ import annotations

import asyncio
import logging
import os
from concurrent.futures import ThreadPoolExecutor

from conveyor import bus, logs
from conveyor import metrics as shared_metrics
from conveyor.server import GrpcServer, run_service
from conveyor.v1 import target_service_pb2_grpc
from conveyor_deployer.clusters import load_clusters
from conveyor_deployer.consumer import DeployRequestConsumer, JetStreamRunEvents
from conveyor_deployer.dispatcher import Dispatcher
from conveyor_deployer.grpc_api import SERVICE_NAME, TargetServicer
from conveyor_deployer.kube import KubeWorkloadApi
from conveyor_deployer.settings import SERVICE, DeployerSettings
from conveyor_deployer.usecases.deploy import DeployRunner
from conveyor_deployer.usecases.retry import RetryPolicy
from conveyor_deployer.usecases.targets import TargetQueries

log = logging.getLogger(__name__)


async def serve(stop: asyncio.Event) -> None:
    settings = DeployerSettings.from_env()
    logs.configure(f"conveyor-{SERVICE}", settings.common.log_level, settings.common.log_format)
    # asyncio.to_thread runs on the default executor: size it for the Kubernetes call bound.
    asyncio.get_running_loop().set_default_executor(
        ThreadPoolExecutor(max_workers=settings.kube_concurrency + 2, thread_name_prefix="kube")
    )
    clusters = load_clusters(settings.clusters_file, os.environ)
    api = KubeWorkloadApi.from_clusters(clusters, concurrency=settings.kube_concurrency, timeout=settings.kube_timeout)
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
        target_service_pb2_grpc.add_TargetServiceServicer_to_server, TargetServicer(TargetQueries(api, clusters, retry))
    )
    await server.start()
    await server.set_serving(False)  # until deploy requests can be taken
    nc = None
    try:
        nc = await bus.connect(settings.common.nats_url, "conveyor-deployer")
        js = nc.jetstream()
        await bus.ensure_streams(js)
        runner = DeployRunner(
            api,
            JetStreamRunEvents(js),
            [c.name for c in clusters],
            retry=retry,
            conflict_retries=settings.conflict_retries,
            poll_interval=settings.poll_interval,
        )
        dispatcher = Dispatcher(
            runner, max_concurrent=settings.max_concurrent_runs, heartbeat_interval=settings.heartbeat_interval
        )
        consumer = DeployRequestConsumer(
            js,
            dispatcher,
            runner,
            ack_wait=settings.ack_wait,
            max_held=settings.max_held_requests,
            default_rollout_timeout=settings.default_rollout_timeout,
        )
        await consumer.prepare()
        fetching = asyncio.create_task(consumer.run(stop))
        await server.set_serving(True)
        log.info("deployer ready", extra={"address": server.bound_address})
        await stop.wait()

        log.info("stopping: no new deploy requests; finishing or handing back in-flight runs")
        await server.set_serving(False)
        await fetching
        await dispatcher.shutdown(settings.shutdown_grace)
    finally:
        await server.stop(grace=2.0)
        if nc is not None:
            try:
                await nc.drain()
            except Exception:
                log.debug("draining NATS failed", exc_info=True)
        api.close()


def main() -> None:
    run_service(f"conveyor-{SERVICE}", serve)


if __name__ == "__main__":
    main()
