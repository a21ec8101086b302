"""Update masks (AIP-134) and the output-only fields of a pipeline."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from google.protobuf import descriptor as pb_descriptor

from conveyor.errors import FieldViolation, InvalidArgument
from conveyor.v1.pipeline_pb2 import Pipeline

# `name` identifies the resource; the rest are computed by the service.
OUTPUT_ONLY_FIELDS = ("name", "create_time", "update_time", "etag")
_UPDATABLE_FIELDS = tuple(f.name for f in Pipeline.DESCRIPTOR.fields if f.name not in OUTPUT_ONLY_FIELDS)


def clear_output_only(pipeline: Pipeline) -> None:
    for field in OUTPUT_ONLY_FIELDS:
        pipeline.ClearField(field)


def _resolve_path(path: str) -> list[pb_descriptor.FieldDescriptor]:
    """Field descriptors along a mask path, or ValueError naming the first unknown segment."""
    descriptor = Pipeline.DESCRIPTOR
    fields: list[pb_descriptor.FieldDescriptor] = []
    segments = path.split(".")
    for index, segment in enumerate(segments):
        if descriptor is None:
            raise ValueError(f"{'.'.join(segments[:index])} has no sub-fields")
        field = descriptor.fields_by_name.get(segment)
        if field is None:
            raise ValueError(f"unknown field {segment!r}")
        if _is_repeated(field):
            raise ValueError(f"{segment!r} is a repeated field; update it as a whole")
        fields.append(field)
        descriptor = field.message_type
    return fields


def _is_repeated(field: pb_descriptor.FieldDescriptor) -> bool:
    is_repeated = getattr(field, "is_repeated", None)
    if is_repeated is not None:
        return bool(is_repeated)
    return bool(field.label == pb_descriptor.FieldDescriptor.LABEL_REPEATED)


def _has_presence(field: pb_descriptor.FieldDescriptor) -> bool:
    return field.message_type is not None or bool(field.has_presence)


def _copy_field(source: Any, destination: Any, field: pb_descriptor.FieldDescriptor) -> None:
    """AIP-134: a field named in the mask is replaced by the request's value (cleared when unset)."""
    if _has_presence(field) and not source.HasField(field.name):
        destination.ClearField(field.name)
    elif field.message_type is not None:
        getattr(destination, field.name).CopyFrom(getattr(source, field.name))
    else:
        setattr(destination, field.name, getattr(source, field.name))


def apply_update_mask(existing: Pipeline, patch: Pipeline, paths: Sequence[str]) -> Pipeline:
    """The pipeline after updating `existing` with `patch` per the mask.

    Empty or `*` replaces every updatable field. Output-only fields named in the mask
    are ignored. Unknown paths are an INVALID_ARGUMENT on `update_mask`.
    """
    result = Pipeline()
    result.CopyFrom(existing)
    if not paths or list(paths) == ["*"]:
        for name in _UPDATABLE_FIELDS:
            _copy_field(patch, result, Pipeline.DESCRIPTOR.fields_by_name[name])
        return result
    violations: list[FieldViolation] = []
    resolved: list[list[pb_descriptor.FieldDescriptor]] = []
    for path in paths:
        if path == "*":
            violations.append(FieldViolation("update_mask", "'*' must be the only path"))
            continue
        try:
            fields = _resolve_path(path)
        except ValueError as exc:
            violations.append(FieldViolation("update_mask", f"invalid path {path!r}: {exc}"))
            continue
        if fields[0].name in OUTPUT_ONLY_FIELDS:
            continue
        resolved.append(fields)
    if violations:
        raise InvalidArgument.from_violations(violations)
    for fields in resolved:
        source: Any = patch
        destination: Any = result
        for field in fields[:-1]:
            source = getattr(source, field.name)
            destination = getattr(destination, field.name)
        _copy_field(source, destination, fields[-1])
    return result


def target_changed(before: Pipeline, after: Pipeline) -> bool:
    return bool(
        before.target.SerializeToString(deterministic=True) != after.target.SerializeToString(deterministic=True)
    )
