"""RunEvents off the bus: what can never be stored, and where an event's entries go in the run's log."""

from __future__ import annotations

import pytest
from google.protobuf import timestamp_pb2

from conveyor import messages
from conveyor.v1 import bus_pb2
from conveyor.v1.run_pb2 import Run, RunLogEntry
from conveyor_config.domain import run_events, runs

RUN = "pipelines/web/runs/r1"


def reasons(event: bus_pb2.RunEvent, event_id: str = "e1") -> list[tuple[str, str]]:
    return [(p.reason, p.violation.field) for p in run_events.check_run_event(event, event_id)]


def ts(seconds: int, nanos: int = 0) -> timestamp_pb2.Timestamp:
    return timestamp_pb2.Timestamp(seconds=seconds, nanos=nanos)


def test_a_well_formed_event_passes() -> None:
    event = bus_pb2.RunEvent(
        run=RUN,
        time=ts(messages.MAX_TIMESTAMP_SECONDS, 999_999_999),
        state=Run.CANCELLED,
        trigger=Run.MANUAL,
        log_entries=[RunLogEntry(time=ts(messages.MIN_TIMESTAMP_SECONDS), level=RunLogEntry.ERROR)],
    )
    assert reasons(event) == []
    assert reasons(bus_pb2.RunEvent(run=RUN)) == []  # no time, no state, no entries: all optional


@pytest.mark.parametrize(
    ("time", "why"),
    [
        (ts(messages.MAX_TIMESTAMP_SECONDS + 1), "is out of range (0001-01-01 to 9999-12-31)"),
        (ts(messages.MIN_TIMESTAMP_SECONDS - 1), "is out of range (0001-01-01 to 9999-12-31)"),
        (ts(2**62), "is out of range (0001-01-01 to 9999-12-31)"),
        (ts(1_700_000_000, 1_000_000_000), "nanos 1000000000 is out of range"),
        (ts(1_700_000_000, -1), "nanos -1 is out of range"),
    ],
)
def test_timestamps_out_of_range(time: timestamp_pb2.Timestamp, why: str) -> None:
    assert why in run_events.timestamp_problem(time)
    assert reasons(bus_pb2.RunEvent(run=RUN, time=time)) == [(run_events.BAD_TIMESTAMP, "time")]
    entry = bus_pb2.RunEvent(run=RUN, log_entries=[RunLogEntry(), RunLogEntry(time=time)])
    assert reasons(entry) == [(run_events.BAD_TIMESTAMP, "log_entries[1].time")]


def test_unknown_enum_values() -> None:
    event = bus_pb2.RunEvent(run=RUN, state=7, trigger=3, log_entries=[RunLogEntry(level=5)])  # type: ignore[arg-type]
    assert reasons(event) == [
        (run_events.BAD_ENUM, "state"),
        (run_events.BAD_ENUM, "trigger"),
        (run_events.BAD_ENUM, "log_entries[0].level"),
    ]


def test_names_and_event_ids() -> None:
    assert reasons(bus_pb2.RunEvent(run="pipelines/web")) == [(run_events.BAD_RUN_NAME, "run")]
    assert reasons(bus_pb2.RunEvent(run="pipelines/Web/runs/r1")) == [(run_events.BAD_RUN_NAME, "run")]
    assert reasons(bus_pb2.RunEvent(run=RUN), "") == [(run_events.BAD_EVENT_ID, "event_id")]
    assert reasons(bus_pb2.RunEvent(run=RUN), "x" * 513) == [(run_events.BAD_EVENT_ID, "event_id")]
    assert reasons(bus_pb2.RunEvent(run=RUN), "x" * 512) == []


def test_log_phases_put_queued_first_and_the_outcome_last() -> None:
    assert runs.log_phase(Run.QUEUED, ended_run=False) == runs.LOG_PHASE_QUEUED
    for state in (Run.STATE_UNSPECIFIED, Run.RUNNING, Run.SUCCEEDED):
        # A terminal event that did not end the run (it was over already) is not its outcome.
        assert runs.log_phase(state, ended_run=False) == runs.LOG_PHASE_PROGRESS
    assert runs.log_phase(Run.FAILED, ended_run=True) == runs.LOG_PHASE_OUTCOME
    assert runs.LOG_PHASE_QUEUED < runs.LOG_PHASE_PROGRESS < runs.LOG_PHASE_OUTCOME
