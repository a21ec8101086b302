"""conveyor.lifecycle: stop stages on one budget, the serve loop, signals and the final deadline."""

from __future__ import annotations

import asyncio
import importlib
import os
import pathlib
import signal
import threading
import time
from typing import Any

import pytest
import yaml

from conveyor import lifecycle
from conveyor.lifecycle import DEFAULT_PLAN, ShutdownPlan, StageOutcome
from conveyor.settings import SettingsError

ROOT = pathlib.Path(__file__).resolve().parents[3]
# Time left between our final deadline and Kubernetes' SIGKILL (endpoint removal lag, slow nodes).
KUBERNETES_MARGIN = 5.0
# Kubernetes' default when a pod spec sets none.
KUBERNETES_DEFAULT_GRACE = 30
PLAN = ShutdownPlan(
    total=1.0, stages=(("not_serving", 0.1), ("stop_accepting", 0.2), ("drain", 0.5), ("hand_back", 0.2))
)


def _pod_specs() -> list[tuple[str, dict[str, Any]]]:
    specs = []
    for path in sorted((ROOT / "deploy" / "kubernetes").glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if not isinstance(document, dict):
                continue
            kind = document.get("kind")
            if kind == "Pod":
                specs.append((f"{path.name}: Pod", document["spec"]))
            elif kind in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"):
                specs.append(
                    (f"{path.name}: {kind} {document['metadata']['name']}", document["spec"]["template"]["spec"])
                )
    return specs


def test_every_pod_gives_the_default_plan_time_to_finish() -> None:
    specs = _pod_specs()
    assert len(specs) >= 3  # config, trigger, deployer
    needed = DEFAULT_PLAN.final_deadline + KUBERNETES_MARGIN
    short = {
        name: grace
        for name, spec in specs
        if (grace := spec.get("terminationGracePeriodSeconds", KUBERNETES_DEFAULT_GRACE)) <= needed
    }
    assert short == {}, f"terminationGracePeriodSeconds must exceed {needed}s"


# Services stopping on a plan of their own (not DEFAULT_PLAN): their pod -> "module:attribute" of the plan.
SERVICE_PLANS = {
    "deployer.yaml: Deployment conveyor-deployer": "conveyor_deployer.app:SHUTDOWN_PLAN",
}


@pytest.mark.parametrize(("pod", "plan_at"), sorted(SERVICE_PLANS.items()))
def test_each_service_plan_fits_its_pod(pod: str, plan_at: str) -> None:
    module, _, attribute = plan_at.partition(":")
    plan = getattr(importlib.import_module(module), attribute)
    assert isinstance(plan, ShutdownPlan)
    grace = dict(_pod_specs())[pod].get("terminationGracePeriodSeconds", KUBERNETES_DEFAULT_GRACE)
    assert grace > plan.final_deadline + KUBERNETES_MARGIN, f"{pod}: {grace}s leaves no room for {plan}"


def test_stage_deadlines_are_cumulative_shares_of_the_total() -> None:
    plan = ShutdownPlan(total=10.0, stages=(("a", 0.1), ("b", 0.2), ("c", 0.5), ("d", 0.2)))
    assert plan.deadlines() == pytest.approx({"a": 1.0, "b": 3.0, "c": 8.0, "d": 10.0})
    assert plan.final_deadline == 10.0 + lifecycle.DEFAULT_FINAL_SLACK
    assert plan.with_total(20.0).deadlines()["b"] == pytest.approx(6.0)
    assert [name for name, _ in DEFAULT_PLAN.stages] == ["not_serving", "stop_accepting", "drain", "hand_back"]


@pytest.mark.parametrize(
    ("total", "stages"),
    [
        (0.0, (("a", 1.0),)),
        (5.0, ()),
        (5.0, (("a", 0.5), ("a", 0.5))),
        (5.0, (("a", 0.0),)),
        (5.0, (("a", 0.7), ("b", 0.7))),
    ],
)
def test_plans_that_cannot_work_are_refused(total: float, stages: tuple[tuple[str, float], ...]) -> None:
    with pytest.raises(ValueError):
        ShutdownPlan(total=total, stages=stages)


async def test_stages_run_in_order_and_unused_time_passes_on() -> None:
    calls: list[tuple[str, float]] = []

    def action(name: str) -> lifecycle.StopAction:
        async def run(budget: float) -> None:
            calls.append((name, budget))

        return run

    results = await PLAN.run({"not_serving": action("ns"), "stop_accepting": action("sa"), "hand_back": action("hb")})
    assert [name for name, _ in calls] == ["ns", "sa", "hb"]
    # Instant stages leave their time to the next: stop_accepting may use until 0.3s, hand_back until 1.0s.
    assert calls[0][1] == pytest.approx(0.1, abs=0.05)
    assert calls[1][1] == pytest.approx(0.3, abs=0.05)
    assert calls[2][1] == pytest.approx(1.0, abs=0.05)
    assert [(r.name, r.outcome) for r in results] == [
        ("not_serving", StageOutcome.DONE),
        ("stop_accepting", StageOutcome.DONE),
        ("drain", StageOutcome.SKIPPED),
        ("hand_back", StageOutcome.DONE),
    ]


async def test_an_overrunning_stage_is_cut_and_the_next_still_runs(caplog: pytest.LogCaptureFixture) -> None:
    cancelled = asyncio.Event()
    later: list[str] = []

    async def stuck(budget: float) -> None:
        try:
            await asyncio.Event().wait()
        finally:
            cancelled.set()

    async def hand_back(budget: float) -> None:
        later.append("ran")

    started = time.monotonic()
    results = await PLAN.run({"drain": stuck, "hand_back": hand_back})
    elapsed = time.monotonic() - started
    assert cancelled.is_set() and later == ["ran"]
    drain = next(r for r in results if r.name == "drain")
    assert drain.outcome is StageOutcome.OVERRAN
    assert 0.7 <= elapsed < PLAN.total + 0.2  # cut at the drain deadline (0.8s), well within the total
    assert "stop stage overran its budget" in caplog.text


async def test_a_failing_action_does_not_stop_the_others(caplog: pytest.LogCaptureFixture) -> None:
    done: list[str] = []

    async def broken(budget: float) -> None:
        raise RuntimeError("boom")

    async def fine(budget: float) -> None:
        await asyncio.sleep(0)
        done.append("fine")

    async def cancelled_task(budget: float) -> None:
        task = asyncio.create_task(asyncio.Event().wait())
        task.cancel()
        await task  # awaiting a task it cancelled: a failure of this action, not of the stop

    results = await PLAN.run({"drain": [broken, fine], "hand_back": [cancelled_task, fine]})
    assert done == ["fine", "fine"]
    outcomes = {r.name: r.outcome for r in results}
    assert outcomes["drain"] is StageOutcome.FAILED
    assert outcomes["hand_back"] is StageOutcome.FAILED
    assert "boom" in caplog.text


async def test_unknown_stage_names_are_refused() -> None:
    async def nothing(budget: float) -> None:
        return None

    with pytest.raises(ValueError, match="drian"):
        await PLAN.run({"drian": nothing})


class FakeApp:
    def __init__(self, *, plan: ShutdownPlan = PLAN, start_error: BaseException | None = None) -> None:
        self.shutdown_plan = plan
        self.start_error = start_error
        self.block_start = False
        self.block_stop = False
        self.events: list[str] = []
        self.on_start: list[Any] = []

    async def start(self) -> None:
        self.events.append("start")
        for hook in self.on_start:
            hook()
        if self.start_error is not None:
            raise self.start_error
        if self.block_start:
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                self.events.append("start cancelled")
                raise
        self.events.append("started")

    async def stop(self) -> None:
        self.events.append("stop")
        if self.block_stop:
            await asyncio.Event().wait()
        self.events.append("stopped")


async def test_serve_starts_waits_for_stop_and_stops() -> None:
    app = FakeApp()
    stop = asyncio.Event()
    serving = asyncio.create_task(lifecycle.serve(app, stop))
    await asyncio.sleep(0.01)
    assert app.events == ["start", "started"]
    stop.set()
    assert await serving == lifecycle.EXIT_OK
    assert app.events == ["start", "started", "stop", "stopped"]


async def test_a_stop_during_start_cancels_the_start() -> None:
    app = FakeApp()
    app.block_start = True
    stop = asyncio.Event()
    serving = asyncio.create_task(lifecycle.serve(app, stop))
    await asyncio.sleep(0.01)
    stop.set()
    assert await asyncio.wait_for(serving, 2) == lifecycle.EXIT_OK
    assert app.events == ["start", "start cancelled", "stop", "stopped"]


async def test_a_failed_start_is_stopped_and_exits_non_zero(caplog: pytest.LogCaptureFixture) -> None:
    app = FakeApp(start_error=OSError("address in use"))
    assert await lifecycle.serve(app, asyncio.Event()) == lifecycle.EXIT_FAILED
    assert app.events == ["start", "stop", "stopped"]
    assert "cannot start: address in use" in caplog.text


async def test_invalid_settings_at_start_propagate_after_stopping() -> None:
    app = FakeApp(start_error=SettingsError("invalid settings"))
    with pytest.raises(SettingsError):
        await lifecycle.serve(app, asyncio.Event())
    assert app.events[-1] == "stopped"


async def test_a_stop_past_the_final_deadline_is_abandoned() -> None:
    app = FakeApp(plan=ShutdownPlan(total=0.05, final_slack=0.05))
    app.block_stop = True
    stop = asyncio.Event()
    stop.set()
    started = time.monotonic()
    assert await lifecycle.serve(app, stop) == lifecycle.EXIT_FAILED
    assert time.monotonic() - started < 1.0
    assert "stopped" not in app.events


def test_the_watchdog_exits_after_its_deadline_unless_disarmed() -> None:
    exits: list[int] = []
    fired = threading.Event()

    def hard_exit(code: int) -> None:
        exits.append(code)
        fired.set()

    lifecycle.Watchdog(0.01, hard_exit=hard_exit).arm()
    assert fired.wait(2.0)
    assert exits == [lifecycle.EXIT_FORCED]

    quiet = lifecycle.Watchdog(0.05, hard_exit=hard_exit)
    quiet.arm()
    quiet.disarm()
    time.sleep(0.15)
    assert exits == [lifecycle.EXIT_FORCED]


@pytest.fixture
def keep_logging(monkeypatch: pytest.MonkeyPatch) -> None:
    # run_until_signal configures process logging; keep pytest's handlers in place.
    monkeypatch.setattr("conveyor.logs.configure", lambda *args, **kwargs: None)


@pytest.mark.usefixtures("keep_logging")
def test_run_until_signal_stops_on_a_signal_and_disarms_the_watchdog() -> None:
    exits: list[int] = []
    app = FakeApp(plan=ShutdownPlan(total=0.05, final_slack=0.05))
    app.on_start.append(lambda: os.kill(os.getpid(), signal.SIGUSR1))
    code = lifecycle.run_until_signal(lambda: app, service="test", signals=(signal.SIGUSR1,), hard_exit=exits.append)
    assert code == lifecycle.EXIT_OK
    assert app.events == ["start", "started", "stop", "stopped"]
    time.sleep(0.2)  # past the final deadline: a forgotten watchdog would have fired
    assert exits == []


@pytest.mark.usefixtures("keep_logging")
def test_a_second_signal_exits_at_once() -> None:
    exits: list[int] = []
    app = FakeApp()
    app.on_start.append(lambda: os.kill(os.getpid(), signal.SIGUSR1))

    original_stop = app.stop

    async def stop_signalled_again() -> None:
        os.kill(os.getpid(), signal.SIGUSR1)
        await asyncio.sleep(0.05)  # let the loop handle it
        await original_stop()

    app.stop = stop_signalled_again  # type: ignore[method-assign]
    code = lifecycle.run_until_signal(lambda: app, service="test", signals=(signal.SIGUSR1,), hard_exit=exits.append)
    assert exits == [lifecycle.EXIT_FORCED]
    assert code == lifecycle.EXIT_OK  # the fake exit returned; a real one ends the process


@pytest.mark.usefixtures("keep_logging")
def test_invalid_settings_exit_2_with_the_message(capsys: pytest.CaptureFixture[str]) -> None:
    def make_app() -> FakeApp:
        raise SettingsError("invalid settings:\n  CONVEYOR_X='y': not an integer")

    assert lifecycle.run_until_signal(make_app, service="conveyor-test") == lifecycle.EXIT_SETTINGS
    assert "conveyor-test: invalid settings" in capsys.readouterr().err
