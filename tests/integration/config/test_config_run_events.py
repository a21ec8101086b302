"""RunEvent consumption against the real nats-server: lifecycle, duplicates, late events, bad messages."""

from __future__ import annotations

import grpc
from grpc_health.v1 import health_pb2
from nats.aio.client import Client as NATS
from nats.js import api as js_api
from prometheus_client import REGISTRY

from conveyor import bus
from conveyor.v1 import bus_pb2, run_service_pb2
from conveyor.v1.run_pb2 import Run
from conveyor_config.app import RUN_EVENTS, ConfigApp
from tests.integration.config.conftest import Clients, StartConfig, connected, truncate_tables
from tests.integration.config.support import create_pipeline, publish_event, rpc_error, run_event, settled
from tests.support.net import eventually

RUN = "pipelines/web/runs/01jq4ezk5y8v6p1x0m3d2c7b9a"


def run_events_counted(outcome: str) -> float:
    return REGISTRY.get_sample_value("conveyor_config_run_events_total", {"outcome": outcome}) or 0.0


async def get_run(clients: Clients, name: str = RUN) -> Run:
    return await clients.runs.GetRun(run_service_pb2.GetRunRequest(name=name))


async def stored_run(clients: Clients, name: str = RUN) -> Run:
    """The run, or an AssertionError (so `eventually` retries) while it is not stored yet."""
    try:
        return await get_run(clients, name)
    except grpc.aio.AioRpcError as exc:
        assert exc.code() != grpc.StatusCode.NOT_FOUND, f"{name} not stored yet"
        raise


async def messages(clients: Clients, name: str = RUN) -> list[str]:
    request = run_service_pb2.TailRunLogsRequest(name=name)
    return [entry.message async for entry in clients.runs.TailRunLogs(request)]


async def test_push_run_lifecycle_is_recorded(clients: Clients, nc: NATS) -> None:
    await create_pipeline(clients, "web")
    js = nc.jetstream()
    queued = run_event(
        RUN,
        "01jq4ezk5y8v6p1x0m3d2c7b9a:queued",
        Run.QUEUED,
        "push of demo.tencentcloudcr.com/team/app:v2 matched",
        trigger=Run.PUSH,
        image="demo.tencentcloudcr.com/team/app:v2",
        tag="v2",
        digest="sha256:" + "12" * 32,
        source_event_id="harbor-77",
    )
    queued.time.FromSeconds(1_700_000_000)
    await publish_event(js, queued)
    running = run_event(RUN, "01jq4ezk5y8v6p1x0m3d2c7b9a:deployer:1:0", Run.RUNNING, "patching deployment web/frontend")
    running.time.FromSeconds(1_700_000_001)
    await publish_event(js, running)
    done = run_event(
        RUN, "01jq4ezk5y8v6p1x0m3d2c7b9a:deployer:1:1", Run.SUCCEEDED, "rollout complete", previous_image="app:v1"
    )
    done.time.FromSeconds(1_700_000_009)
    await publish_event(js, done)

    async def finished() -> Run:
        run = await stored_run(clients)
        assert run.state == Run.SUCCEEDED
        return run

    run = await eventually(finished)
    assert (run.trigger, run.image, run.tag, run.event_id, run.previous_image) == (
        Run.PUSH,
        "demo.tencentcloudcr.com/team/app:v2",
        "v2",
        "harbor-77",
        "app:v1",
    )
    assert (run.create_time.seconds, run.start_time.seconds, run.end_time.seconds) == (
        1_700_000_000,
        1_700_000_001,
        1_700_000_009,
    )
    assert await messages(clients) == [
        "push of demo.tencentcloudcr.com/team/app:v2 matched",
        "patching deployment web/frontend",
        "rollout complete",
    ]
    await eventually(lambda: settled(js))


async def test_redelivered_duplicate_is_ignored(clients: Clients, nc: NATS) -> None:
    await create_pipeline(clients, "web")
    js = nc.jetstream()
    step = run_event(RUN, "run:deployer:1:3", Run.RUNNING, "patch sent", trigger=Run.PUSH, image="x/app:v1")
    # The same event again under another message id: JetStream cannot dedupe it, config must.
    assert await publish_event(js, step)
    assert await publish_event(js, step, msg_id="run:deployer:1:3#redelivery")
    assert await publish_event(js, run_event(RUN, "run:deployer:1:4", 0, "waiting for rollout"))
    await eventually(lambda: settled(js))
    assert await messages(clients) == ["patch sent", "waiting for rollout"]
    assert run_events_counted("duplicate") >= 1


