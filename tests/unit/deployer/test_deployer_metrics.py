"""The deployer's own metrics: push -> ready latency, and the runs held past their rollout timeout."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
from typing import Any

from prometheus_client import REGISTRY

from conveyor.retry import RetryPolicy
from conveyor.v1 import run_pb2
from conveyor_deployer import metrics
from conveyor_deployer.usecases.deploy import DeployRunner
from conveyor_deployer.usecases.dispatcher import Dispatcher
from conveyor_deployer.usecases.requests import DeployRequest, parse_deploy_request
from tests.support.kube import deploy_requested
from tests.support.net import eventually
from tests.unit.deployer.fakes import CLUSTER, FakeClock, FakeWorkloadApi, MemorySink, deployment, request, rolled_out
from tests.unit.deployer.test_deployer_dispatcher import FakeDelivery, GatedExecutor

State = run_pb2.Run
READY_AT = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)


def push_to_ready(sample: str, **labels: str) -> float:
    value = REGISTRY.get_sample_value(f"conveyor_push_to_ready_seconds{sample}", {"cluster": CLUSTER, **labels})
    return value or 0.0


def snapshot() -> tuple[float, float, float, float]:
    """(count, sum, observations <= 30 s, observations <= 45 s) for the fakes' cluster."""
    return (
        push_to_ready("_count"),
        push_to_ready("_sum"),
        push_to_ready("_bucket", le="30.0"),
        push_to_ready("_bucket", le="45.0"),
    )


def runner(api: FakeWorkloadApi, sink: MemorySink, clusters: list[str] | None = None) -> DeployRunner:
    clock = FakeClock()
    return DeployRunner(
        api,
        sink,
        [CLUSTER] if clusters is None else clusters,
        retry=RetryPolicy(initial=0.1, maximum=0.1, jitter=0.0, max_attempts=2),
        poll_interval=1.0,
        clock=lambda: READY_AT,
        sleep=clock.sleep,
        monotonic=clock.monotonic,
    )


def rolling_out_api() -> FakeWorkloadApi:
    api = FakeWorkloadApi(deployment())

    def complete(workload: dict[str, Any]) -> None:
        workload["status"] = rolled_out(workload["metadata"]["generation"])

    api.after_patch = complete
    return api


def pushed(seconds_before_ready: float, **overrides: Any) -> DeployRequest:
    pushed_at = READY_AT - dt.timedelta(seconds=seconds_before_ready)
    return dataclasses.replace(request(**overrides), pushed_at=pushed_at)


async def test_push_to_ready_is_observed_once_per_run_with_the_time_since_the_push() -> None:
    count, total, under_30, under_45 = snapshot()
    deploy = runner(rolling_out_api(), MemorySink())

    result = await deploy.run(pushed(42.5), 1)

    assert result.state == State.SUCCEEDED, result.error
    assert snapshot() == (count + 1, total + 42.5, under_30, under_45 + 1)

    # A redelivery finds the terminal event already stored by the first attempt: not counted again.
    again = await deploy.run(pushed(42.5), 2)
    assert again.state == State.SUCCEEDED
    assert snapshot() == (count + 1, total + 42.5, under_30, under_45 + 1)


async def test_runs_that_did_not_succeed_or_had_no_push_are_not_observed() -> None:
    before = snapshot()
    sink = MemorySink()

    failed = await runner(rolling_out_api(), sink, clusters=["elsewhere"]).run(
        pushed(5, run_id="01jfailedrun0000000000000a"), 1
    )
    manual = await runner(rolling_out_api(), sink).run(request(run_id="01jmanualrun0000000000000a"), 1)

    assert (failed.state, manual.state) == (State.FAILED, State.SUCCEEDED)
    assert snapshot() == before


def test_a_push_stamped_after_the_rollout_counts_as_instant() -> None:
    count, total, under_30, _ = snapshot()
    metrics.observe_push_to_ready(CLUSTER, READY_AT + dt.timedelta(seconds=3), READY_AT)
    assert snapshot()[:3] == (count + 1, total, under_30 + 1)


def test_the_push_time_travels_in_the_deploy_request() -> None:
    message = deploy_requested()
    message.pushed_at.FromDatetime(READY_AT)
    now = dt.datetime.now(dt.UTC)
    assert parse_deploy_request(message, default_rollout_timeout=60, now=now).pushed_at == READY_AT
    message.ClearField("pushed_at")  # a manual start
    assert parse_deploy_request(message, default_rollout_timeout=60, now=now).pushed_at is None


def test_in_flight_runs_are_overdue_past_their_own_rollout_timeout() -> None:
    now = [100.0]
    runs = metrics.InFlight(clock=lambda: now[0])
    runs.queued("pipelines/a/runs/1", 60)
    runs.queued("pipelines/b/runs/2", 300)
    runs.running("pipelines/b/runs/2", 30)  # picked up: its clock restarts
    now[0] += 31
    assert (runs.overdue("queued"), runs.overdue("running")) == (0, 1)
    now[0] += 30
    assert (runs.overdue("queued"), runs.overdue("running")) == (1, 1)
    runs.settled("pipelines/a/runs/1")
    runs.settled("pipelines/b/runs/2")
    runs.settled("pipelines/b/runs/2")  # settling twice is harmless
    assert (runs.overdue("queued"), runs.overdue("running")) == (0, 0)


def overdue(phase: str) -> float | None:
    return REGISTRY.get_sample_value("conveyor_deployer_runs_overdue", {"phase": phase})


async def test_the_dispatcher_reports_a_run_running_past_its_timeout_until_it_ends() -> None:
    executor = GatedExecutor()
    dispatcher = Dispatcher(executor, max_concurrent=1, heartbeat_interval=60)
    slow = request(run_id="01jslowrun00000000000000aa", timeout=0.05, workload="slow")
    waiting = request(run_id="01jwaitingrun0000000000aaa", timeout=0.05, workload="other")
    baseline = (overdue("queued") or 0.0, overdue("running") or 0.0)
    deliveries = [FakeDelivery(), FakeDelivery()]
    await dispatcher.submit(slow, deliveries[0])
    await dispatcher.submit(waiting, deliveries[1])  # waits for the only slot

    async def both_overdue() -> None:
        assert (overdue("queued"), overdue("running")) == (baseline[0] + 1, baseline[1] + 1)

    await eventually(both_overdue, 5)

    executor.gate(slow).set()
    executor.gate(waiting).set()

    async def settled() -> None:
        assert all(d.settled == ["ack"] for d in deliveries)

    await eventually(settled, 5)
    await asyncio.sleep(0)
    assert (overdue("queued"), overdue("running")) == baseline
