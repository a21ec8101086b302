"""From command-line input to requests: names, enum words, pipeline flags, files and field masks.

Everything here is pure and raises `UsageError` with a message meant for the user.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import yaml
from google.protobuf import duration_pb2, field_mask_pb2, json_format

from conveyor import refs
from conveyor.settings import parse_duration
from conveyor.v1 import event_service_pb2, pipeline_pb2, run_pb2


class UsageError(Exception):
    """The command line or an input file is wrong; nothing was sent."""


_ID = r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?"
_PIPELINE_ID = re.compile(rf"^{_ID}$")


# ---------------------------------------------------------------- names


def pipeline_name(text: str) -> str:
    """`web` or `pipelines/web` -> `pipelines/web`."""
    pipeline = text.strip().removeprefix("pipelines/")
    if not _PIPELINE_ID.match(pipeline):
        raise UsageError(f"{text!r} is not a pipeline name (expected ID or pipelines/ID)")
    return f"pipelines/{pipeline}"


def pipeline_id(name: str) -> str:
    return name.removeprefix("pipelines/")


def run_name(text: str) -> str:
    """`pipelines/web/runs/01h…`, `web/runs/01h…` or `web/01h…` -> `pipelines/web/runs/01h…`."""
    parts = text.strip().split("/")
    if parts and parts[0] == "pipelines":
        parts = parts[1:]
    if len(parts) == 3 and parts[1] == "runs":
        parts = [parts[0], parts[2]]
    elif len(parts) == 2 and parts[1] == "runs":
        parts = []  # `web/runs` is a truncated name, not run "runs"
    if len(parts) != 2 or not all(re.match(rf"^{_ID}$", part) for part in parts):
        raise UsageError(f"{text!r} is not a run name (expected pipelines/PIPELINE/runs/RUN or PIPELINE/RUN)")
    return f"pipelines/{parts[0]}/runs/{parts[1]}"


def run_parent(text: str | None) -> str:
    """The ListRuns parent: a pipeline, or every pipeline when not given."""
    return "pipelines/-" if not text or text in {"-", "pipelines/-"} else pipeline_name(text)


# ---------------------------------------------------------------- enum words

# User-facing words for enums (lowercase, hyphenated); output shows the enum names.
PLATFORMS = {
    "kubernetes": pipeline_pb2.Target.KUBERNETES,
    "k8s": pipeline_pb2.Target.KUBERNETES,
    "tke": pipeline_pb2.Target.TKE,
    "eks": pipeline_pb2.Target.EKS,
    "edge": pipeline_pb2.Target.EDGE,
}
KINDS = {
    "deployment": pipeline_pb2.Target.DEPLOYMENT,
    "deploy": pipeline_pb2.Target.DEPLOYMENT,
    "statefulset": pipeline_pb2.Target.STATEFULSET,
    "sts": pipeline_pb2.Target.STATEFULSET,
    "daemonset": pipeline_pb2.Target.DAEMONSET,
    "ds": pipeline_pb2.Target.DAEMONSET,
}
ORIGINS = {
    "any": pipeline_pb2.IMAGE_ORIGIN_ANY,
    "platform-build": pipeline_pb2.IMAGE_ORIGIN_PLATFORM_BUILD,
    "local-push": pipeline_pb2.IMAGE_ORIGIN_LOCAL_PUSH,
}
RUN_STATES = {
    name.lower(): value for name, value in run_pb2.Run.State.items() if value != run_pb2.Run.STATE_UNSPECIFIED
}
DECISIONS = {
    name.lower().replace("_", "-"): value
    for name, value in event_service_pb2.MatchDecision.Outcome.items()
    if value != event_service_pb2.MatchDecision.OUTCOME_UNSPECIFIED
}


class EnumWord:
    """An argparse `type=` that maps a word (case-insensitive, `_` or `-`) to an enum value.

    Its `words` are what shell completion offers.
    """

    def __init__(self, kind: str, choices: Mapping[str, int]) -> None:
        self.kind = kind
        self.choices = dict(choices)
        self.words = tuple(self.choices)
        self.__name__ = kind  # argparse names the type in its messages

    def __call__(self, text: str) -> int:
        key = text.strip().lower().replace("_", "-")
        for prefix in ("image-origin-",):
            key = key.removeprefix(prefix)
        if key in self.choices:
            return self.choices[key]
        raise argparse.ArgumentTypeError(f"unknown {self.kind} {text!r} (choose from {', '.join(self.words)})")


def enum_word(kind: str, choices: Mapping[str, int]) -> EnumWord:
    return EnumWord(kind, choices)


def enum_label(enum: Any, value: int) -> str:
    """`KUBERNETES`; `-` for the unspecified zero value."""
    name = enum.Name(value)
    return "-" if name.endswith("UNSPECIFIED") else name.removeprefix("IMAGE_ORIGIN_")


# A regex must match the whole tag (RE2 full match), so no anchors are needed.
TAG_FILTER_HELP = (
    r"any | exact:TAG | regex:RE2 | semver:RANGE. A regex must match the WHOLE tag: regex:v\d+(\.\d+)* matches "
    r"v1.3.0 and v2 but not v1.3.0-rc1 or release-v1; regex:v\d+ matches only v1, v12, ... "
    r"semver:^1.2 matches 1.2.0 and v1.9.3 but not 2.0.0 or the pre-release 1.3.0-rc.1"
)
EXCLUDE_HELP = "a tag that never deploys: a glob (*-rc*, latest) or regex:RE2, whole tag; repeatable"


def tag_filter(text: str) -> pipeline_pb2.TagFilter:
    """`any`, `exact:v1.2.3`, `regex:v\\d+(\\.\\d+)*` or `semver:^1.2` -> TagFilter."""
    kind, sep, value = text.partition(":")
    kind = kind.strip().lower()
    if kind in {"any", "*"} and not value:
        return pipeline_pb2.TagFilter(type=pipeline_pb2.TagFilter.ANY)
    if sep and kind == "exact" and value:
        return pipeline_pb2.TagFilter(type=pipeline_pb2.TagFilter.EXACT, value=value)
    if sep and kind == "regex" and value:
        return pipeline_pb2.TagFilter(type=pipeline_pb2.TagFilter.REGEX, value=value)
    if sep and kind == "semver" and value.strip():
        return pipeline_pb2.TagFilter(type=pipeline_pb2.TagFilter.SEMVER, value=value)
    raise argparse.ArgumentTypeError(f"invalid tag filter {text!r}: expected any, exact:TAG, regex:RE2 or semver:RANGE")


def describe_tag_filter(tag_filter_msg: pipeline_pb2.TagFilter) -> str:
    """The --tag-filter word, then pre-releases and exclusions when set: `semver:^1.2 +prereleases -*-rc* -latest`."""
    words = [_tag_filter_word(tag_filter_msg)]
    if tag_filter_msg.include_prereleases:
        words.append("+prereleases")
    words.extend(f"-{pattern}" for pattern in tag_filter_msg.exclusions)
    return " ".join(words)


def _tag_filter_word(tag_filter_msg: pipeline_pb2.TagFilter) -> str:
    if tag_filter_msg.type == pipeline_pb2.TagFilter.EXACT:
        return f"exact:{tag_filter_msg.value}"
    if tag_filter_msg.type == pipeline_pb2.TagFilter.REGEX:
        return f"regex:{tag_filter_msg.value}"
    if tag_filter_msg.type == pipeline_pb2.TagFilter.SEMVER:
        return f"semver:{tag_filter_msg.value}"
    return "any"


def duration(text: str) -> duration_pb2.Duration:
    """`90s`, `5m`, `1h`, `1500ms` -> Duration."""
    try:
        seconds = parse_duration(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid duration {text!r}: expected e.g. 30s, 5m or 1h") from None
    whole = int(seconds)
    return duration_pb2.Duration(seconds=whole, nanos=round((seconds - whole) * 1e9))


def image_repository(text: str) -> tuple[str, str]:
    """`registry.example.com/team/app` -> (registry, repository); a tag or digest is not allowed."""
    if "/" not in text:
        raise argparse.ArgumentTypeError(f"--image {text!r}: expected REGISTRY/REPOSITORY, e.g. ghcr.io/team/app")
    ref = refs.parse_image(text)
    if ref.tag or ref.digest:
        raise argparse.ArgumentTypeError(
            f"--image {text!r}: give the repository without a tag or digest (use --tag-filter for tags)"
        )
    return ref.registry, ref.repository


# ---------------------------------------------------------------- pipeline from flags


@dataclass(frozen=True)
class PipelineFlag:
    """One pipeline flag: its argparse destination and the field path it sets."""

    dest: str
    path: str


# Flag destination -> field path (FieldMask paths use proto field names).
PIPELINE_FLAGS: tuple[PipelineFlag, ...] = (
    PipelineFlag("display_name", "display_name"),
    PipelineFlag("description", "description"),
    PipelineFlag("disabled", "disabled"),
    PipelineFlag("registry", "source.registry"),
    PipelineFlag("repository", "source.repository"),
    PipelineFlag("tag_filter", "source.tag_filter"),
    PipelineFlag("origin", "source.origin"),
    PipelineFlag("platform", "target.platform"),
    PipelineFlag("region", "target.region"),
    PipelineFlag("cluster", "target.cluster"),
    PipelineFlag("namespace", "target.namespace"),
    PipelineFlag("kind", "target.workload_kind"),
    PipelineFlag("workload", "target.workload"),
    PipelineFlag("container", "target.container"),
    PipelineFlag("pin_digest", "options.pin_digest"),
    PipelineFlag("verify_rollout", "options.verify_rollout"),
    PipelineFlag("rollout_timeout", "options.rollout_timeout"),
    PipelineFlag("rollback_on_failure", "options.rollback_on_failure"),
)

# Fields a client never sets: the server owns them (the etag travels separately).
OUTPUT_ONLY_PATHS = frozenset({"name", "create_time", "update_time", "etag"})
# Message-valued fields replaced as a whole (a mask names the field, not its parts).
ATOMIC_PATHS = frozenset({"source.tag_filter", "options.rollout_timeout"})


def add_pipeline_flags(parser: argparse.ArgumentParser) -> None:
    """The flags shared by `pipelines create` and `pipelines update` (all default to "not given")."""
    meta = parser.add_argument_group("pipeline fields")
    meta.add_argument("--display-name", help="human-readable name (create defaults to the id)")
    meta.add_argument("--description", help="free text")
    meta.add_argument(
        "--disabled",
        action=argparse.BooleanOptionalAction,
        help="a disabled pipeline matches no pushes and cannot be started (--no-disabled enables it)",
    )
    source = parser.add_argument_group("source (which pushes)")
    source.add_argument("--image", type=image_repository, metavar="REGISTRY/REPOSITORY", help="sets both below")
    source.add_argument("--registry", help="registry host, e.g. registry.example.com:5000")
    source.add_argument("--repository", help="repository path, e.g. team/app")
    source.add_argument("--tag-filter", type=tag_filter, metavar="FILTER", help=TAG_FILTER_HELP)
    source.add_argument("--exclude", action="append", metavar="PATTERN", help=EXCLUDE_HELP)
    source.add_argument(
        "--include-prereleases", action="store_true", default=None, help="semver: pre-releases in the range match"
    )
    source.add_argument("--origin", type=enum_word("origin", ORIGINS), help=" | ".join(ORIGINS))
    target = parser.add_argument_group("target (where it deploys)")
    target.add_argument(
        "--platform",
        type=enum_word("platform", PLATFORMS),
        help="kubernetes | tke | eks | edge (default: the platform the deployer declares for --cluster)",
    )
    target.add_argument("--region", help="default: the region the deployer declares for --cluster")
    target.add_argument("--cluster", help="cluster name as configured on the deployer")
    target.add_argument("-n", "--namespace", help="namespace of the workload")
    target.add_argument("--kind", type=enum_word("kind", KINDS), help="deployment | statefulset | daemonset")
    target.add_argument("--workload", help="name of the existing workload")
    target.add_argument("--container", help="container (or init container) whose image is set")
    options = parser.add_argument_group("options")
    options.add_argument("--pin-digest", action=argparse.BooleanOptionalAction, help="deploy repo:tag@sha256:…")
    options.add_argument(
        "--verify-rollout", action=argparse.BooleanOptionalAction, help="follow the rollout (default on)"
    )
    options.add_argument("--rollout-timeout", type=duration, metavar="DURATION", help="e.g. 5m (default 10m)")
    options.add_argument(
        "--rollback-on-failure", action=argparse.BooleanOptionalAction, help="restore the previous image on failure"
    )


def pipeline_from_flags(args: argparse.Namespace) -> tuple[pipeline_pb2.Pipeline, list[str]]:
    """The pipeline fields given on the command line, and their field paths (in flag order)."""
    if getattr(args, "image", None) is not None:
        if args.registry is not None or args.repository is not None:
            raise UsageError("--image cannot be combined with --registry/--repository")
        args.registry, args.repository = args.image
    _fold_tag_filter_parts(args)
    pipeline = pipeline_pb2.Pipeline()
    paths: list[str] = []
    for flag in PIPELINE_FLAGS:
        value = getattr(args, flag.dest, None)
        if value is None:
            continue
        _set_path(pipeline, flag.path, value)
        paths.append(flag.path)
    return pipeline, paths


def _fold_tag_filter_parts(args: argparse.Namespace) -> None:
    """--exclude and --include-prereleases go into --tag-filter, which the server replaces as a whole."""
    exclusions = getattr(args, "exclude", None)
    include_prereleases = getattr(args, "include_prereleases", None)
    if not exclusions and not include_prereleases:
        return
    if args.tag_filter is None:
        raise UsageError("--exclude and --include-prereleases need --tag-filter (the filter is replaced as a whole)")
    if exclusions:
        args.tag_filter.exclusions.extend(exclusions)
    if include_prereleases:
        args.tag_filter.include_prereleases = True


def _set_path(message: Any, path: str, value: Any) -> None:
    *parents, leaf = path.split(".")
    for part in parents:
        message = getattr(message, part)
    if hasattr(value, "DESCRIPTOR"):
        getattr(message, leaf).CopyFrom(value)
    else:
        setattr(message, leaf, value)


# ---------------------------------------------------------------- pipeline files


def load_pipeline_file(path: str, stdin_text: str | None = None) -> tuple[pipeline_pb2.Pipeline, list[str]]:
    """A YAML or JSON file in the Pipeline JSON shape (`-` reads stdin) -> (pipeline, field paths present).

    Accepts what `pipelines get -o yaml` prints: camelCase or snake_case keys, enum names, and
    durations as `300s` or friendly `5m`. Output-only fields are dropped from the paths.
    """
    label = "stdin" if path == "-" else path
    try:
        if path == "-":
            text = stdin_text if stdin_text is not None else ""
        else:
            with open(path, encoding="utf-8") as handle:
                text = handle.read()
    except OSError as exc:
        raise UsageError(f"cannot read {label}: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise UsageError(f"{label}: not valid YAML or JSON: {_one_line(str(exc))}") from None
    if not isinstance(data, dict):
        raise UsageError(f"{label}: expected a mapping with pipeline fields (see `pipelines get NAME -o yaml`)")
    if isinstance(data.get("pipeline"), dict) and len(data) == 1:
        data = data["pipeline"]  # a CreatePipelineRequest-shaped file
    data = _friendly_durations(data)
    pipeline = pipeline_pb2.Pipeline()
    try:
        # Round-trip through JSON so YAML-only types (dates, ints as keys) fail clearly.
        json_format.Parse(json.dumps(data, default=str), pipeline)
    except json_format.ParseError as exc:
        raise UsageError(f"{label}: {_one_line(str(exc))}") from None
    return pipeline, _present_paths(pipeline_pb2.Pipeline.DESCRIPTOR, data)


def _friendly_durations(data: dict[str, Any]) -> dict[str, Any]:
    options = data.get("options")
    if not isinstance(options, dict):
        return data
    for key in ("rolloutTimeout", "rollout_timeout"):
        value = options.get(key)
        if isinstance(value, (int, float)):
            options = {**options, key: f"{value}s"}
        elif isinstance(value, str) and not re.fullmatch(r"-?\d+(\.\d+)?s", value.strip()):
            with contextlib.suppress(ValueError):  # json_format reports it
                options = {**options, key: f"{parse_duration(value):g}s"}
    return {**data, "options": options}


def _present_paths(descriptor: Any, data: Mapping[str, Any], prefix: str = "") -> list[str]:
    """Field paths (proto names) present in a JSON-shaped dict, descending into sub-messages."""
    paths: list[str] = []
    by_json = {f.json_name: f for f in descriptor.fields} | {f.name: f for f in descriptor.fields}
    for key, value in data.items():
        field = by_json.get(key)
        if field is None:
            continue
        path = f"{prefix}{field.name}"
        if path in OUTPUT_ONLY_PATHS:
            continue
        is_message = field.message_type is not None
        if is_message and path not in ATOMIC_PATHS and isinstance(value, Mapping) and value:
            paths.extend(_present_paths(field.message_type, value, f"{path}."))
        else:
            paths.append(path)
    return paths


def clear_output_only(pipeline: pipeline_pb2.Pipeline) -> None:
    for path in ("create_time", "update_time"):
        pipeline.ClearField(path)


def merge_paths(*groups: Iterable[str]) -> list[str]:
    """Union in first-seen order; a parent path covers its children."""
    seen: list[str] = []
    for group in groups:
        for path in group:
            if path not in seen:
                seen.append(path)
    return [p for p in seen if not any(p.startswith(f"{other}.") for other in seen if other != p)]


def touches(paths: Iterable[str], field: str) -> bool:
    """Whether a mask of `paths` sets `field` (itself, or a parent message as a whole)."""
    return any(field == path or field.startswith(f"{path}.") for path in paths)


def field_mask(paths: Iterable[str]) -> field_mask_pb2.FieldMask:
    return field_mask_pb2.FieldMask(paths=list(paths))


def copy_paths(source: pipeline_pb2.Pipeline, target: pipeline_pb2.Pipeline, paths: Iterable[str]) -> None:
    """Copy the fields named by `paths` from `source` into `target` (sub-messages as a whole)."""
    for path in paths:
        *parents, leaf = path.split(".")
        src: Any = source
        dst: Any = target
        for part in parents:
            src, dst = getattr(src, part), getattr(dst, part)
        field = src.DESCRIPTOR.fields_by_name[leaf]
        if field.message_type is not None:
            getattr(dst, leaf).CopyFrom(getattr(src, leaf))
        elif field.has_presence and not src.HasField(leaf):
            dst.ClearField(leaf)
        else:
            setattr(dst, leaf, getattr(src, leaf))


def _one_line(text: str) -> str:
    return " ".join(text.split())
