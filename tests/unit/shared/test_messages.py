"""The checks of bus messages protobuf does not make: timestamps and durations in range, enum values known."""

from __future__ import annotations

import datetime as dt

import pytest
from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp

from conveyor import messages
from conveyor.errors import FieldViolation
from conveyor.v1 import bus_pb2, pipeline_pb2, run_pb2


@pytest.mark.parametrize(
    ("seconds", "nanos"),
    [(0, 0), (1_700_000_000, 999_999_999), (messages.MIN_TIMESTAMP_SECONDS, 0), (messages.MAX_TIMESTAMP_SECONDS, 0)],
)
def test_timestamps_in_range_pass_and_convert(seconds: int, nanos: int) -> None:
    stamp = Timestamp(seconds=seconds, nanos=nanos)
    assert messages.validate_timestamp(stamp, "time") == []
    stamp.ToDatetime(tzinfo=dt.UTC)  # what the checks guard


@pytest.mark.parametrize(
    ("seconds", "nanos", "says"),
    [
        (0, 1_000_000_000, "nanos 1000000000 is out of range"),
        (0, -1, "nanos -1 is out of range"),
        (messages.MAX_TIMESTAMP_SECONDS + 1, 0, "seconds 253402300800 is out of range"),
        (messages.MIN_TIMESTAMP_SECONDS - 1, 0, "seconds -62135596801 is out of range"),
    ],
)
def test_out_of_range_timestamps_are_violations_named_by_field(seconds: int, nanos: int, says: str) -> None:
    stamp = Timestamp(seconds=seconds, nanos=nanos)
    (violation,) = messages.validate_timestamp(stamp, "requested_at")
    assert violation.field == "requested_at" and says in violation.description
    with pytest.raises(ValueError):
        stamp.ToDatetime(tzinfo=dt.UTC)  # the failure they replace


def test_durations_in_range_pass_and_the_rest_say_why() -> None:
    assert messages.validate_duration(Duration(seconds=-5, nanos=-1), "d") == []
    assert messages.validate_duration(Duration(seconds=messages.MAX_DURATION_SECONDS), "d") == []
    (too_long,) = messages.validate_duration(Duration(seconds=messages.MAX_DURATION_SECONDS + 1), "d")
    assert "seconds 315576000001 is out of range" in too_long.description
    (bad_nanos,) = messages.validate_duration(Duration(nanos=1_000_000_000), "d")
    assert "nanos 1000000000 is out of range" in bad_nanos.description
    (mixed,) = messages.validate_duration(Duration(seconds=1, nanos=-1), "d")
    assert "sign" in mixed.description


def test_enum_values_must_be_defined() -> None:
    trigger = run_pb2.Run.Trigger.DESCRIPTOR
    assert messages.validate_enum(run_pb2.Run.PUSH, trigger, "trigger") == []
    assert messages.validate_enum(0, trigger, "trigger") == []
    (violation,) = messages.validate_enum(42, trigger, "trigger")
    assert violation == FieldViolation("trigger", "42 is not a known Trigger (TRIGGER_UNSPECIFIED, PUSH, MANUAL)")


def test_every_well_known_value_and_enum_in_a_message_is_checked_with_its_path() -> None:
    message = bus_pb2.DeployRequested(run="pipelines/p/runs/r")
    message.requested_at.nanos = 1_000_000_000
    message.trigger = 7  # type: ignore[assignment]
    message.pipeline.update_time.seconds = messages.MAX_TIMESTAMP_SECONDS + 1
    message.pipeline.options.rollout_timeout.nanos = -2_000_000_000
    message.pipeline.target.workload_kind = 99  # type: ignore[assignment]

    fields = sorted(v.field for v in messages.validate_fields(message))

    assert fields == [
        "pipeline.options.rollout_timeout",
        "pipeline.target.workload_kind",
        "pipeline.update_time",
        "requested_at",
        "trigger",
    ]
    assert [v.field for v in messages.validate_fields(message, skip={"requested_at", "pipeline"})] == ["trigger"]


def test_repeated_fields_are_checked_item_by_item() -> None:
    event = bus_pb2.RunEvent(run="pipelines/p/runs/r")
    event.log_entries.add(message="fine").time.seconds = 1
    event.log_entries.add(message="bad").time.nanos = -5
    event.log_entries.add(level=12)  # type: ignore[arg-type]

    violations = messages.validate_fields(event)

    assert [v.field for v in violations] == ["log_entries[1].time", "log_entries[2].level"]
    assert messages.describe(violations).startswith("log_entries[1].time: nanos -5 is out of range")


def test_a_valid_message_has_no_violations() -> None:
    pipeline = pipeline_pb2.Pipeline(name="pipelines/p", target=pipeline_pb2.Target(workload_kind=1))  # type: ignore[arg-type]
    pipeline.options.rollout_timeout.FromTimedelta(dt.timedelta(minutes=5))
    message = bus_pb2.DeployRequested(run="pipelines/p/runs/r", pipeline=pipeline, trigger=run_pb2.Run.MANUAL)
    message.requested_at.FromDatetime(dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
    assert messages.validate_fields(message) == []
