"""conveyor.bus.consume_forever: restart with backoff, health reports, clean stop (no real waiting)."""

from __future__ import annotations

import asyncio

import pytest

from conveyor import bus
from conveyor.retry import RetryPolicy

POLICY = RetryPolicy(initial=1.0, maximum=4.0, jitter=0.0)


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


async def test_a_crashing_consumer_is_restarted_with_backoff_and_reported(caplog: pytest.LogCaptureFixture) -> None:
    time = FakeTime()
    health: list[bool] = []
    runs: list[int] = []

    async def consume() -> None:
        runs.append(len(runs) + 1)
        if len(runs) < 4:
            raise ConnectionError(f"crash {len(runs)}")

    await bus.consume_forever(
        "test-consumer", consume, policy=POLICY, on_health=health.append, sleep=time.sleep, clock=time.clock
    )
    assert runs == [1, 2, 3, 4]
    assert time.slept == [1.0, 2.0, 4.0]
    assert health == [False, True, False, True, False, True]
    assert "consumer crashed; restarting" in caplog.text
    assert "crash 3" in caplog.text  # the traceback is logged


async def test_async_health_callbacks_are_awaited() -> None:
    time = FakeTime()
    reports: list[bool] = []
    attempts = iter([RuntimeError("once")])

    async def consume() -> None:
        error = next(attempts, None)
        if error is not None:
            raise error

    async def on_health(healthy: bool) -> None:
        await asyncio.sleep(0)
        reports.append(healthy)

    await bus.consume_forever("c", consume, policy=POLICY, on_health=on_health, sleep=time.sleep, clock=time.clock)
    assert reports == [False, True]


async def test_a_consumer_that_ran_long_enough_restarts_from_the_shortest_wait() -> None:
    time = FakeTime()
    runs = 0

    async def consume() -> None:
        nonlocal runs
        runs += 1
        if runs == 3:
            time.now += 120.0  # a long healthy run before this crash
        if runs < 5:
            raise RuntimeError("crash")

    await bus.consume_forever("c", consume, policy=POLICY, stable_after=60.0, sleep=time.sleep, clock=time.clock)
    assert time.slept == [1.0, 2.0, 1.0, 2.0]


async def test_gives_up_when_the_policy_does() -> None:
    time = FakeTime()
    health: list[bool] = []

    async def consume() -> None:
        raise RuntimeError("never works")

    policy = RetryPolicy(initial=1.0, jitter=0.0, max_attempts=3)
    with pytest.raises(RuntimeError, match="never works"):
        await bus.consume_forever("c", consume, policy=policy, on_health=health.append, sleep=time.sleep)
    assert time.slept == [1.0, 2.0]
    assert health == [False, True, False, True]


async def test_stop_during_the_backoff_wait_ends_without_restarting() -> None:
    stop = asyncio.Event()
    runs = 0
    health: list[bool] = []

    async def consume() -> None:
        nonlocal runs
        runs += 1
        raise RuntimeError("crash")

    async def sleep_forever(seconds: float) -> None:
        await asyncio.Event().wait()

    task = asyncio.create_task(
        bus.consume_forever("c", consume, policy=POLICY, on_health=health.append, stop=stop, sleep=sleep_forever)
    )
    await asyncio.sleep(0.01)
    stop.set()
    await asyncio.wait_for(task, 1.0)
    assert runs == 1
    assert health == [False]


async def test_a_crash_while_stopping_is_not_restarted() -> None:
    stop = asyncio.Event()
    time = FakeTime()
    runs = 0

    async def consume() -> None:
        nonlocal runs
        runs += 1
        stop.set()
        raise RuntimeError("lost the connection while stopping")

    await bus.consume_forever("c", consume, policy=POLICY, stop=stop, sleep=time.sleep)
    assert runs == 1 and time.slept == []


async def test_cancellation_reaches_the_consumer_and_is_not_reported() -> None:
    health: list[bool] = []
    running = asyncio.Event()
    cleaned_up = asyncio.Event()

    async def consume() -> None:
        running.set()
        try:
            await asyncio.Event().wait()
        finally:
            cleaned_up.set()

    task = asyncio.create_task(bus.consume_forever("c", consume, on_health=health.append))
    await running.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert cleaned_up.is_set()
    assert health == []


async def test_a_consumer_that_returns_ends_the_loop() -> None:
    runs = 0

    async def consume() -> None:
        nonlocal runs
        runs += 1

    await bus.consume_forever("c", consume)
    assert runs == 1
