"""The config service's pure domain: no I/O, no clocks, no gRPC.

- Pipeline normalisation and validation with field violations.
- Update masks (AIP-134), etags (AIP-154).
- Run state ordering and how a RunEvent changes a run.
- The AIP-160 filter subset of ListPipelines and ListRuns.
- Opaque keyset page tokens (AIP-158) bound to the request they were issued for.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import enum
import hashlib
import json
import re
import secrets
from collections.abc import Iterable, Sequence
from typing import Any

import re2
from google.protobuf import descriptor as pb_descriptor
from google.protobuf import timestamp_pb2

from conveyor import refs
from conveyor.errors import FieldViolation, InvalidArgument
from conveyor.v1 import bus_pb2, pipeline_pb2
from conveyor.v1.pipeline_pb2 import Pipeline
from conveyor.v1.run_pb2 import Run

DISPLAY_NAME_MAX_CHARS = 200
DESCRIPTION_MAX_CHARS = 4000
TAG_FILTER_VALUE_MAX_CHARS = 1024
CLUSTER_MAX_CHARS = 253
DEFAULT_ROLLOUT_TIMEOUT_SECONDS = 10 * 60
MAX_ROLLOUT_TIMEOUT_SECONDS = 6 * 3600
REQUEST_ID_MAX_CHARS = 128

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000

# Kubernetes DNS-1123 label: namespaces, and (as Conveyor requires) workload and container names.
_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
# Cluster names are whatever the deployer's configuration calls them, often kubeconfig
# context names such as `arn:aws:eks:eu-west-1:123:cluster/prod`: printable, no spaces.
_CLUSTER_NAME = re.compile(r"^[!-~]+$")
_REGION = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?$")
_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")
_REQUEST_ID = re.compile(r"^[!-~]+$")

_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False


# --------------------------------------------------------------------------- pipelines


def _enum_names(enum_type: Any) -> list[str]:
    # Protobuf enum wrappers are not iterable; `.keys()` is their API.
    return [name for name in enum_type.keys() if not name.endswith("_UNSPECIFIED")]  # noqa: SIM118


def is_valid_tag(tag: str) -> bool:
    # The distribution grammar's \w is ASCII only (conveyor.refs' pattern also admits Unicode letters).
    return tag.isascii() and refs.is_valid_tag(tag)


def is_dns1123_label(value: str) -> bool:
    return len(value) <= 63 and bool(_DNS1123_LABEL.match(value))


def compile_tag_regex(expression: str) -> Any:
    """Compile a user's tag filter with RE2; raises ValueError carrying the compiler's message."""
    try:
        return re2.compile(expression, options=_RE2_OPTIONS)
    except re2.error as exc:
        detail = exc.args[0] if exc.args else str(exc)
        if isinstance(detail, bytes):
            detail = detail.decode("utf-8", "replace")
        raise ValueError(str(detail)) from None


def tag_matches(tag_filter: pipeline_pb2.TagFilter, tag: str) -> bool:
    """Whether `tag` passes a (valid) tag filter; REGEX must match the whole tag."""
    if tag_filter.type == pipeline_pb2.TagFilter.EXACT:
        return tag == tag_filter.value
    if tag_filter.type == pipeline_pb2.TagFilter.REGEX:
        return compile_tag_regex(tag_filter.value).fullmatch(tag) is not None
    return True


def normalize_pipeline(pipeline: Pipeline) -> Pipeline:
    """A copy with canonical registry/repository spelling and explicit defaults.

    Display name and description are never touched: they are kept byte for byte.
    """
    result = Pipeline()
    result.CopyFrom(pipeline)
    source = result.source
    if source.registry:
        source.registry = refs.normalize_registry(source.registry)
    if source.repository:
        source.repository = refs.normalize_repository(source.registry, source.repository)
    if source.tag_filter.type == pipeline_pb2.TagFilter.TYPE_UNSPECIFIED:
        source.tag_filter.type = pipeline_pb2.TagFilter.ANY
    if source.origin == pipeline_pb2.IMAGE_ORIGIN_UNSPECIFIED:
        source.origin = pipeline_pb2.IMAGE_ORIGIN_ANY
    options = result.options
    if not options.HasField("verify_rollout"):
        options.verify_rollout = True
    if not options.HasField("rollout_timeout"):
        options.rollout_timeout.seconds = DEFAULT_ROLLOUT_TIMEOUT_SECONDS
    return result


def validate_pipeline(pipeline: Pipeline, prefix: str = "pipeline") -> list[FieldViolation]:
    """Every problem with a (normalised) pipeline, as field violations under `prefix`."""
    out: list[FieldViolation] = []

    def bad(path: str, description: str) -> None:
        out.append(FieldViolation(f"{prefix}.{path}", description))

    if not pipeline.display_name.strip():
        bad("display_name", "required")
    elif len(pipeline.display_name) > DISPLAY_NAME_MAX_CHARS:
        bad("display_name", f"at most {DISPLAY_NAME_MAX_CHARS} characters (got {len(pipeline.display_name)})")
    elif _CONTROL_CHARS.search(pipeline.display_name):
        bad("display_name", "must not contain control characters such as newlines or tabs")
    if len(pipeline.description) > DESCRIPTION_MAX_CHARS:
        bad("description", f"at most {DESCRIPTION_MAX_CHARS} characters (got {len(pipeline.description)})")

    # A missing source or target reports each of its required fields.
    out.extend(_validate_source(pipeline.source, f"{prefix}.source"))
    out.extend(_validate_target(pipeline.target, f"{prefix}.target"))
    out.extend(_validate_options(pipeline.options, f"{prefix}.options"))
    return out


def _validate_source(source: pipeline_pb2.Source, prefix: str) -> list[FieldViolation]:
    out: list[FieldViolation] = []
    if not source.registry:
        out.append(FieldViolation(f"{prefix}.registry", "required: a registry host such as registry.example.com"))
    elif not refs.is_valid_registry(source.registry):
        out.append(
            FieldViolation(
                f"{prefix}.registry",
                f"{source.registry!r} is not a registry host (expected e.g. demo.tencentcloudcr.com "
                "or registry.example.com:5000, without a path)",
            )
        )
    if not source.repository:
        out.append(FieldViolation(f"{prefix}.repository", "required: a repository path such as team/app"))
    elif not refs.is_valid_repository(source.repository):
        out.append(
            FieldViolation(
                f"{prefix}.repository",
                f"{source.repository!r} is not a repository path: lowercase letters, digits and separators "
                "(. _ __ -) in components joined by '/', e.g. team/app",
            )
        )
    tag_filter = source.tag_filter
    value_field = f"{prefix}.tag_filter.value"
    if tag_filter.type not in pipeline_pb2.TagFilter.Type.values():
        out.append(FieldViolation(f"{prefix}.tag_filter.type", f"unknown tag filter type {tag_filter.type}"))
    elif tag_filter.type == pipeline_pb2.TagFilter.EXACT:
        if not tag_filter.value:
            out.append(FieldViolation(value_field, "required for an EXACT filter: the tag to deploy"))
        elif not is_valid_tag(tag_filter.value):
            out.append(
                FieldViolation(
                    value_field,
                    f"{tag_filter.value!r} is not a valid tag: up to 128 letters, digits, '_', '.' and '-', "
                    "not starting with '.' or '-'",
                )
            )
    elif tag_filter.type == pipeline_pb2.TagFilter.REGEX:
        if not tag_filter.value:
            out.append(FieldViolation(value_field, "required for a REGEX filter: an RE2 expression"))
        elif len(tag_filter.value) > TAG_FILTER_VALUE_MAX_CHARS:
            out.append(FieldViolation(value_field, f"at most {TAG_FILTER_VALUE_MAX_CHARS} characters"))
        else:
            try:
                compile_tag_regex(tag_filter.value)
            except ValueError as exc:
                out.append(FieldViolation(value_field, f"invalid RE2 expression {tag_filter.value!r}: {exc}"))
    elif tag_filter.value:
        out.append(FieldViolation(value_field, "must be empty when the filter type is ANY"))
    if source.origin not in pipeline_pb2.ImageOrigin.values():
        out.append(FieldViolation(f"{prefix}.origin", f"unknown image origin {source.origin}"))
    return out


def _validate_target(target: pipeline_pb2.Target, prefix: str) -> list[FieldViolation]:
    out: list[FieldViolation] = []
    platforms = ", ".join(_enum_names(pipeline_pb2.Target.Platform))
    if target.platform not in pipeline_pb2.Target.Platform.values() or target.platform == 0:
        out.append(FieldViolation(f"{prefix}.platform", f"required: one of {platforms}"))
    if target.region and not _REGION.match(target.region):
        out.append(FieldViolation(f"{prefix}.region", f"{target.region!r} is not a region name such as ap-guangzhou"))
    if not target.cluster:
        out.append(FieldViolation(f"{prefix}.cluster", "required: a cluster name as configured on the deployer"))
    elif len(target.cluster) > CLUSTER_MAX_CHARS or not _CLUSTER_NAME.match(target.cluster):
        out.append(
            FieldViolation(
                f"{prefix}.cluster",
                f"{target.cluster!r} is not a cluster name: 1-{CLUSTER_MAX_CHARS} printable characters, no spaces",
            )
        )
    for field in ("namespace", "workload", "container"):
        value = getattr(target, field)
        if not value:
            out.append(FieldViolation(f"{prefix}.{field}", "required"))
        elif not is_dns1123_label(value):
            out.append(
                FieldViolation(
                    f"{prefix}.{field}",
                    f"{value!r} is not a valid {field} name (DNS-1123 label): at most 63 lowercase letters, "
                    "digits and '-', starting and ending with a letter or digit",
                )
            )
    kinds = ", ".join(_enum_names(pipeline_pb2.Target.WorkloadKind))
    if target.workload_kind not in pipeline_pb2.Target.WorkloadKind.values() or target.workload_kind == 0:
        out.append(FieldViolation(f"{prefix}.workload_kind", f"required: one of {kinds}"))
    return out


def _validate_options(options: pipeline_pb2.Options, prefix: str) -> list[FieldViolation]:
    if not options.HasField("rollout_timeout"):
        return []
    timeout = options.rollout_timeout
    seconds = timeout.seconds + timeout.nanos / 1e9
    valid_nanos = -999_999_999 <= timeout.nanos <= 999_999_999
    if not valid_nanos or seconds <= 0 or seconds > MAX_ROLLOUT_TIMEOUT_SECONDS:
        return [
            FieldViolation(
                f"{prefix}.rollout_timeout",
                f"must be more than 0 and at most {MAX_ROLLOUT_TIMEOUT_SECONDS // 3600} hours (got {seconds:g}s)",
            )
        ]
    return []


def check_pipeline(pipeline: Pipeline, prefix: str = "pipeline") -> Pipeline:
    """Normalise and validate; raises InvalidArgument listing every violation."""
    normalized = normalize_pipeline(pipeline)
    violations = validate_pipeline(normalized, prefix)
    if violations:
        raise InvalidArgument.from_violations(violations)
    return normalized


def validate_request_id(request_id: str) -> None:
    if request_id and (len(request_id) > REQUEST_ID_MAX_CHARS or not _REQUEST_ID.match(request_id)):
        raise InvalidArgument.from_violations(
            [
                FieldViolation(
                    "request_id", f"at most {REQUEST_ID_MAX_CHARS} printable ASCII characters (a UUID is typical)"
                )
            ]
        )


def new_etag() -> str:
    """A fresh opaque etag; it changes on every write (AIP-154)."""
    return secrets.token_hex(8)


def clear_output_only(pipeline: Pipeline) -> None:
    for field in OUTPUT_ONLY_FIELDS:
        pipeline.ClearField(field)


# --------------------------------------------------------------------------- update masks (AIP-134)

# `name` identifies the resource; the rest are computed by the service.
OUTPUT_ONLY_FIELDS = ("name", "create_time", "update_time", "etag")
_UPDATABLE_FIELDS = tuple(f.name for f in Pipeline.DESCRIPTOR.fields if f.name not in OUTPUT_ONLY_FIELDS)


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
    return field.label == pb_descriptor.FieldDescriptor.LABEL_REPEATED  # type: ignore[attr-defined]


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
    return before.target.SerializeToString(deterministic=True) != after.target.SerializeToString(deterministic=True)


# --------------------------------------------------------------------------- runs

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
    return run.SerializeToString(deterministic=True) != before


# --------------------------------------------------------------------------- filters (AIP-160 subset)

PIPELINE_FILTER_FIELDS = (
    "source.registry",
    "source.repository",
    "target.cluster",
    "target.namespace",
    "target.workload",
    "disabled",
)

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
      | (?P<op>!=|<=|>=|=|<|>|:)
      | (?P<paren>[()])
      | (?P<word>[^\s()"'=!<>:]+)
      | (?P<junk>\S)
    )""",
    re.VERBOSE,
)


