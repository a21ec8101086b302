"""Trigger metrics (served on GET /metrics of the webhook listener, and on CONVEYOR_TRIGGER_METRICS_ADDR)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

WEBHOOK_REQUESTS = Counter(
    "conveyor_trigger_webhook_requests_total",
    "Webhook requests answered, by format and HTTP status",
    ["format", "code"],
)
WEBHOOK_REJECTED = Counter(
    "conveyor_trigger_webhook_rejected_total",
    "Webhook requests rejected, by format and reason (unauthorized, too_large, malformed_json, unknown_shape, "
    "missing_registry, missing_repository, invalid_reference, unknown_format, bus_unavailable, ...)",
    ["format", "reason"],
)
WEBHOOK_EVENTS = Counter(
    "conveyor_trigger_webhook_events_total",
    "Events in accepted webhooks, by format and outcome (stored, duplicate, ignored)",
    ["format", "outcome"],
)
MATCH_DECISIONS = Counter("conveyor_trigger_match_decisions_total", "Match decisions taken, by outcome", ["outcome"])
BUS_REJECTED = Counter(
    "conveyor_trigger_bus_rejected_total",
    "Bus messages dropped because they can never be processed, by subject and reason",
    ["subject", "reason"],
)
DIGEST_RESOLUTIONS = Counter(
    "conveyor_trigger_digest_resolutions_total", "Digests resolved for pushes without one, by result", ["result"]
)
PIPELINE_SYNCS = Counter(
    "conveyor_trigger_pipeline_syncs_total", "Full pipeline loads from the config service, by result", ["result"]
)
PIPELINES_CACHED = Gauge("conveyor_trigger_pipelines_cached", "Pipelines in the matching index")
PIPELINES_EXCLUDED = Gauge(
    "conveyor_trigger_pipelines_excluded", "Pipelines kept out of matching (e.g. a tag regex that does not compile)"
)
PIPELINE_CACHE_SYNCED = Gauge(
    "conveyor_trigger_pipeline_cache_last_sync_timestamp_seconds", "Time of the last successful full pipeline load"
)
