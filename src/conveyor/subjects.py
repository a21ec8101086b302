"""The bus's names: subjects, streams, durables, buckets and headers.

Pure constants, so use cases and domain code can name a subject without importing the NATS
client (conveyor.bus re-exports every name here).
"""

from __future__ import annotations

IMAGE_PUSHED_SUBJECT = "conveyor.registry.pushed"
DEPLOY_REQUESTED_SUBJECT = "conveyor.deploy.requested"
RUN_EVENTS_SUBJECT = "conveyor.runs.events"
PIPELINE_CHANGED_SUBJECT = "conveyor.pipelines.changed"

REGISTRY_EVENTS_STREAM = "CONVEYOR_REGISTRY_EVENTS"
DEPLOY_REQUESTS_STREAM = "CONVEYOR_DEPLOY_REQUESTS"
RUN_EVENTS_STREAM = "CONVEYOR_RUN_EVENTS"

TRIGGER_MATCHER_DURABLE = "conveyor-trigger-matcher"
DEPLOYER_DURABLE = "conveyor-deployer"
CONFIG_RUN_EVENTS_DURABLE = "conveyor-config-runs"

# KV bucket in which the trigger records which push (registry/repo@digest) it has
# already turned into runs, so the same image under several tags deploys once.
PUSHES_BUCKET = "conveyor_pushes"

MSG_ID_HEADER = "Nats-Msg-Id"
TYPE_HEADER = "Conveyor-Type"

DEFAULT_DUPLICATE_WINDOW = 15 * 60.0
DEFAULT_MAX_AGE = 7 * 24 * 3600.0

STREAMS: dict[str, str] = {
    REGISTRY_EVENTS_STREAM: IMAGE_PUSHED_SUBJECT,
    DEPLOY_REQUESTS_STREAM: DEPLOY_REQUESTED_SUBJECT,
    RUN_EVENTS_STREAM: RUN_EVENTS_SUBJECT,
}
