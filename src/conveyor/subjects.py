"""The bus's names: subjects, streams, durables, buckets and headers.

Pure constants, so use cases and domain code can name a subject without importing the NATS
client (conveyor.bus re-exports every name here).
"""

from __future__ import annotations

IMAGE_PUSHED_SUBJECT = "conveyor.registry.pushed"
DEPLOY_REQUESTED_SUBJECT = "conveyor.deploy.requested"
RUN_EVENTS_SUBJECT = "conveyor.runs.events"
PIPELINE_CHANGED_SUBJECT = "conveyor.pipelines.changed"
# Core NATS, no stream: "run log entries were stored" (payload: the run's name), from the config replica that
# stored them to TailRunLogs followers in every replica.
RUN_LOGGED_SUBJECT = "conveyor.runs.logged"

REGISTRY_EVENTS_STREAM = "CONVEYOR_REGISTRY_EVENTS"
DEPLOY_REQUESTS_STREAM = "CONVEYOR_DEPLOY_REQUESTS"
RUN_EVENTS_STREAM = "CONVEYOR_RUN_EVENTS"
# What a consumer could never process, one subject per consumer: conveyor.deadletters.<durable>.
DEAD_LETTERS_STREAM = "CONVEYOR_DEAD_LETTERS"
DEAD_LETTERS_SUBJECT_PREFIX = "conveyor.deadletters"
DEAD_LETTERS_SUBJECTS = DEAD_LETTERS_SUBJECT_PREFIX + ".>"

TRIGGER_MATCHER_DURABLE = "conveyor-trigger-matcher"
DEPLOYER_DURABLE = "conveyor-deployer"
CONFIG_RUN_EVENTS_DURABLE = "conveyor-config-runs"

# The trigger's ListEvents history: one RegistryEvent per handled push, on a subject per event id
# (one message kept per subject, so handling an event again replaces its entry); not in STREAMS, as
# the trigger creates it with limits of its own.
EVENT_HISTORY_STREAM = "CONVEYOR_EVENT_HISTORY"
EVENT_HISTORY_SUBJECT_PREFIX = "conveyor.trigger.history"
EVENT_HISTORY_SUBJECTS = EVENT_HISTORY_SUBJECT_PREFIX + ".>"

# KV bucket in which the trigger records which push (registry/repo@digest) it has
# already turned into runs, so the same image under several tags deploys once.
PUSHES_BUCKET = "conveyor_pushes"

MSG_ID_HEADER = "Nats-Msg-Id"
TYPE_HEADER = "Conveyor-Type"

# A dead letter is the original's data and headers plus these (conveyor.dead_letters writes and reads them).
DEAD_HEADER_PREFIX = "Conveyor-Dead-"
DEAD_CONSUMER_HEADER = "Conveyor-Dead-Consumer"
DEAD_STREAM_HEADER = "Conveyor-Dead-Stream"
DEAD_SUBJECT_HEADER = "Conveyor-Dead-Subject"
DEAD_SEQUENCE_HEADER = "Conveyor-Dead-Sequence"
DEAD_DELIVERIES_HEADER = "Conveyor-Dead-Deliveries"
DEAD_REASON_HEADER = "Conveyor-Dead-Reason"
DEAD_ERROR_HEADER = "Conveyor-Dead-Error"
# The original's Nats-Msg-Id (the dead letter's own id names the consumer and the original's sequence).
DEAD_MSG_ID_HEADER = "Conveyor-Dead-Msg-Id"

# Deliveries of one message to a durable consumer before it is dead-lettered (CONVEYOR_BUS_MAX_DELIVER).
DEFAULT_MAX_DELIVER = 5

DEFAULT_DUPLICATE_WINDOW = 15 * 60.0
DEFAULT_MAX_AGE = 7 * 24 * 3600.0

STREAMS: dict[str, str] = {
    REGISTRY_EVENTS_STREAM: IMAGE_PUSHED_SUBJECT,
    DEPLOY_REQUESTS_STREAM: DEPLOY_REQUESTED_SUBJECT,
    RUN_EVENTS_STREAM: RUN_EVENTS_SUBJECT,
    DEAD_LETTERS_STREAM: DEAD_LETTERS_SUBJECTS,
}
