"""Deployer-specific Prometheus metrics (the shared ones are in `conveyor.metrics`)."""

from __future__ import annotations

import datetime as dt
import functools
import threading
import time
from collections.abc import Callable

from prometheus_client import Counter, Gauge, Histogram

RUNS = Counter("conveyor_deployer_runs_total", "Runs the deployer finished, by final state", ["state"])
RUN_SECONDS = Histogram(
    "conveyor_deployer_run_seconds",
    "Time from picking a run up to its terminal event",
    buckets=(0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600),
)
PUSH_TO_READY = Histogram(
    "conveyor_push_to_ready_seconds",
    "Time from the push the registry reported to the verified rollout, for PUSH runs that SUCCEEDED, by cluster",
    ["cluster"],
    buckets=(1, 2, 5, 10, 15, 20, 30, 45, 60, 90, 120, 180, 300, 600, 900, 1800, 3600),
)
PATCHES = Counter(
    "conveyor_deployer_patches_total",
    "JSON Patches the deployer sent, by workload kind and purpose",
    ["kind", "purpose"],
)
KUBE_RETRIES = Counter(
    "conveyor_deployer_kube_retries_total", "Kubernetes calls retried after a transient failure", ["cluster"]
)
RUNS_HELD = Gauge("conveyor_deployer_runs_held", "Deploy requests received and not yet settled (queued or running)")
RUNS_ACTIVE = Gauge("conveyor_deployer_runs_active", "Runs currently deploying or verifying")
RUNS_OVERDUE = Gauge(
    "conveyor_deployer_runs_overdue",
    "Held runs older than their rollout timeout, by phase: queued (since received) or running (since picked up)",
    ["phase"],
)


def observe_push_to_ready(cluster: str, pushed_at: dt.datetime, ready_at: dt.datetime) -> None:
    # A registry clock ahead of ours would give a negative figure: count it as instant.
    PUSH_TO_READY.labels(cluster=cluster).observe(max((ready_at - pushed_at).total_seconds(), 0.0))


class InFlight:
    """The runs the dispatcher holds, so `conveyor_deployer_runs_overdue` is computed at scrape time.

    One series per phase rather than one per run (which would churn). Updated on the event loop and
    read from the scrape thread, hence the lock.
    """

    PHASES = ("queued", "running")

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._runs: dict[str, tuple[str, float, float]] = {}  # run -> (phase, since, rollout timeout)

    def queued(self, run: str, timeout: float) -> None:
        with self._lock:
            self._runs[run] = ("queued", self._clock(), timeout)

    def running(self, run: str, timeout: float) -> None:
        with self._lock:
            self._runs[run] = ("running", self._clock(), timeout)

    def settled(self, run: str) -> None:
        with self._lock:
            self._runs.pop(run, None)

    def overdue(self, phase: str) -> int:
        now = self._clock()
        with self._lock:
            return sum(1 for kind, since, timeout in self._runs.values() if kind == phase and now - since > timeout)


IN_FLIGHT = InFlight()
for _phase in InFlight.PHASES:
    RUNS_OVERDUE.labels(phase=_phase).set_function(functools.partial(IN_FLIGHT.overdue, _phase))
