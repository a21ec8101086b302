"""Small helpers shared by the pipeline and run use cases."""

from __future__ import annotations

from collections.abc import Callable

from google.protobuf import timestamp_pb2

from conveyor.errors import FieldViolation, InvalidArgument


def timestamp(seconds: float) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromMicroseconds(int(seconds * 1_000_000))
    return stamp


def require(violations: list[FieldViolation]) -> None:
    if violations:
        raise InvalidArgument.from_violations(violations)


def collect(check: Callable[[], object]) -> list[FieldViolation]:
    try:
        check()
    except InvalidArgument as exc:
        return list(exc.violations)
    return []
