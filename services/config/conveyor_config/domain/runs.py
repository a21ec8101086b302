"""Run states: their order, and how a RunEvent changes a run."""

from __future__ import annotations

from google.protobuf import timestamp_pb2

from conveyor.v1 import bus_pb2
from conveyor.v1.run_pb2 import Run

TERMINAL_STATES = frozenset({Run.SUCCEEDED, Run.FAILED, Run.SUPERSEDED, Run.CANCELLED})
ACTIVE_STATES = frozenset({Run.QUEUED, Run.RUNNING})


def state_rank(state: int) -> int:
    """QUEUED < RUNNING < every terminal state; unspecified ranks lowest."""
    if state == Run.QUEUED:
        return 1
    if state == Run.RUNNING:
        return 2
    if state in TERMINAL_STATES:
        return 3
    return 0


def is_terminal(state: int) -> bool:
    return state in TERMINAL_STATES


def advances(current: int, new: int) -> bool:
    """A state change is applied only when it moves forward; a terminal state is final."""
    return state_rank(new) > state_rank(current)


# Where an event's log entries sort in the run's log (then by the event's time, then by arrival): the
# QUEUED event first and the event that ended the run last, whatever their times and arrival say. A
# redelivered QUEUED event may arrive after the outcome, and the trigger's and deployer's clocks differ.
LOG_PHASE_QUEUED = 0
LOG_PHASE_PROGRESS = 1
LOG_PHASE_OUTCOME = 2


def log_phase(event_state: int, *, ended_run: bool) -> int:
    """The phase of an event's entries; `ended_run`: this event moved the run to its terminal state."""
    if ended_run:
        return LOG_PHASE_OUTCOME
    if event_state == Run.QUEUED:
        return LOG_PHASE_QUEUED
    return LOG_PHASE_PROGRESS


def new_run_from_event(run_name: str, event: bus_pb2.RunEvent, now: timestamp_pb2.Timestamp) -> Run:
    """The run record created when config first hears of a run through an event."""
    run = Run(
        name=run_name,
        trigger=event.trigger,
        image=event.image,
        tag=event.tag,
        digest=event.digest,
        state=Run.QUEUED,
        event_id=event.source_event_id,
    )
    run.create_time.CopyFrom(event.time if event.HasField("time") else now)
    return run


def apply_run_event(run: Run, event: bus_pb2.RunEvent, now: timestamp_pb2.Timestamp) -> bool:
    """Apply a RunEvent's state and details to `run` in place; True when anything changed.

    The state only moves forward and never leaves a terminal state (events may arrive
    late or twice). Details missing on the run (image, previous image, ...) are filled in.
    """
    before = run.SerializeToString(deterministic=True)
    when = event.time if event.HasField("time") else now
    for field in ("image", "tag", "digest"):
        if not getattr(run, field) and getattr(event, field):
            setattr(run, field, getattr(event, field))
    if not run.event_id and event.source_event_id:
        run.event_id = event.source_event_id
    if run.trigger == Run.TRIGGER_UNSPECIFIED and event.trigger:
        run.trigger = event.trigger
    if event.previous_image and not run.previous_image:
        run.previous_image = event.previous_image
    state_applied = event.state != Run.STATE_UNSPECIFIED and advances(run.state, event.state)
    if state_applied:
        run.state = event.state
        if event.state == Run.RUNNING and not run.HasField("start_time"):
            run.start_time.CopyFrom(when)
        if is_terminal(event.state):
            run.end_time.CopyFrom(when)
    # An error explains the state it arrived with; a late one must not touch a finished run.
    if event.error and (state_applied or (not is_terminal(run.state) and not run.error)):
        run.error = event.error
    return bool(run.SerializeToString(deterministic=True) != before)