@dataclasses.dataclass(frozen=True)
class _Token:
    kind: str  # string | op | paren | word | junk
    text: str
    position: int

    @property
    def value(self) -> str:
        if self.kind != "string":
            return self.text
        return re.sub(r"\\(.)", r"\1", self.text[1:-1])


def _filter_error(message: str) -> InvalidArgument:
    return InvalidArgument.from_violations([FieldViolation("filter", message)])


def _tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    position = 0
    while position < len(text):
        if not text[position:].strip():
            break
        match = _TOKEN.match(text, position)
        if match is None or match.lastgroup is None:  # pragma: no cover - the junk group matches anything
            raise _filter_error(f"cannot parse filter at position {position}")
        kind = match.lastgroup
        start = match.start(kind)
        if kind == "junk":
            if match.group(kind) in "\"'":
                raise _filter_error(f"unterminated string starting at position {start}")
            raise _filter_error(f"unexpected {match.group(kind)!r} at position {start}")
        tokens.append(_Token(kind, match.group(kind), start))
        position = match.end()
    return tokens


def _comparisons(text: str, joiner: str, other: str, example: str) -> list[tuple[_Token, _Token]]:
    """`field = value` comparisons joined by `joiner` (AND or OR); anything else is a clear error."""
    tokens = _tokenize(text)
    if tokens and tokens[0].text == "(" and tokens[-1].text == ")":
        tokens = tokens[1:-1]
    comparisons: list[tuple[_Token, _Token]] = []
    index = 0
    while index < len(tokens):
        chunk = tokens[index : index + 3]
        field = chunk[0]
        if field.kind != "word" or field.text in {"AND", "OR", "NOT"}:
            raise _filter_error(f"expected a field name at position {field.position}, got {field.text!r}; {example}")
        if len(chunk) < 2:
            raise _filter_error(f"expected '=' after {field.text!r}; {example}")
        op = chunk[1]
        if op.kind != "op":
            raise _filter_error(f"expected '=' after {field.text!r} at position {op.position}; {example}")
        if op.text != "=":
            raise _filter_error(f"operator {op.text!r} is not supported, only '='; {example}")
        if len(chunk) < 3 or chunk[2].kind not in {"word", "string"}:
            raise _filter_error(f"expected a value after '{field.text} ='; {example}")
        comparisons.append((field, chunk[2]))
        index += 3
        if index < len(tokens):
            conjunction = tokens[index]
            if conjunction.text == other:
                raise _filter_error(f"{other} is not supported here, only {joiner}; {example}")
            if conjunction.text != joiner:
                raise _filter_error(
                    f"expected {joiner} at position {conjunction.position}, got {conjunction.text!r}; {example}"
                )
            index += 1
            if index == len(tokens):
                raise _filter_error(f"filter ends with {joiner}; {example}")
    return comparisons


