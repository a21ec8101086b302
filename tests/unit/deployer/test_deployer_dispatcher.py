"""The dispatcher with fake deliveries and a fake executor: ordering, supersede, heartbeats, shutdown."""

from __future__ import annotations

import asyncio
import datetime as dt

from conveyor.v1 import run_pb2
from conveyor_deployer.usecases.deploy import RunResult
from conveyor_deployer.usecases.dispatcher import Dispatcher
from conveyor_deployer.usecases.requests import DeployRequest
from tests.support.net import eventually
from tests.unit.deployer.fakes import request

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


class FakeDelivery:
    def __init__(self, attempt: int = 1) -> None:
        self.attempt = attempt
        self.progress = 0
        self.settled: list[str] = []

    async def in_progress(self) -> None:
        self.progress += 1

    async def ack(self) -> None:
        self.settled.append("ack")

    async def nak(self, delay: float = 0.0) -> None:
        self.settled.append(f"nak:{delay}")


class GatedExecutor:
    """Each run waits for its gate; records what ran, in which order, and what overlapped."""

    def __init__(self) -> None:
        self.gates: dict[str, asyncio.Event] = {}
        self.started: list[str] = []
        self.finished: list[str] = []
        self.superseded: list[tuple[str, str]] = []
        self.cancelled: list[str] = []
        self.running: set[str] = set()
        self.max_running = 0
        self.fail: set[str] = set()

    def gate(self, run: DeployRequest) -> asyncio.Event:
        return self.gates.setdefault(run.run_id, asyncio.Event())

    async def run(self, req: DeployRequest, attempt: int) -> RunResult:
        self.started.append(req.run_id)
        self.running.add(req.run_id)
        self.max_running = max(self.max_running, len(self.running))
        try:
            await self.gate(req).wait()
            if req.run_id in self.fail:
                raise RuntimeError("NATS unavailable")
        except asyncio.CancelledError:
            self.cancelled.append(req.run_id)
            raise
        finally:
            self.running.discard(req.run_id)
        self.finished.append(req.run_id)
        return RunResult(run_pb2.Run.SUCCEEDED, "ok")

    async def supersede(self, req: DeployRequest, attempt: int, newer: DeployRequest) -> RunResult:
        self.superseded.append((req.run_id, newer.run_id))
        return RunResult(run_pb2.Run.SUPERSEDED, "superseded")


def req(run_id: str, seconds: int, *, container: str = "app", workload: str = "web") -> DeployRequest:
    return request(
        run_id=run_id, requested_at=T0 + dt.timedelta(seconds=seconds), container=container, workload=workload
    )


async def started(executor: GatedExecutor, *runs: str) -> None:
    async def check() -> None:
        for run in runs:
            assert run in executor.started, executor.started

    await eventually(check, 5)


async def test_runs_on_one_workload_are_serialised_in_arrival_order() -> None:
    executor = GatedExecutor()
    dispatcher = Dispatcher(executor, max_concurrent=8, heartbeat_interval=60)
    first, second = req("run-a", 1, container="app"), req("run-b", 2, container="sidecar")
    deliveries = [FakeDelivery(), FakeDelivery()]
    await dispatcher.submit(first, deliveries[0])
    await dispatcher.submit(second, deliveries[1])
    await started(executor, "run-a")
    await asyncio.sleep(0.05)
    assert executor.started == ["run-a"]  # the other container waits: same workload

    executor.gate(first).set()
    await started(executor, "run-b")
    executor.gate(second).set()
    await eventually(lambda: _settled(deliveries), 5)
    assert executor.max_running == 1 and executor.superseded == []
    assert [d.settled for d in deliveries] == [["ack"], ["ack"]]
    assert dispatcher.held == 0


async def _settled(deliveries: list[FakeDelivery]) -> None:
    assert all(d.settled for d in deliveries)


async def test_different_workloads_run_concurrently_within_the_bound() -> None:
    executor = GatedExecutor()
    dispatcher = Dispatcher(executor, max_concurrent=2, heartbeat_interval=60)
    runs = [req(f"run-{i}", i, workload=f"w{i}") for i in range(3)]
    deliveries = [FakeDelivery() for _ in runs]
    for run, delivery in zip(runs, deliveries, strict=True):
        await dispatcher.submit(run, delivery)
    await started(executor, "run-0", "run-1")
    await asyncio.sleep(0.05)
    assert "run-2" not in executor.started  # bounded at 2

    executor.gate(runs[0]).set()
    await started(executor, "run-2")
    for run in runs:
        executor.gate(run).set()
    await eventually(lambda: _settled(deliveries), 5)
    assert executor.max_running == 2


