"""Retrying Kubernetes calls that failed for reasons that pass (timeouts, 5xx, 429)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

from conveyor_deployer.domain.kube_errors import ErrorKind, KubeApiError

T = TypeVar("T")

Sleep = Callable[[float], Awaitable[None]]
OnRetry = Callable[[KubeApiError, int, float], Awaitable[None]]


@dataclass(frozen=True)
class RetryPolicy:
    """`attempts` tries in all; waits grow from `initial_backoff` to `max_backoff` (with jitter)."""

    attempts: int = 5
    initial_backoff: float = 0.5
    max_backoff: float = 10.0
    jitter: Callable[[], float] = field(default=lambda: random.uniform(0.5, 1.0))

    def backoff(self, failed_attempts: int) -> float:
        """Wait after the `failed_attempts`-th failure (1-based)."""
        ceiling = min(self.max_backoff, self.initial_backoff * 2.0 ** (failed_attempts - 1))
        return ceiling * self.jitter()


async def retry_transient(
    call: Callable[[], Awaitable[T]],
    policy: RetryPolicy,
    *,
    sleep: Sleep = asyncio.sleep,
    on_retry: OnRetry | None = None,
) -> T:
    """Await `call()`, retrying transient KubeApiErrors; the last error propagates."""
    attempt = 1
    while True:
        try:
            return await call()
        except KubeApiError as exc:
            if exc.kind is not ErrorKind.TRANSIENT or attempt >= policy.attempts:
                raise
            delay = policy.backoff(attempt)
            if on_retry is not None:
                await on_retry(exc, attempt, delay)
            await sleep(delay)
            attempt += 1
