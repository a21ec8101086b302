"""Deployer-specific Prometheus metrics (the shared ones are in `conveyor.metrics`)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

RUNS = Counter("conveyor_deployer_runs_total", "Runs the deployer finished, by final state", ["state"])
RUN_SECONDS = Histogram(
    "conveyor_deployer_run_seconds",
    "Time from picking a run up to its terminal event",
    buckets=(0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600),
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
