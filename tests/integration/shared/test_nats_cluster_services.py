"""A real `conveyor-config` process given all three nodes of a JetStream cluster rides through one node's death."""

from __future__ import annotations

import asyncio
import pathlib
import time
from collections.abc import Iterator

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from nats.js import JetStreamContext

from conveyor import bus
from conveyor.v1 import bus_pb2, pipeline_service_pb2, pipeline_service_pb2_grpc, run_service_pb2, run_service_pb2_grpc
from conveyor.v1.run_pb2 import Run
from tests.support.nats_cluster import NatsCluster
from tests.support.net import eventually, free_port
from tests.support.procs import ServiceProcess, console_script
from tests.unit.config.samples import sample_pipeline

RUNS = "pipelines/web/runs/"


@pytest.fixture
def config_process(nats_cluster: NatsCluster, tmp_path: pathlib.Path) -> Iterator[tuple[ServiceProcess, str]]:
    address = f"127.0.0.1:{free_port()}"
    process = ServiceProcess(
        "conveyor-config",
        [console_script("conveyor-config")],
        {
            "CONVEYOR_CONFIG_ADDR": address,
            "CONVEYOR_NATS_URL": nats_cluster.url,
            "CONVEYOR_BUS_REPLICAS": "3",
            "CONVEYOR_DATA_DIR": str(tmp_path / "data"),
            "CONVEYOR_LOG_FORMAT": "json",
        },
        tmp_path / "logs",
    ).start()
    try:
        process.wait_ready(address)
        yield process, address
    finally:
        process.kill()


async def publish_retrying(js: JetStreamContext, event: bus_pb2.RunEvent, timeout: float = 30.0) -> None:
    """Publish until JetStream acknowledges (same dedup id each time), as the services' publishers do."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            await bus.publish(js, bus.RUN_EVENTS_SUBJECT, event, event.event_id, timeout=1.0)
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)


async def test_config_connected_to_every_node_rides_through_sigkill_and_restart_of_one(
    nats_cluster: NatsCluster, config_process: tuple[ServiceProcess, str]
) -> None:
    process, address = config_process
    nc = await bus.connect(nats_cluster.url, "cluster-services-test")
    js = nc.jetstream(timeout=1.0)
    async with grpc.aio.insecure_channel(address) as channel:
        pipelines = pipeline_service_pb2_grpc.PipelineServiceStub(channel)
        runs = run_service_pb2_grpc.RunServiceStub(channel)
        health = health_pb2_grpc.HealthStub(channel)
        await pipelines.CreatePipeline(
            pipeline_service_pb2.CreatePipelineRequest(pipeline=sample_pipeline(), pipeline_id="web")
        )

        async def recorded(number: int) -> float:
            """Publish run `number`'s QUEUED event; how long until config has stored the run."""
            run_id = f"01jq4ezk5y8v6p1x0m3d2c7b{number:02d}"
            event = bus_pb2.RunEvent(run=RUNS + run_id, event_id=f"{run_id}:queued", state=Run.QUEUED)
            event.time.FromSeconds(1_700_000_000 + number)
            started = time.monotonic()
            await publish_retrying(js, event)

            async def stored() -> None:
                try:
                    run = await runs.GetRun(run_service_pb2.GetRunRequest(name=event.run), timeout=2.0)
                except grpc.aio.AioRpcError as exc:
                    raise AssertionError(f"{event.run} not stored: {exc.code()}") from exc
                assert run.state == Run.QUEUED

            await eventually(stored, timeout=45.0, interval=0.1)
            return time.monotonic() - started

        try:
            # The process itself created every stream with CONVEYOR_BUS_REPLICAS copies.
            for stream in bus.STREAMS:
                assert (await js.stream_info(stream)).config.num_replicas == 3, stream
            await recorded(1)

            # The node leading config's durable consumer, where its fetches are served, is the worst to lose.
            info = await js.consumer_info(bus.RUN_EVENTS_STREAM, bus.CONFIG_RUN_EVENTS_DURABLE)
            assert info.cluster is not None and info.cluster.leader
            killed = nats_cluster.index_of(info.cluster.leader)
            nats_cluster.kill(killed)
            during_outage = await recorded(2)

            nats_cluster.restart(killed)
            after_restart = await recorded(3)

            reply = await health.Check(health_pb2.HealthCheckRequest(), timeout=2.0)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
            assert process.returncode is None
            print(
                f"\nconsumer leader {info.cluster.leader} SIGKILLed: a run event published then was stored after "
                f"{during_outage:.2f}s; after the node's restart, in {after_restart:.2f}s"
            )
        finally:
            await nc.close()
    assert process.terminate() == 0