@dataclasses.dataclass(frozen=True)
class PipelineFilter:
    """Equality constraints on the filterable pipeline fields (all must hold)."""

    registry: str | None = None
    repository: str | None = None
    cluster: str | None = None
    namespace: str | None = None
    workload: str | None = None
    disabled: bool | None = None

    def canonical(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True, ensure_ascii=False)


_PIPELINE_FILTER_ATTRIBUTES = {
    "source.registry": "registry",
    "source.repository": "repository",
    "target.cluster": "cluster",
    "target.namespace": "namespace",
    "target.workload": "workload",
    "disabled": "disabled",
}


def parse_pipeline_filter(text: str) -> PipelineFilter:
    """`source.registry = "demo.tencentcloudcr.com" AND target.cluster = "prod"` -> PipelineFilter."""
    example = 'e.g. source.registry = "registry.example.com" AND target.cluster = "prod"'
    values: dict[str, Any] = {}
    for field, value in _comparisons(text, "AND", "OR", example):
        attribute = _PIPELINE_FILTER_ATTRIBUTES.get(field.text)
        if attribute is None:
            raise _filter_error(f"unknown field {field.text!r}; filterable fields: {', '.join(PIPELINE_FILTER_FIELDS)}")
        if attribute in values:
            raise _filter_error(f"{field.text} is compared more than once")
        raw = value.value
        if attribute == "disabled":
            if raw.lower() not in {"true", "false"}:
                raise _filter_error(f"disabled must be compared with true or false, got {raw!r}")
            values[attribute] = raw.lower() == "true"
        elif attribute == "registry":
            values[attribute] = refs.normalize_registry(raw)
        else:
            values[attribute] = raw
    return PipelineFilter(**values)


