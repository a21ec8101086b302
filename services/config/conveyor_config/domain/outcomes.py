"""Outcomes of storage operations, which the use cases turn into answers or errors."""

from __future__ import annotations

import enum


class CreateOutcome(enum.Enum):
    CREATED = "created"
    ALREADY_EXISTS = "already_exists"
    # The request id was seen before: the stored response is returned instead.
    REPLAYED = "replayed"


class DeleteOutcome(enum.Enum):
    DELETED = "deleted"
    NOT_FOUND = "not_found"
    STALE_ETAG = "stale_etag"
    ACTIVE_RUNS = "active_runs"
    NOT_TERMINAL = "not_terminal"


class StartOutcome(enum.Enum):
    STARTED = "started"
    REPLAYED = "replayed"
    NOT_FOUND = "not_found"
    DISABLED = "disabled"
    # The pipeline changed between reading it and creating the run: rebuild the request.
    CHANGED = "changed"


class EventOutcome(enum.Enum):
    STORED = "stored"
    DUPLICATE = "duplicate"
    NO_PIPELINE = "no_pipeline"
    # For a run that was deleted (it has a tombstone): dropped, so it stays deleted.
    DELETED = "deleted"
