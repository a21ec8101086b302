"""The dispatcher with workload leases (fakes): held while another replica leases the workload, fenced, released."""

from __future__ import annotations

import asyncio

from conveyor.v1 import run_pb2
from conveyor_deployer.usecases.deploy import RunResult
from conveyor_deployer.usecases.dispatcher import Dispatcher
from conveyor_deployer.usecases.ports import Fence, LeaseLost
from conveyor_deployer.usecases.requests import DeployRequest
from tests.support.net import eventually
from tests.unit.deployer.test_deployer_dispatcher import FakeDelivery, req

WEB = "/".join(req("any", 0).target.key)  # how the dispatcher names the workload it leases


class FakeLease:
    def __init__(self, leases: FakeLeases, workload: str, holder: str) -> None:
        self.leases = leases
        self.workload = workload
        self.holder = holder
        self.revision = 1
        self.renewals = 0

    async def renew(self) -> None:
        if self.leases.held.get(self.workload) is not self:
            raise LeaseLost(self.workload)
        self.renewals += 1
        self.revision += 1

    async def release(self) -> None:
        if self.leases.held.get(self.workload) is self:
            del self.leases.held[self.workload]


class FakeLeases:
    renew_interval = 0.02

    def __init__(self) -> None:
        self.held: dict[str, object] = {}

    async def acquire(self, workload: str, holder: str) -> FakeLease | None:
        if workload in self.held:
            return None
        lease = FakeLease(self, workload, holder)
        self.held[workload] = lease
        return lease


class FencedExecutor:
    """Runs until its gate opens, then calls the fence as the PATCH would; records what it saw."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.started: list[str] = []
        self.patched: list[str] = []
        self.fences: list[Fence | None] = []

    async def run(self, request: DeployRequest, attempt: int, fence: Fence | None = None) -> RunResult:
        self.started.append(request.run_id)
        self.fences.append(fence)
        await self.gate.wait()
        if fence is not None:
            await fence()
        self.patched.append(request.run_id)
        return RunResult(run_pb2.Run.SUCCEEDED, "ok")

    async def supersede(self, request: DeployRequest, attempt: int, newer: DeployRequest) -> RunResult:
        return RunResult(run_pb2.Run.SUPERSEDED, "superseded")


def dispatcher(executor: FencedExecutor, leases: FakeLeases) -> Dispatcher:
    return Dispatcher(executor, max_concurrent=4, heartbeat_interval=0.02, leases=leases, holder="r1", lease_retry=0.02)


async def test_a_workload_leased_elsewhere_is_held_not_worked_on_until_the_lease_frees() -> None:
    executor, leases = FencedExecutor(), FakeLeases()
    other = await leases.acquire(WEB, "r2")
    assert other is not None
    delivery = FakeDelivery()
    deployer = dispatcher(executor, leases)
    await deployer.submit(req("run-a", 1), delivery)
    await asyncio.sleep(0.2)
    assert executor.started == [] and delivery.settled == []  # neither run nor nak'ed: kept
    assert delivery.progress > 0  # and kept alive with in-progress acks

    await other.release()
    executor.gate.set()
    await eventually(lambda: _settled(delivery), 5)
    assert executor.patched == ["run-a"] and delivery.settled == ["ack"]
    assert leases.held == {}  # released after the run


async def test_other_workloads_run_while_one_is_leased_elsewhere() -> None:
    executor, leases = FencedExecutor(), FakeLeases()
    await leases.acquire(WEB, "r2")
    deployer = dispatcher(executor, leases)
    await deployer.submit(req("run-a", 1), FakeDelivery())
    await deployer.submit(req("run-b", 2, workload="api"), FakeDelivery())

    async def api_started() -> None:
        assert executor.started == ["run-b"]

    await eventually(api_started, 5)
    await deployer.shutdown(0.0)


async def test_the_run_gets_the_lease_as_its_fence_and_the_lease_is_renewed_while_it_runs() -> None:
    executor, leases = FencedExecutor(), FakeLeases()
    deployer = dispatcher(executor, leases)
    delivery = FakeDelivery()
    await deployer.submit(req("run-a", 1), delivery)
    await eventually(lambda: _started(executor), 5)
    lease = leases.held[WEB]
    assert isinstance(lease, FakeLease) and lease.holder == "r1 " + req("run-a", 1).run
    await asyncio.sleep(0.1)
    assert lease.renewals >= 2
    executor.gate.set()
    await eventually(lambda: _settled(delivery), 5)
    assert executor.fences[0] is not None and delivery.settled == ["ack"]


async def test_a_lost_lease_stops_the_run_before_its_patch_and_hands_the_request_back() -> None:
    executor, leases = FencedExecutor(), FakeLeases()
    deployer = dispatcher(executor, leases)
    delivery = FakeDelivery()
    await deployer.submit(req("run-a", 1), delivery)
    await eventually(lambda: _started(executor), 5)
    leases.held[WEB] = object()  # expired and taken by another replica

    await eventually(lambda: _settled(delivery), 5)
    executor.gate.set()
    await asyncio.sleep(0.05)
    assert executor.patched == []
    assert delivery.settled == [f"nak:{deployer.retry_delay}"]
    assert deployer.held == 0


async def test_the_fence_refuses_a_patch_after_the_lease_was_lost() -> None:
    executor, leases = FencedExecutor(), FakeLeases()
    leases.renew_interval = 60.0  # no renewal notices the loss: only the fence does
    deployer = dispatcher(executor, leases)
    delivery = FakeDelivery()
    await deployer.submit(req("run-a", 1), delivery)
    await eventually(lambda: _started(executor), 5)
    leases.held[WEB] = object()
    executor.gate.set()

    await eventually(lambda: _settled(delivery), 5)
    assert executor.patched == []
    assert delivery.settled == [f"nak:{deployer.retry_delay}"]


async def _started(executor: FencedExecutor) -> None:
    assert executor.started


async def _settled(delivery: FakeDelivery) -> None:
    assert delivery.settled
