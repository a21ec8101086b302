"""Update masks with AIP-134 semantics, for any protobuf resource message.

`apply(existing, patch, mask, updatable)` returns a copy of `existing` updated from `patch`:

- an explicit mask: each path is replaced by the patch's value, or cleared when the patch does not
  set it (so `options.verify_rollout` absent from the patch resets it). A path naming a message
  replaces that message whole; a nested path (`target.workload`) keeps its siblings. Repeated and
  map fields can be named only as a whole (a repeated field in the middle of a path is an error).
- an empty or absent mask: the fields the patch sets (non-default scalars, present messages and
  optionals, non-empty repeated fields), down to the leaves: setting `target.workload` alone
  updates only that. A present but empty message counts as its own path (it replaces the
  message with an empty one). Well-known types (Timestamp, Duration, ...) are leaves.
  Output-only fields set in the patch are ignored (clients echo them back).
  Note: a field set to its default (`disabled = false`) is not "set"; name it in the mask, or use `*`.
- `*`: full replacement: every updatable field takes the patch's value, unset ones are cleared.

Paths are validated against the declared `UpdatableFields`: an unknown path, a path through a
scalar, a path that is not updatable, or (unless the declaration ignores them) an output-only path
is an InvalidArgument with one field violation on `update_mask` per bad path.

Before issue 9, the config service treated an empty mask like `*` (full replacement); clients that
relied on that must now send `*`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TypeVar

from google.protobuf import descriptor as pb_descriptor, field_mask_pb2
from google.protobuf.message import Message

from conveyor.errors import FieldViolation, InvalidArgument

M = TypeVar("M", bound=Message)
WILDCARD = "*"
_WELL_KNOWN_PACKAGE = "google.protobuf."


def _is_repeated(field: pb_descriptor.FieldDescriptor) -> bool:
    is_repeated = getattr(field, "is_repeated", None)
    if is_repeated is not None:
        return bool(is_repeated)
    # Older protobuf releases only have `label`.
    return bool(field.label == pb_descriptor.FieldDescriptor.LABEL_REPEATED)  # pragma: no cover


def resolve_path(descriptor: pb_descriptor.Descriptor, path: str) -> list[pb_descriptor.FieldDescriptor]:
    """The field descriptors along `path`; ValueError naming the first unusable segment."""
    fields: list[pb_descriptor.FieldDescriptor] = []
    current: pb_descriptor.Descriptor | None = descriptor
    segments = path.split(".")
    for index, segment in enumerate(segments):
        if fields and _is_repeated(fields[-1]):
            raise ValueError(f"{fields[-1].name!r} is a repeated field; update it as a whole")
        if current is None:
            raise ValueError(f"{'.'.join(segments[:index])} has no sub-fields")
        field = current.fields_by_name.get(segment)
        if field is None:
            raise ValueError(f"unknown field {segment!r}")
        fields.append(field)
        current = field.message_type
    return fields


def _ancestors_and_self(path: str) -> Iterable[str]:
    segments = path.split(".")
    for end in range(1, len(segments) + 1):
        yield ".".join(segments[:end])


def _descendable(field: pb_descriptor.FieldDescriptor) -> bool:
    """A singular message field an implicit mask descends into (well-known types are leaves)."""
    message_type = field.message_type
    return (
        message_type is not None
        and not _is_repeated(field)
        and not message_type.full_name.startswith(_WELL_KNOWN_PACKAGE)
    )


def _nested(inner: str, outer: str) -> bool:
    return inner == outer or inner.startswith(f"{outer}.")


class UpdatableFields:
    """What an update of one resource type may change.

    `updatable`: paths an update may replace (a path covers everything under it).
    `output_only`: paths computed by the service (name, etag, times). Named in an explicit mask they
    are an error, or silently skipped with `ignore_output_only=True` (AIP-161's read-write
    consistency: a mask read back from a Get may name them). Set in a patch without a mask, they
    are always skipped. Declared paths must exist in `descriptor` and must not contain one
    another; ValueError otherwise.
    """

    def __init__(
        self,
        descriptor: pb_descriptor.Descriptor,
        updatable: Iterable[str],
        *,
        output_only: Iterable[str] = (),
        ignore_output_only: bool = False,
    ) -> None:
        self.descriptor = descriptor
        self.updatable = tuple(dict.fromkeys(updatable))
        self.output_only = tuple(dict.fromkeys(output_only))
        self.ignore_output_only = ignore_output_only
        declared = (*self.updatable, *self.output_only)
        for path in declared:
            resolve_path(descriptor, path)
        for position, path in enumerate(declared):
            for other in declared[position + 1 :]:
                if _nested(path, other) or _nested(other, path):
                    raise ValueError(f"declared paths {path!r} and {other!r} overlap")
        self._updatable = frozenset(self.updatable)
        self._output_only = frozenset(self.output_only)

    @classmethod
    def all_except(
        cls, descriptor: pb_descriptor.Descriptor, output_only: Iterable[str], *, ignore_output_only: bool = False
    ) -> UpdatableFields:
        """Every top-level field is updatable except the `output_only` ones."""
        excluded = tuple(output_only)
        updatable = [field.name for field in descriptor.fields if field.name not in excluded]
        return cls(descriptor, updatable, output_only=excluded, ignore_output_only=ignore_output_only)

    def is_updatable(self, path: str) -> bool:
        return any(prefix in self._updatable for prefix in _ancestors_and_self(path))

    def is_output_only(self, path: str) -> bool:
        return any(prefix in self._output_only for prefix in _ancestors_and_self(path))

    def _encloses_declared(self, path: str) -> bool:
        return any(candidate.startswith(f"{path}.") for candidate in (*self.updatable, *self.output_only))

    def check(self, paths: Sequence[str]) -> list[str]:
        """The effective paths of an explicit, non-empty mask; InvalidArgument listing every bad path."""
        if list(paths) == [WILDCARD]:
            return list(self.updatable)
        violations: list[FieldViolation] = []
        effective: list[str] = []
        for path in paths:
            if path == WILDCARD:
                violations.append(FieldViolation("update_mask", f"'{WILDCARD}' must be the only path"))
                continue
            try:
                resolve_path(self.descriptor, path)
            except ValueError as exc:
                violations.append(FieldViolation("update_mask", f"invalid path {path!r}: {exc}"))
                continue
            if self.is_updatable(path):
                if path not in effective:
                    effective.append(path)
            elif self.is_output_only(path):
                if not self.ignore_output_only:
                    violations.append(FieldViolation("update_mask", f"invalid path {path!r}: {path} is output only"))
            else:
                violations.append(
                    FieldViolation(
                        "update_mask",
                        f"invalid path {path!r}: {path} cannot be updated; updatable: {', '.join(self.updatable)}",
                    )
                )
        if violations:
            raise InvalidArgument.from_violations(violations)
        return effective

    def implicit_paths(self, patch: Message) -> list[str]:
        """The paths an empty mask stands for: the updatable fields `patch` sets, down to the leaves."""
        violations: list[FieldViolation] = []
        paths = self._set_paths(patch, "", violations)
        if violations:
            raise InvalidArgument.from_violations(violations)
        return paths

    def _set_paths(self, message: Message, prefix: str, violations: list[FieldViolation]) -> list[str]:
        out: list[str] = []
        for field, value in message.ListFields():
            path = f"{prefix}{field.name}"
            if self.is_output_only(path):
                continue
            if self.is_updatable(path):
                # An explicitly present but empty message is itself what the patch sets.
                below = self._set_paths(value, f"{path}.", violations) if _descendable(field) else []
                out.extend(below or [path])
            elif _descendable(field) and self._encloses_declared(path):
                out.extend(self._set_paths(value, f"{path}.", violations))
            else:
                violations.append(FieldViolation("update_mask", f"{path} is set in the request but cannot be updated"))
        return out


def mask_paths(mask: field_mask_pb2.FieldMask | Sequence[str] | None) -> list[str]:
    """The paths of a FieldMask, a list of paths, or no mask at all."""
    if mask is None:
        return []
    if isinstance(mask, field_mask_pb2.FieldMask):
        return list(mask.paths)
    return list(mask)


def _copy_path(source: Message, destination: Message, fields: Sequence[pb_descriptor.FieldDescriptor]) -> None:
    """Replace one path of `destination` by `source`'s value; clear it when `source` does not set it."""
    for field in fields[:-1]:
        if not source.HasField(field.name) and not destination.HasField(field.name):
            return  # unset on both sides: nothing to copy, and no empty parent to create
        source = getattr(source, field.name)
        destination = getattr(destination, field.name)
    field = fields[-1]
    name = field.name
    if _is_repeated(field):
        destination.ClearField(name)
        getattr(destination, name).MergeFrom(getattr(source, name))
    elif (field.message_type is not None or field.has_presence) and not source.HasField(name):
        destination.ClearField(name)
    elif field.message_type is not None:
        getattr(destination, name).CopyFrom(getattr(source, name))
    else:
        setattr(destination, name, getattr(source, name))


def apply(
    existing: M, patch: M, mask: field_mask_pb2.FieldMask | Sequence[str] | None, updatable: UpdatableFields
) -> tuple[M, list[str]]:
    """(a copy of `existing` updated from `patch` per `mask`, the effective paths applied).

    Raises InvalidArgument (field violations on `update_mask`) for a bad mask; `existing` is never modified.
    """
    if existing.DESCRIPTOR is not updatable.descriptor or patch.DESCRIPTOR is not updatable.descriptor:
        raise TypeError(f"these updatable fields are declared for {updatable.descriptor.full_name}")
    paths = mask_paths(mask)
    effective = updatable.check(paths) if paths else updatable.implicit_paths(patch)
    result = type(existing)()
    result.CopyFrom(existing)
    for path in effective:
        _copy_path(patch, result, resolve_path(updatable.descriptor, path))
    return result, effective