@dataclasses.dataclass(frozen=True)
class RunFilter:
    """The run states to list; empty means every state."""

    states: frozenset[int] = frozenset()

    def canonical(self) -> str:
        return ",".join(str(s) for s in sorted(self.states))


def parse_run_filter(text: str) -> RunFilter:
    """`state = FAILED`, `state = FAILED OR state = RUNNING` -> RunFilter."""
    example = "e.g. state = FAILED OR state = RUNNING"
    names = _enum_names(Run.State)
    states: set[int] = set()
    for field, value in _comparisons(text, "OR", "AND", example):
        if field.text != "state":
            raise _filter_error(f"unknown field {field.text!r}; runs can be filtered by state; {example}")
        name = value.value.upper()
        if name not in names:
            raise _filter_error(f"unknown state {value.value!r}; states: {', '.join(names)}")
        states.add(Run.State.Value(name))
    return RunFilter(frozenset(states))


# --------------------------------------------------------------------------- pagination (AIP-158)


def page_size(requested: int) -> int:
    if requested < 0:
        raise InvalidArgument.from_violations([FieldViolation("page_size", "must not be negative")])
    if requested == 0:
        return DEFAULT_PAGE_SIZE
    return min(requested, MAX_PAGE_SIZE)


def page_binding(*parts: str) -> str:
    """What a page token is bound to (collection, parent, filter); a different request rejects it."""
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:16]


