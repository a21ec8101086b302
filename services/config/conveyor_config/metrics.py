"""Prometheus metrics specific to the config service (shared ones live in conveyor.metrics)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

RUN_EVENTS = Counter(
    "conveyor_config_run_events_total",
    "RunEvents handled, by outcome (stored, duplicate, no_pipeline, deleted, malformed)",
    ["outcome"],
)
OUTBOX_PUBLISHED = Counter("conveyor_config_outbox_published_total", "Outbox messages published to JetStream")
OUTBOX_FAILURES = Counter("conveyor_config_outbox_failures_total", "Failed attempts to publish outbox messages")
OUTBOX_PENDING = Gauge("conveyor_config_outbox_pending", "Outbox messages not yet published")