async def test_late_events_never_move_a_finished_run_back(clients: Clients, nc: NATS) -> None:
    await create_pipeline(clients, "web")
    js = nc.jetstream()
    done = run_event(RUN, "e-succeeded", Run.SUCCEEDED, "rollout complete", trigger=Run.PUSH, image="x/app:v1")
    await publish_event(js, done)

    async def succeeded() -> Run:
        run = await stored_run(clients)
        assert run.state == Run.SUCCEEDED
        return run

    before = await eventually(succeeded)
    await publish_event(js, run_event(RUN, "e-running", Run.RUNNING, "late: patching"))
    await publish_event(js, run_event(RUN, "e-queued", Run.QUEUED, "late: queued", error="stale error"))
    await eventually(lambda: settled(js))
    after = await get_run(clients)
    assert after == before  # state, times and error untouched
    # Logged at their place, not on arrival: QUEUED first, the run's outcome last.
    assert await messages(clients) == ["late: queued", "late: patching", "rollout complete"]


async def test_bad_messages_are_terminated_counted_and_do_not_stop_the_consumer(clients: Clients, nc: NATS) -> None:
    await create_pipeline(clients, "web")
    js = nc.jetstream()
    malformed_before = run_events_counted("malformed")
    dropped_before = run_events_counted("no_pipeline")
    await js.publish(bus.RUN_EVENTS_SUBJECT, b"\xff\xfe not a protobuf", headers={bus.MSG_ID_HEADER: "garbage-1"})
    await publish_event(js, run_event("not/a/run/name", "bad-name", Run.RUNNING))
    await bus.publish(js, bus.RUN_EVENTS_SUBJECT, bus_pb2.RunEvent(run=RUN), msg_id="")  # no event id at all
    await publish_event(js, run_event("pipelines/ghost/runs/r1", "ghost-1", Run.RUNNING, "for nobody"))
    await publish_event(js, run_event(RUN, "good-1", Run.RUNNING, "still consuming", image="x/app:v1"))

    async def stored() -> None:
        assert (await stored_run(clients)).state == Run.RUNNING

    await eventually(stored)
    await eventually(lambda: settled(js))
    assert run_events_counted("malformed") - malformed_before == 3
    assert run_events_counted("no_pipeline") - dropped_before == 1
    await rpc_error(get_run(clients, "pipelines/ghost/runs/r1"), grpc.StatusCode.NOT_FOUND)


async def test_events_are_consumed_on_postgresql_and_survive_a_restart(
    start_config: StartConfig, config_pg_url: str, nc: NATS
) -> None:
    await truncate_tables(config_pg_url)
    js = nc.jetstream()
    service: ConfigApp = await start_config(database_url=config_pg_url)
    async with connected(service.address) as clients:
        await create_pipeline(clients, "web")
        await publish_event(js, run_event(RUN, "a", Run.RUNNING, "one", image="x/app:v1"))
        await eventually(lambda: settled(js))
    await service.stop()
    # Published while config is down: the durable consumer delivers it after the restart.
    await publish_event(js, run_event(RUN, "b", Run.FAILED, "two", error="ImagePullBackOff: check the pull secret"))
    await publish_event(js, run_event(RUN, "a", Run.RUNNING, "one"), msg_id="a-again")
    restarted = await start_config(database_url=config_pg_url)
    async with connected(restarted.address) as clients:

        async def failed() -> None:
            run = await stored_run(clients)
            assert (run.state, run.error) == (Run.FAILED, "ImagePullBackOff: check the pull secret")

        await eventually(failed)
        await eventually(lambda: settled(js))
        assert await messages(clients) == ["one", "two"]


async def health_status(clients: Clients) -> int:
    return int((await clients.health.Check(health_pb2.HealthCheckRequest())).status)


async def test_a_crashing_consumer_is_restarted_and_health_reflects_it(start_config: StartConfig, nc: NATS) -> None:
    """The durable consumer cannot be bound (another config holds its name): NOT_SERVING until it can."""
    js = nc.jetstream()
    await bus.ensure_streams(js)
    # The same durable name with a deliver policy the service's spec cannot switch to: binding fails.
    conflicting = js_api.ConsumerConfig(
        durable_name=bus.CONFIG_RUN_EVENTS_DURABLE,
        ack_policy=js_api.AckPolicy.EXPLICIT,
        deliver_policy=js_api.DeliverPolicy.NEW,
        filter_subject=bus.RUN_EVENTS_SUBJECT,
    )
    await js.add_consumer(bus.RUN_EVENTS_STREAM, conflicting)
    service = await start_config()
    async with connected(service.address) as clients:

        async def not_serving() -> None:
            assert await health_status(clients) == health_pb2.HealthCheckResponse.NOT_SERVING
            assert service.consumers_down == {RUN_EVENTS}

        await eventually(not_serving)
        await create_pipeline(clients, "web")  # the API itself still answers
        await js.delete_consumer(bus.RUN_EVENTS_STREAM, bus.CONFIG_RUN_EVENTS_DURABLE)

        async def serving() -> None:
            assert await health_status(clients) == health_pb2.HealthCheckResponse.SERVING
            assert service.consumers_down == set()

        await eventually(serving, timeout=40)  # the restart backoff is jittered, at most 30 s
        await publish_event(js, run_event(RUN, "after-restart", Run.QUEUED, "queued", trigger=Run.PUSH))
        assert (await eventually(lambda: stored_run(clients))).state == Run.QUEUED
        assert await health_status(clients) == health_pb2.HealthCheckResponse.SERVING
