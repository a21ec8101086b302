"""In-process "this run changed" signals to TailRunLogs followers: from the RunEvent use case, and from
the run-log notices of other replicas (edges/run_logs.py)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

from conveyor.errors import Unavailable


class _Watch:
    def __init__(self, notifier: RunNotifier) -> None:
        self.notifier = notifier
        self.event = asyncio.Event()

    def clear(self) -> None:
        self.event.clear()

    async def wait(self, timeout: float) -> None:
        """Until the run changes, `timeout` passes, or the service shuts down (Unavailable)."""
        if not self.notifier.closed:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.event.wait(), timeout)
        if self.notifier.closed:
            raise Unavailable("the config service is shutting down; reconnect to keep following the run")


class RunNotifier:
    """In-process "this run changed" signals from the event consumer to TailRunLogs followers."""

    def __init__(self) -> None:
        self._watches: dict[str, set[_Watch]] = {}
        self.closed = False

    @contextlib.contextmanager
    def watch(self, run_name: str) -> Iterator[_Watch]:
        watch = _Watch(self)
        self._watches.setdefault(run_name, set()).add(watch)
        try:
            yield watch
        finally:
            watches = self._watches.get(run_name)
            if watches is not None:
                watches.discard(watch)
                if not watches:
                    del self._watches[run_name]

    def notify(self, run_name: str) -> None:
        for watch in self._watches.get(run_name, ()):
            watch.event.set()

    def notify_all(self) -> None:
        """Every run may have changed (e.g. notices from other replicas may have been missed)."""
        for watches in self._watches.values():
            for watch in watches:
                watch.event.set()

    def close(self) -> None:
        self.closed = True
        self.notify_all()
