"""The one backoff helper: exponential waits with jitter, a cap, and optional attempt/time limits.

Three ways to use a `RetryPolicy`:

- `await retry(fn, policy=..., retry_on=...)`: call `fn` until it succeeds, the error is not
  retryable, or the policy gives up; the last error propagates unchanged.
- `async for attempt in attempts(policy)`: a loop that makes its own attempt; the iterator sleeps
  between iterations and ends when the policy gives up.
- `Backoff(policy)`: `next_delay()` / `reset()` for loops that wait on their own terms (e.g. racing
  a stop event) or store the next attempt time.

The n-th wait (n = failures so far, 1-based) is drawn from `ceiling(n) * (1 - jitter * U[0, 1))` with
`ceiling(n) = min(maximum, initial * multiplier ** (n - 1))`: `jitter=1.0` is "full jitter" (spreads
retrying clients across the whole interval), `jitter=0.0` waits exactly the ceiling.
"""

from __future__ import annotations

import asyncio
import inspect
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")

Sleep = Callable[[float], Awaitable[None]]
Clock = Callable[[], float]
Random = Callable[[], float]
RetryOn = type[BaseException] | tuple[type[BaseException], ...] | Callable[[BaseException], bool]
OnRetry = Callable[[BaseException, int, float], Awaitable[None] | None]
RetryAfter = Callable[[BaseException], float | None]

# 2.0 ** 64 is already far above any cap; larger exponents only risk an OverflowError.
_MAX_EXPONENT = 64


@dataclass(frozen=True)
class RetryPolicy:
    """How long to wait between attempts and when to give up.

    `max_attempts` counts every try including the first (None: no limit). `deadline` is in seconds
    from the first attempt: a retry whose wait would end after it is not made (None: no limit).
    """

    initial: float = 0.5
    maximum: float = 10.0
    multiplier: float = 2.0
    jitter: float = 1.0
    max_attempts: int | None = None
    deadline: float | None = None

    def __post_init__(self) -> None:
        if self.initial < 0 or self.maximum < 0:
            raise ValueError("initial and maximum must not be negative")
        if self.multiplier < 1:
            raise ValueError("multiplier must be at least 1")
        if not 0.0 <= self.jitter <= 1.0:
            raise ValueError("jitter must be between 0 and 1")
        if self.max_attempts is not None and self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.deadline is not None and self.deadline < 0:
            raise ValueError("deadline must not be negative")

    def ceiling(self, failures: int) -> float:
        """The longest wait after the `failures`-th consecutive failure (1-based)."""
        exponent = min(max(failures, 1) - 1, _MAX_EXPONENT)
        return float(min(self.maximum, self.initial * self.multiplier**exponent))

    def delay(self, failures: int, rand: Random = random.random) -> float:
        """A wait after the `failures`-th failure, jittered by `rand()` in [0, 1)."""
        return self.ceiling(failures) * (1.0 - self.jitter * rand())

    def allows(self, failures: int, elapsed: float, delay: float) -> bool:
        """Whether another attempt may follow `failures` failures, `elapsed` seconds in, after `delay`."""
        if self.max_attempts is not None and failures >= self.max_attempts:
            return False
        return self.deadline is None or elapsed + delay <= self.deadline


class Backoff:
    """The waits of one retrying activity; `reset()` after a success starts again from `initial`."""

    def __init__(self, policy: RetryPolicy, *, clock: Clock = time.monotonic, rand: Random = random.random) -> None:
        self.policy = policy
        self.failures = 0
        self._clock = clock
        self._rand = rand
        self._started = clock()

    def next_delay(self, override: float | None = None) -> float | None:
        """Record a failure; the wait before the next attempt, or None when the policy gives up.

        `override` (e.g. a server's Retry-After) replaces the computed wait, capped at `maximum`.
        """
        self.failures += 1
        delay = self.policy.delay(self.failures, self._rand) if override is None else min(override, self.policy.maximum)
        delay = max(delay, 0.0)
        if not self.policy.allows(self.failures, self._clock() - self._started, delay):
            return None
        return delay

    def reset(self) -> None:
        self.failures = 0
        self._started = self._clock()


@dataclass(frozen=True)
class Attempt:
    number: int  # 1-based
    waited: float  # seconds slept before this attempt (0.0 for the first)


async def attempts(
    policy: RetryPolicy,
    *,
    sleep: Sleep = asyncio.sleep,
    clock: Clock = time.monotonic,
    rand: Random = random.random,
) -> AsyncIterator[Attempt]:
    """Yield before each attempt, sleeping the backoff between them; end when the policy gives up.

    Leave the loop (`break`/`return`) on success; coming back for another iteration counts as a failure::

        async for attempt in retry.attempts(policy):
            try:
                return await connect()
            except OSError as exc:
                log.warning("connect failed (attempt %d)", attempt.number, extra={"error": str(exc)})
        raise ConnectionError("gave up")
    """
    backoff = Backoff(policy, clock=clock, rand=rand)
    waited = 0.0
    while True:
        yield Attempt(backoff.failures + 1, waited)
        delay = backoff.next_delay()
        if delay is None:
            return
        await sleep(delay)
        waited = delay


def _retryable(retry_on: RetryOn, exc: BaseException) -> bool:
    if isinstance(retry_on, (tuple, type)):
        return isinstance(exc, retry_on)
    return retry_on(exc)


async def retry(
    fn: Callable[[], Awaitable[T]],
    *,
    policy: RetryPolicy,
    retry_on: RetryOn = Exception,
    on_retry: OnRetry | None = None,
    retry_after: RetryAfter | None = None,
    sleep: Sleep = asyncio.sleep,
    clock: Clock = time.monotonic,
    rand: Random = random.random,
) -> T:
    """Await `fn()` until it returns; the error that is not retryable, or the last one, propagates.

    `retry_on`: exception class(es) or a predicate. `on_retry(exc, attempt, delay)` (sync or async) runs
    before each wait, with the 1-based number of the attempt that failed. `retry_after(exc)` may return a
    wait the failure itself asks for (capped at `policy.maximum`). Cancellation is never retried.
    """
    backoff = Backoff(policy, clock=clock, rand=rand)
    while True:
        try:
            return await fn()
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            if not _retryable(retry_on, exc):
                raise
            delay = backoff.next_delay(retry_after(exc) if retry_after is not None else None)
            if delay is None:
                raise
            if on_retry is not None:
                result = on_retry(exc, backoff.failures, delay)
                if inspect.isawaitable(result):
                    await result
            await sleep(delay)
