"""Stopping the deployer on its stop plan: a bounded drain, what did not finish handed back, a partial start."""

from __future__ import annotations

import asyncio
import pathlib
import time

import pytest

from conveyor.lifecycle import ShutdownPlan, StageOutcome
from conveyor.settings import SettingsError
from conveyor.v1 import run_pb2
from conveyor_deployer.app import SHUTDOWN_PLAN, DeployerApp, kube_retry_policy
from conveyor_deployer.settings import DeployerSettings
from conveyor_deployer.usecases.deploy import RunResult
from conveyor_deployer.usecases.dispatcher import Dispatcher
from conveyor_deployer.usecases.requests import DeployRequest
from tests.unit.deployer.fakes import request

PLAN = ShutdownPlan(total=1.0)


class Delivery:
    attempt = 1

    def __init__(self) -> None:
        self.settled: list[str] = []

    async def in_progress(self) -> None:
        pass

    async def ack(self) -> None:
        self.settled.append("ack")

    async def nak(self, delay: float = 0.0) -> None:
        self.settled.append(f"nak:{delay}")


class Executor:
    """Runs that wait for `finish` (set it never: a run that never ends); records what was cancelled."""

    def __init__(self) -> None:
        self.finish = asyncio.Event()
        self.started = asyncio.Event()
        self.cancelled = False

    async def run(self, req: DeployRequest, attempt: int) -> RunResult:
        self.started.set()
        try:
            await self.finish.wait()
        except asyncio.CancelledError:
            self.cancelled = True
            raise
        return RunResult(run_pb2.Run.SUCCEEDED, "done")

    async def supersede(self, req: DeployRequest, attempt: int, newer: DeployRequest) -> RunResult:
        raise AssertionError("not superseded in these tests")


def app_holding(dispatcher: Dispatcher, grace: str) -> DeployerApp:
    """An app past its start as far as stopping is concerned: its dispatcher holds runs (no gRPC, no NATS)."""
    settings = DeployerSettings.from_env({"CONVEYOR_DEPLOYER_SHUTDOWN_GRACE": grace})
    app = DeployerApp(settings, {}, shutdown_plan=PLAN)
    app.dispatcher = dispatcher
    return app


async def test_a_run_that_never_finishes_is_handed_back_within_the_plan() -> None:
    executor = Executor()
    dispatcher = Dispatcher(executor, max_concurrent=4, heartbeat_interval=60)
    delivery = Delivery()
    await dispatcher.submit(request(), delivery)
    await asyncio.wait_for(executor.started.wait(), 5)

    began = time.monotonic()
    await app_holding(dispatcher, grace="1h").stop()
    elapsed = time.monotonic() - began

    assert elapsed < PLAN.total + 0.2
    assert delivery.settled == ["nak:0"] and executor.cancelled
    assert dispatcher.held == 0


async def test_a_drain_cut_at_its_deadline_still_hands_the_run_back() -> None:
    executor = Executor()
    dispatcher = Dispatcher(executor, max_concurrent=4, heartbeat_interval=60)
    delivery = Delivery()
    await dispatcher.submit(request(), delivery)
    await asyncio.wait_for(executor.started.wait(), 5)

    async def drain_ignoring_its_budget(budget: float) -> None:
        await dispatcher.drain(3600.0)

    async def hand_back(budget: float) -> None:
        await dispatcher.hand_back()

    began = time.monotonic()
    results = await PLAN.run({"drain": drain_ignoring_its_budget, "hand_back": hand_back})
    elapsed = time.monotonic() - began

    assert {r.name: r.outcome for r in results}["drain"] is StageOutcome.OVERRAN
    assert elapsed < PLAN.total + 0.2
    assert delivery.settled == ["nak:0"] and executor.cancelled


async def test_a_run_finishing_within_the_drain_is_acked_not_handed_back() -> None:
    executor = Executor()
    dispatcher = Dispatcher(executor, max_concurrent=4, heartbeat_interval=60)
    delivery = Delivery()
    await dispatcher.submit(request(), delivery)
    await asyncio.wait_for(executor.started.wait(), 5)
    asyncio.get_running_loop().call_later(0.05, executor.finish.set)

    await app_holding(dispatcher, grace="1h").stop()

    assert delivery.settled == ["ack"] and not executor.cancelled


async def test_the_grace_setting_ends_the_drain_before_its_stage_does() -> None:
    executor = Executor()
    dispatcher = Dispatcher(executor, max_concurrent=4, heartbeat_interval=60)
    delivery = Delivery()
    await dispatcher.submit(request(), delivery)
    await asyncio.wait_for(executor.started.wait(), 5)

    began = time.monotonic()
    await app_holding(dispatcher, grace="50ms").stop()

    assert time.monotonic() - began < PLAN.deadlines()["drain"]
    assert delivery.settled == ["nak:0"] and executor.cancelled


async def test_an_app_whose_start_failed_stops_cleanly(tmp_path: pathlib.Path) -> None:
    clusters = tmp_path / "clusters.yaml"
    clusters.write_text("clusters:\n  - name: prod\n    platform: AKS\n")
    settings = DeployerSettings.from_env({"CONVEYOR_CLUSTERS_FILE": str(clusters)})
    app = DeployerApp(settings, {}, shutdown_plan=PLAN)
    with pytest.raises(SettingsError, match="'AKS' is not one of"):
        await app.start()

    began = time.monotonic()
    await app.stop()

    assert time.monotonic() - began < PLAN.total
    assert app.grpc is None and app.nc is None


def test_the_deployer_plan_gives_in_flight_runs_their_default_grace() -> None:
    drain_ends = SHUTDOWN_PLAN.deadlines()["drain"]
    before_drain = SHUTDOWN_PLAN.deadlines()["stop_accepting"]
    # Even when the first stages use all of their time, the default 20 s grace fits in the drain stage.
    assert drain_ends - before_drain >= DeployerSettings.from_env({}).shutdown_grace
    # What the setting's documentation says of the plan.
    [grace] = [d for d in DeployerSettings.declarations() if d.env == "CONVEYOR_DEPLOYER_SHUTDOWN_GRACE"]
    assert f"at most until {drain_ends:g}s into the {SHUTDOWN_PLAN.total:g}s stop" in grace.doc


def test_kubernetes_retries_keep_their_timing() -> None:
    policy = kube_retry_policy(DeployerSettings.from_env({}))
    assert (policy.max_attempts, policy.ceiling(1), policy.ceiling(2), policy.ceiling(6)) == (5, 0.5, 1.0, 10.0)
    # The former uniform(0.5, 1.0) spread of each wait: from half its ceiling up to all of it.
    assert policy.delay(2, rand=lambda: 0.0) == 1.0
    assert policy.delay(2, rand=lambda: 0.999) == pytest.approx(0.5005)