async def test_a_newer_request_supersedes_the_queued_older_one_for_the_same_container() -> None:
    executor = GatedExecutor()
    dispatcher = Dispatcher(executor, max_concurrent=8, heartbeat_interval=60)
    running, queued, newest = req("run-1", 1), req("run-2", 2), req("run-3", 3)
    other_container = req("run-4", 0, container="sidecar")
    deliveries = {name: FakeDelivery() for name in ("run-1", "run-2", "run-3", "run-4")}
    await dispatcher.submit(running, deliveries["run-1"])
    await started(executor, "run-1")
    await dispatcher.submit(queued, deliveries["run-2"])
    await dispatcher.submit(other_container, deliveries["run-4"])
    await dispatcher.submit(newest, deliveries["run-3"])

    assert executor.superseded == [("run-2", "run-3")]
    assert deliveries["run-2"].settled == ["ack"]
    for run in (running, newest, other_container):
        executor.gate(run).set()
    await eventually(lambda: _settled(list(deliveries.values())), 5)
    assert executor.started == ["run-1", "run-4", "run-3"]  # arrival order; run-2 never ran


async def test_a_request_older_than_the_running_one_is_superseded_on_arrival() -> None:
    executor = GatedExecutor()
    dispatcher = Dispatcher(executor, max_concurrent=8, heartbeat_interval=60)
    newer, older = req("run-new", 10), req("run-old", 5)
    await dispatcher.submit(newer, FakeDelivery())
    await started(executor, "run-new")
    late = FakeDelivery()

    await dispatcher.submit(older, late)

    assert executor.superseded == [("run-old", "run-new")]
    assert late.settled == ["ack"]
    executor.gate(newer).set()
    await eventually(lambda: _no_running(executor), 5)
    assert executor.started == ["run-new"]


async def _no_running(executor: GatedExecutor) -> None:
    assert not executor.running and executor.finished


async def test_held_messages_get_in_progress_acks_and_a_redelivery_replaces_the_handle() -> None:
    executor = GatedExecutor()
    dispatcher = Dispatcher(executor, max_concurrent=1, heartbeat_interval=0.01)
    run = req("run-1", 1)
    first_delivery, redelivery = FakeDelivery(1), FakeDelivery(2)
    await dispatcher.submit(run, first_delivery)
    await started(executor, "run-1")

    async def heartbeats() -> None:
        assert first_delivery.progress >= 3

    await eventually(heartbeats, 5)

    await dispatcher.submit(run, redelivery)  # JetStream redelivered it: still one run
    executor.gate(run).set()
    await eventually(lambda: _settled([redelivery]), 5)
    assert executor.started == ["run-1"]
    assert redelivery.settled == ["ack"] and first_delivery.settled == []


async def test_a_run_that_raises_is_handed_back_for_redelivery() -> None:
    executor = GatedExecutor()
    dispatcher = Dispatcher(executor, max_concurrent=1, heartbeat_interval=60, retry_delay=2.0)
    run = req("run-1", 1)
    executor.fail.add("run-1")
    delivery = FakeDelivery()
    await dispatcher.submit(run, delivery)
    executor.gate(run).set()

    await eventually(lambda: _settled([delivery]), 5)
    assert delivery.settled == ["nak:2.0"]


async def test_shutdown_hands_back_queued_runs_and_running_ones_after_the_grace_period() -> None:
    executor = GatedExecutor()
    dispatcher = Dispatcher(executor, max_concurrent=8, heartbeat_interval=60)
    running, queued = req("run-1", 1), req("run-2", 2, container="sidecar")
    running_delivery, queued_delivery = FakeDelivery(), FakeDelivery()
    await dispatcher.submit(running, running_delivery)
    await dispatcher.submit(queued, queued_delivery)
    await started(executor, "run-1")

    await dispatcher.shutdown(grace=0.1)

    assert queued_delivery.settled == ["nak:0"]
    assert running_delivery.settled == ["nak:0"]
    assert executor.cancelled == ["run-1"] and executor.started == ["run-1"]
    late = FakeDelivery()
    await dispatcher.submit(req("run-3", 3), late)
    assert late.settled == ["nak:0"]  # no new work once stopping


async def test_shutdown_lets_a_run_finish_within_the_grace_period() -> None:
    executor = GatedExecutor()
    dispatcher = Dispatcher(executor, max_concurrent=8, heartbeat_interval=60)
    run = req("run-1", 1)
    delivery = FakeDelivery()
    await dispatcher.submit(run, delivery)
    await started(executor, "run-1")
    asyncio.get_running_loop().call_later(0.05, executor.gate(run).set)

    await dispatcher.shutdown(grace=5)

    assert delivery.settled == ["ack"] and executor.cancelled == []
