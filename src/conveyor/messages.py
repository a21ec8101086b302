"""Checks of bus messages that parsing does not make: timestamps and durations in range, enum values known.

Protobuf parses a `Timestamp` with `nanos` = 10^9, or an enum number nobody defined, without complaint; the
failure comes later, as a plain ValueError deep in a conversion (`ToDatetime`, a JSON response), far from
the edge that could have dropped the message. Each check here returns the field violations it finds (empty
when the value is fine), so an edge reports all of a message's problems at once and terminates it.

Pure: no I/O, shared by every service's edges.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable

from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor
from google.protobuf.duration_pb2 import Duration
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from conveyor.errors import FieldViolation

# The range of google.protobuf.Timestamp: 0001-01-01T00:00:00Z to 9999-12-31T23:59:59.999999999Z.
MIN_TIMESTAMP_SECONDS = -62_135_596_800
MAX_TIMESTAMP_SECONDS = 253_402_300_799
# The range of google.protobuf.Duration: +-10,000 years.
MAX_DURATION_SECONDS = 315_576_000_000
NANOS_PER_SECOND = 1_000_000_000

_TIMESTAMP = Timestamp.DESCRIPTOR.full_name
_DURATION = Duration.DESCRIPTOR.full_name


def validate_timestamp(stamp: Timestamp, field: str) -> list[FieldViolation]:
    violations = []
    if not MIN_TIMESTAMP_SECONDS <= stamp.seconds <= MAX_TIMESTAMP_SECONDS:
        violations.append(FieldViolation(field, f"seconds {stamp.seconds} is out of range (0001-01-01 to 9999-12-31)"))
    if not 0 <= stamp.nanos < NANOS_PER_SECOND:
        violations.append(FieldViolation(field, f"nanos {stamp.nanos} is out of range (0 to 999999999)"))
    return violations


def validate_duration(duration: Duration, field: str) -> list[FieldViolation]:
    violations = []
    if not -MAX_DURATION_SECONDS <= duration.seconds <= MAX_DURATION_SECONDS:
        violations.append(
            FieldViolation(field, f"seconds {duration.seconds} is out of range (at most 10,000 years either way)")
        )
    if not -NANOS_PER_SECOND < duration.nanos < NANOS_PER_SECOND:
        violations.append(FieldViolation(field, f"nanos {duration.nanos} is out of range (-999999999 to 999999999)"))
    elif duration.seconds * duration.nanos < 0:
        violations.append(FieldViolation(field, "seconds and nanos have opposite signs"))
    return violations


def validate_enum(value: int, enum: EnumDescriptor, field: str) -> list[FieldViolation]:
    """Proto3 keeps an unknown enum number as it is: it must be one the schema defines."""
    if value in enum.values_by_number:
        return []
    known = ", ".join(v.name for v in enum.values)
    return [FieldViolation(field, f"{value} is not a known {enum.name} ({known})")]


def validate_fields(message: Message, *, skip: Collection[str] = (), prefix: str = "") -> list[FieldViolation]:
    """Every Timestamp, Duration and enum value set anywhere in `message`: nested, repeated and map values.

    Fields are named by their path (`pipeline.options.rollout_timeout`, `log_entries[2].time`); a path in
    `skip` (a field, or a whole sub-message) is left to the caller.
    """
    violations: list[FieldViolation] = []
    for field, value in message.ListFields():
        path = prefix + field.name
        if path in skip:
            continue
        if _is_map(field):
            value_field = field.message_type.fields_by_name["value"]
            for key in sorted(value):
                violations += _check(value_field, value[key], f"{path}[{key}]", skip)
        elif field.is_repeated:
            for index, item in enumerate(value):
                violations += _check(field, item, f"{path}[{index}]", skip)
        else:
            violations += _check(field, value, path, skip)
    return violations


def describe(violations: Iterable[FieldViolation]) -> str:
    """`field: problem; field: problem`, for a log line or a dead letter."""
    return "; ".join(f"{v.field}: {v.description}" for v in violations)


def _check(field: FieldDescriptor, value: object, path: str, skip: Collection[str]) -> list[FieldViolation]:
    if field.type == FieldDescriptor.TYPE_ENUM:
        assert isinstance(value, int)
        return validate_enum(value, field.enum_type, path)
    if field.type != FieldDescriptor.TYPE_MESSAGE:
        return []
    assert isinstance(value, Message)
    kind: Descriptor = field.message_type
    if kind.full_name == _TIMESTAMP:
        assert isinstance(value, Timestamp)
        return validate_timestamp(value, path)
    if kind.full_name == _DURATION:
        assert isinstance(value, Duration)
        return validate_duration(value, path)
    return validate_fields(value, skip=skip, prefix=path + ".")


def _is_map(field: FieldDescriptor) -> bool:
    return (
        field.type == FieldDescriptor.TYPE_MESSAGE
        and field.is_repeated
        and bool(field.message_type.GetOptions().map_entry)
    )
