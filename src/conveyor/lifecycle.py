"""Process lifecycle shared by the services: ordered stop stages on one budget, signals, a final deadline.

A `ShutdownPlan` splits one total (seconds) between ordered stages by share. Stage i must end by
`total * (share_0 + ... + share_i)` after the stop began, so time a stage does not use passes to
the next ones, and a stage that overruns is logged and cut (cancelled) at its deadline: the whole
stop ends within `total`. Every stage runs even when an earlier one failed or overran.

`run_until_signal(make_app, service=...)` runs one asyncio loop: build the app, `start()`, wait for
SIGTERM/SIGINT, `stop()`, return an exit code. From the first signal a watchdog thread exits the
process at `plan.final_deadline` whatever the loop is doing (a blocked thread, a stuck executor);
a second signal exits at once. `DEFAULT_PLAN.final_deadline` stays below the Kubernetes
`terminationGracePeriodSeconds` of every pod in deploy/kubernetes (a test checks it).

Round-2 use, in an app::

    class TriggerApp:
        shutdown_plan = lifecycle.DEFAULT_PLAN

        async def stop(self) -> None:
            await self.shutdown_plan.run({
                "not_serving": self._not_serving,        # health NOT_SERVING, receivers answer 503
                "stop_accepting": self._stop_listeners,  # close listeners, stop fetching
                "drain": [self._drain_rpcs, self._drain_tasks],   # concurrent within the stage
                "hand_back": self._close_bus,            # nak what is held, drain NATS
            })
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Protocol

from conveyor import logs
from conveyor.settings import SettingsError

log = logging.getLogger(__name__)

# A stage action gets the seconds left for its stage (to pass on, e.g. as a gRPC grace period;
# pass a little less so the action ends before it is cut).
StopAction = Callable[[float], Awaitable[object]]

DEFAULT_TOTAL = 20.0
# After `total`, time for the loop to finish its own teardown before the watchdog exits anyway.
DEFAULT_FINAL_SLACK = 3.0
DEFAULT_STAGES: tuple[tuple[str, float], ...] = (
    ("not_serving", 0.1),  # health NOT_SERVING; load balancers and clients move away
    ("stop_accepting", 0.15),  # listeners closed, consumers stop fetching
    ("drain", 0.5),  # in-flight RPCs, webhooks, messages and runs finish
    ("hand_back", 0.25),  # what is still held goes back (nak), bus drained, clients closed
)

EXIT_OK = 0
EXIT_FAILED = 1  # start failed, or stopping failed / overran its final deadline
EXIT_SETTINGS = 2  # invalid settings (fail fast)
EXIT_FORCED = 124  # the watchdog or a second signal ended the process


class StageOutcome(Enum):
    DONE = "done"
    OVERRAN = "overran"  # cut at its deadline
    FAILED = "failed"  # an action raised
    SKIPPED = "skipped"  # no action for this stage


@dataclass(frozen=True)
class StageResult:
    name: str
    budget: float  # seconds the stage had when it started
    elapsed: float
    outcome: StageOutcome


@dataclass(frozen=True)
class ShutdownPlan:
    """Ordered stop stages, each with a share of `total`; shares add up to at most 1."""

    total: float = DEFAULT_TOTAL
    stages: tuple[tuple[str, float], ...] = DEFAULT_STAGES
    final_slack: float = DEFAULT_FINAL_SLACK

    def __post_init__(self) -> None:
        if self.total <= 0:
            raise ValueError("total must be positive")
        if self.final_slack < 0:
            raise ValueError("final_slack must not be negative")
        names = [name for name, _ in self.stages]
        if not names or len(set(names)) != len(names):
            raise ValueError("stages must be a non-empty list of distinct names")
        if any(share <= 0 for _, share in self.stages):
            raise ValueError("every stage needs a positive share")
        if sum(share for _, share in self.stages) > 1.0 + 1e-9:
            raise ValueError("stage shares add up to more than 1")

    @property
    def final_deadline(self) -> float:
        """Seconds after the stop began at which the process exits whatever is still running."""
        return self.total + self.final_slack

    def with_total(self, total: float) -> ShutdownPlan:
        return ShutdownPlan(total, self.stages, self.final_slack)

    def deadlines(self) -> dict[str, float]:
        """Stage name -> seconds after the stop began by which it must have ended."""
        result: dict[str, float] = {}
        elapsed_share = 0.0
        for name, share in self.stages:
            elapsed_share += share
            result[name] = self.total * min(elapsed_share, 1.0)
        return result

    async def run(
        self,
        actions: Mapping[str, StopAction | Sequence[StopAction]],
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> list[StageResult]:
        """Run the stages in order, each stage's actions concurrently, each stage under its deadline.

        Failures and overruns are logged, never raised: stopping always goes on to the next stage.
        A stage without an action is skipped. Unknown stage names raise ValueError (typos).
        """
        unknown = set(actions) - {name for name, _ in self.stages}
        if unknown:
            raise ValueError(f"unknown stop stage(s): {', '.join(sorted(unknown))}")
        started = clock()
        results: list[StageResult] = []
        for name, deadline in self.deadlines().items():
            given = actions.get(name)
            stage_actions = [] if given is None else [given] if callable(given) else list(given)
            begun = clock()
            budget = max(0.0, started + deadline - begun)
            if not stage_actions:
                results.append(StageResult(name, budget, 0.0, StageOutcome.SKIPPED))
                continue
            outcome = await _run_stage(name, stage_actions, budget)
            results.append(StageResult(name, budget, clock() - begun, outcome))
        log.info(
            "stop stages finished",
            extra={
                "elapsed_s": round(clock() - started, 3),
                "stages": ", ".join(f"{r.name}={r.outcome.value}:{r.elapsed:.2f}s" for r in results),
            },
        )
        return results


async def _run_stage(name: str, actions: list[StopAction], budget: float) -> StageOutcome:
    try:
        async with asyncio.timeout(budget) as scope:
            outcomes = await asyncio.gather(*(action(budget) for action in actions), return_exceptions=True)
    except TimeoutError:
        if not scope.expired():
            raise
        log.warning("stop stage overran its budget; cut", extra={"stage": name, "budget_s": round(budget, 3)})
        return StageOutcome.OVERRAN
    failed = False
    for outcome in outcomes:
        # An action ending in CancelledError (e.g. it awaited a task it had cancelled) failed; the
        # stage itself being cancelled raises out of gather above instead.
        if isinstance(outcome, BaseException):
            failed = True
            log.error("stop stage failed", extra={"stage": name}, exc_info=outcome)
    return StageOutcome.FAILED if failed else StageOutcome.DONE


DEFAULT_PLAN = ShutdownPlan()


class Service(Protocol):
    """What `run_until_signal` runs: the composition root of a service."""

    @property
    def shutdown_plan(self) -> ShutdownPlan: ...

    async def start(self) -> None:
        """Start everything; may be cancelled (a signal arrived first), after which `stop()` still runs."""

    async def stop(self) -> None:
        """Stop within `shutdown_plan.total` (use `shutdown_plan.run`); must cope with a partial start."""


async def serve(app: Service, stop: asyncio.Event) -> int:
    """Start `app`, wait for `stop`, stop it within its plan's final deadline; the exit code.

    `stop` set while `start()` is still running cancels the start. A start that fails is logged,
    followed by `stop()`, and returns EXIT_FAILED (SettingsError propagates: the caller exits 2).
    """
    plan = app.shutdown_plan
    starting = asyncio.ensure_future(app.start())
    stopping = asyncio.ensure_future(stop.wait())
    code = EXIT_OK
    try:
        await asyncio.wait([starting, stopping], return_when=asyncio.FIRST_COMPLETED)
        if not starting.done():
            log.info("stop requested while starting; start abandoned")
            starting.cancel()
        try:
            await starting
        except asyncio.CancelledError:
            if not stop.is_set():
                raise
        except SettingsError:
            raise
        except Exception as exc:
            log.error("cannot start: %s", exc, exc_info=True)
            code = EXIT_FAILED
        else:
            await stopping
    finally:
        for waiter in (starting, stopping):
            if not waiter.done():
                waiter.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await waiter
        try:
            async with asyncio.timeout(plan.final_deadline):
                await app.stop()
        except TimeoutError:
            log.error("stopping overran the final deadline", extra={"final_deadline_s": plan.final_deadline})
            code = EXIT_FAILED
        except Exception:
            log.exception("stopping failed")
            code = EXIT_FAILED
    return code


def _hard_exit(code: int) -> None:
    with contextlib.suppress(Exception):
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(code)


class Watchdog:
    """Ends the process `seconds` after `arm()` unless `disarm()` comes first (runs in its own thread)."""

    def __init__(self, seconds: float, *, hard_exit: Callable[[int], None] = _hard_exit) -> None:
        self.seconds = seconds
        self._exit = hard_exit
        self._timer: threading.Timer | None = None

    def arm(self) -> None:
        if self._timer is None:
            self._timer = threading.Timer(self.seconds, self.fire)
            self._timer.daemon = True
            self._timer.start()

    def fire(self) -> None:
        log.error("final shutdown deadline passed; exiting now", extra={"final_deadline_s": self.seconds})
        self._exit(EXIT_FORCED)

    def disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()


def run_until_signal(
    make_app: Callable[[], Service],
    *,
    service: str,
    signals: Sequence[signal.Signals] = (signal.SIGTERM, signal.SIGINT),
    hard_exit: Callable[[int], None] = _hard_exit,
) -> int:
    """Run one service process to its end; returns the exit code (`raise SystemExit(code)` with it).

    `make_app()` runs inside the loop, so it may read settings (SettingsError -> message on stderr and
    EXIT_SETTINGS) and create loop-bound objects. The first signal stops the app and arms the watchdog
    (exit EXIT_FORCED at `final_deadline`); a second one exits EXIT_FORCED at once.
    """
    watchdog: Watchdog | None = None

    async def main() -> int:
        nonlocal watchdog
        app = make_app()
        watchdog = Watchdog(app.shutdown_plan.final_deadline, hard_exit=hard_exit)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()

        def on_signal(signum: signal.Signals) -> None:
            if stop.is_set():
                log.warning("second signal: exiting now", extra={"signal": signum.name})
                hard_exit(EXIT_FORCED)
                return
            log.info("stopping", extra={"signal": signum.name})
            stop.set()
            assert watchdog is not None
            watchdog.arm()

        for sig in signals:
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, on_signal, sig)
        try:
            return await serve(app, stop)
        finally:
            # Covers the end of asyncio.run too (task cancellation, executor shutdown).
            watchdog.arm()

    # Until the app has read its settings and reconfigured logging.
    logs.configure(service)
    try:
        code = asyncio.run(main())
    except SettingsError as exc:
        print(f"{service}: {exc}", file=sys.stderr)
        code = EXIT_SETTINGS
    except KeyboardInterrupt:  # SIGINT not among `signals`
        code = EXIT_OK
    finally:
        if watchdog is not None:
            watchdog.disarm()
    log.info("stopped", extra={"service": service, "exit_code": code})
    return code
