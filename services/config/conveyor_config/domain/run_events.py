"""What a RunEvent off the bus must be before it is stored; anything else can never be stored.

Checked at the consumer, before storage: a timestamp out of range would otherwise fail in the
database on every redelivery, and an unknown enum value would be stored and shown as a number.
"""

from __future__ import annotations

from dataclasses import dataclass

from google.protobuf import timestamp_pb2

from conveyor import messages
from conveyor.errors import FieldViolation, InvalidArgument
from conveyor.names import parse_run_name
from conveyor.v1 import bus_pb2
from conveyor.v1.run_pb2 import Run, RunLogEntry

MAX_EVENT_ID_CHARS = 512

# Reasons (the `reason` label of conveyor_bad_input_total{source="run_events"}).
BAD_RUN_NAME = "bad_run_name"
BAD_EVENT_ID = "bad_event_id"
BAD_TIMESTAMP = "bad_timestamp"
BAD_ENUM = "bad_enum"


@dataclass(frozen=True)
class Problem:
    reason: str
    violation: FieldViolation


def timestamp_problem(ts: timestamp_pb2.Timestamp) -> str:
    """Why `ts` is not a valid Timestamp, or "" (the shared check of every bus message's timestamps)."""
    return messages.describe(messages.validate_timestamp(ts, "time"))


def check_run_event(event: bus_pb2.RunEvent, event_id: str) -> list[Problem]:
    """Every reason `event` (known by `event_id`: its own or its message id) can never be stored."""
    problems: list[Problem] = []

    def problem(reason: str, field: str, description: str) -> None:
        problems.append(Problem(reason, FieldViolation(field, description)))

    try:
        parse_run_name(event.run, "run")
    except InvalidArgument as exc:
        problems += [Problem(BAD_RUN_NAME, violation) for violation in exc.violations]
    if not event_id:
        problem(BAD_EVENT_ID, "event_id", "required")
    elif len(event_id) > MAX_EVENT_ID_CHARS:
        problem(BAD_EVENT_ID, "event_id", f"at most {MAX_EVENT_ID_CHARS} characters")
    if event.HasField("time") and (why := timestamp_problem(event.time)):
        problem(BAD_TIMESTAMP, "time", why)
    enums = [(event.state, Run.State.DESCRIPTOR, "state"), (event.trigger, Run.Trigger.DESCRIPTOR, "trigger")]
    for index, entry in enumerate(event.log_entries):
        if entry.HasField("time") and (why := timestamp_problem(entry.time)):
            problem(BAD_TIMESTAMP, f"log_entries[{index}].time", why)
        enums.append((entry.level, RunLogEntry.Level.DESCRIPTOR, f"log_entries[{index}].level"))
    for value, enum, field in enums:
        problems += [Problem(BAD_ENUM, violation) for violation in messages.validate_enum(value, enum, field)]
    return problems
