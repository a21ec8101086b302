"""conveyor.retry: waits, limits, and the three ways to use them (no real sleeping)."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from conveyor import retry
from conveyor.retry import Attempt, Backoff, RetryPolicy


class FakeTime:
    """A clock that only moves when something sleeps."""

    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_ceilings_grow_exponentially_up_to_the_maximum() -> None:
    policy = RetryPolicy(initial=0.5, maximum=4.0, multiplier=2.0)
    assert [policy.ceiling(n) for n in range(1, 7)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert policy.ceiling(10_000) == 4.0  # no overflow for long outages


def test_full_jitter_spreads_over_the_whole_interval_and_none_waits_the_ceiling() -> None:
    full = RetryPolicy(initial=1.0, maximum=8.0, jitter=1.0)
    assert full.delay(3, rand=lambda: 0.0) == 4.0
    assert full.delay(3, rand=lambda: 0.75) == 1.0
    assert full.delay(3, rand=lambda: 0.999) == pytest.approx(0.004)
    # jitter=0.5 is the deployer's former uniform(0.5, 1.0) spread.
    assert RetryPolicy(initial=1.0, jitter=0.5).delay(1, rand=lambda: 0.999) == pytest.approx(0.5005)
    assert RetryPolicy(initial=1.0, jitter=0.0).delay(2, rand=lambda: 0.9) == 2.0


@pytest.mark.parametrize(
    "bad",
    [
        {"initial": -1.0},
        {"maximum": -1.0},
        {"multiplier": 0.5},
        {"jitter": 1.5},
        {"max_attempts": 0},
        {"deadline": -1.0},
    ],
)
def test_policy_rejects_nonsense(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        RetryPolicy(**bad)  # type: ignore[arg-type]


def test_backoff_gives_up_after_max_attempts_and_reset_starts_over() -> None:
    backoff = Backoff(RetryPolicy(initial=1.0, jitter=0.0, max_attempts=3))
    assert backoff.next_delay() == 1.0
    assert backoff.next_delay() == 2.0
    assert backoff.next_delay() is None  # the third attempt failed: no fourth
    backoff.reset()
    assert backoff.next_delay() == 1.0


def test_backoff_honours_the_deadline_from_the_first_attempt() -> None:
    time = FakeTime()
    backoff = Backoff(RetryPolicy(initial=2.0, jitter=0.0, deadline=5.0), clock=time.clock)
    assert backoff.next_delay() == 2.0
    time.now += 2.0
    assert backoff.next_delay() is None  # 2s elapsed + 4s wait would end after 5s


def test_backoff_override_is_capped_at_the_maximum() -> None:
    backoff = Backoff(RetryPolicy(maximum=10.0))
    assert backoff.next_delay(override=3.0) == 3.0
    assert backoff.next_delay(override=60.0) == 10.0


async def test_retry_returns_after_transient_failures() -> None:
    time = FakeTime()
    calls = itertools.count(1)
    seen: list[tuple[str, int, float]] = []

    async def flaky() -> str:
        if next(calls) < 3:
            raise ConnectionError("down")
        return "up"

    def on_retry(exc: BaseException, attempt: int, delay: float) -> None:
        seen.append((str(exc), attempt, delay))

    policy = RetryPolicy(initial=0.5, jitter=0.0)
    result = await retry.retry(
        flaky, policy=policy, retry_on=ConnectionError, on_retry=on_retry, sleep=time.sleep, clock=time.clock
    )
    assert result == "up"
    assert time.slept == [0.5, 1.0]
    assert seen == [("down", 1, 0.5), ("down", 2, 1.0)]


async def test_retry_raises_the_last_error_when_the_policy_gives_up() -> None:
    time = FakeTime()
    failures: list[int] = []

    async def broken() -> None:
        failures.append(1)
        raise TimeoutError(f"attempt {len(failures)}")

    with pytest.raises(TimeoutError, match="attempt 4"):
        await retry.retry(broken, policy=RetryPolicy(max_attempts=4), sleep=time.sleep, clock=time.clock)
    assert len(failures) == 4 and len(time.slept) == 3


async def test_retry_does_not_retry_other_errors_or_cancellation() -> None:
    time = FakeTime()

    async def wrong() -> None:
        raise ValueError("bad input")

    with pytest.raises(ValueError):
        await retry.retry(wrong, policy=RetryPolicy(), retry_on=ConnectionError, sleep=time.sleep)
    assert time.slept == []

    async def cancelled() -> None:
        raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        await retry.retry(cancelled, policy=RetryPolicy(), retry_on=BaseException, sleep=time.sleep)
    assert time.slept == []


async def test_retry_with_a_predicate_an_async_hook_and_retry_after() -> None:
    time = FakeTime()
    hooks: list[int] = []

    class Status(Exception):
        def __init__(self, code: int, retry_after: float | None = None) -> None:
            super().__init__(code)
            self.code = code
            self.retry_after = retry_after

    replies = iter([Status(503, retry_after=7.0), Status(429), Status(404)])

    async def call() -> None:
        raise next(replies)

    async def on_retry(exc: BaseException, attempt: int, delay: float) -> None:
        hooks.append(attempt)

    def transient(exc: BaseException) -> bool:
        return isinstance(exc, Status) and exc.code in (429, 503)

    def asked(exc: BaseException) -> float | None:
        return exc.retry_after if isinstance(exc, Status) else None

    with pytest.raises(Status) as caught:
        await retry.retry(
            call,
            policy=RetryPolicy(initial=1.0, jitter=0.0),
            retry_on=transient,
            on_retry=on_retry,
            retry_after=asked,
            sleep=time.sleep,
            clock=time.clock,
        )
    assert caught.value.code == 404
    assert time.slept == [7.0, 2.0]  # the server's wait, then the policy's second one
    assert hooks == [1, 2]


async def test_attempts_sleep_between_iterations_and_end_when_the_policy_gives_up() -> None:
    time = FakeTime()
    seen: list[Attempt] = []
    async for attempt in retry.attempts(RetryPolicy(initial=1.0, jitter=0.0, max_attempts=3), sleep=time.sleep):
        seen.append(attempt)
    assert seen == [Attempt(1, 0.0), Attempt(2, 1.0), Attempt(3, 2.0)]
    assert time.slept == [1.0, 2.0]


async def test_attempts_stop_sleeping_once_the_loop_breaks() -> None:
    time = FakeTime()
    async for attempt in retry.attempts(RetryPolicy(initial=1.0, jitter=0.0), sleep=time.sleep):
        if attempt.number == 2:
            break
    assert time.slept == [1.0]