def encode_page_token(key: Sequence[str | int], binding: str) -> str:
    payload = json.dumps({"v": 1, "k": list(key), "b": binding}, separators=(",", ":"), ensure_ascii=False)
    return base64.urlsafe_b64encode(payload.encode()).decode().rstrip("=")


def decode_page_token(token: str, binding: str, key_types: Sequence[type]) -> list[Any]:
    """The keyset position of a token issued by `encode_page_token` for the same binding."""
    invalid = InvalidArgument.from_violations(
        [FieldViolation("page_token", "invalid page token; use the next_page_token of a previous response")]
    )
    try:
        padded = token + "=" * (-len(token) % 4)
        payload = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
    except (ValueError, UnicodeError, binascii.Error):
        raise invalid from None
    if not isinstance(payload, dict) or payload.get("v") != 1 or not isinstance(payload.get("k"), list):
        raise invalid
    key = payload["k"]
    if len(key) != len(key_types) or not all(
        isinstance(value, kind) and not isinstance(value, bool) for value, kind in zip(key, key_types, strict=True)
    ):
        raise invalid
    if payload.get("b") != binding:
        raise InvalidArgument.from_violations(
            [
                FieldViolation(
                    "page_token",
                    "the page token was issued for a different parent or filter; "
                    "repeat the request's filter or start again without a page token",
                )
            ]
        )
    return key


# --------------------------------------------------------------------------- outcomes of storage operations


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


def describe_target(target: pipeline_pb2.Target) -> str:
    kind = pipeline_pb2.Target.WorkloadKind.Name(target.workload_kind).lower()
    return f"{kind}/{target.workload} container {target.container} in {target.cluster}/{target.namespace}"


def missing_container_message(target: pipeline_pb2.Target, containers: Iterable[str], init: Iterable[str]) -> str:
    names = ", ".join(containers) or "none"
    init_names = ", ".join(init) or "none"
    kind = pipeline_pb2.Target.WorkloadKind.Name(target.workload_kind).lower()
    return (
        f"{kind} {target.namespace}/{target.workload} in cluster {target.cluster} has no container "
        f"{target.container!r} (containers: {names}; init containers: {init_names})"
    )
