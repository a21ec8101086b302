"""What a valid pipeline is: normalisation, validation with field violations, what an update may change
(AIP-134, over conveyor.aip.field_masks), etags, descriptions."""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable

from conveyor import refs, tagfilter
from conveyor.aip.field_masks import UpdatableFields
from conveyor.errors import FieldViolation, InvalidArgument
from conveyor.names import KubernetesKind, kubernetes_name_violations
from conveyor.v1 import pipeline_pb2
from conveyor.v1.pipeline_pb2 import Pipeline
from conveyor_config.domain.names import enum_names

DISPLAY_NAME_MAX_CHARS = 200
DESCRIPTION_MAX_CHARS = 4000
CLUSTER_MAX_CHARS = 253
DEFAULT_ROLLOUT_TIMEOUT_SECONDS = 10 * 60
MAX_ROLLOUT_TIMEOUT_SECONDS = 6 * 3600

# Cluster names are whatever the deployer's configuration calls them, often kubeconfig
# context names such as `arn:aws:eks:eu-west-1:123:cluster/prod`: printable, no spaces.
_CLUSTER_NAME = re.compile(r"^[!-~]+$")
_REGION = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?$")
_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")
_WORKLOAD_KINDS: dict[int, KubernetesKind] = {
    pipeline_pb2.Target.DEPLOYMENT: "Deployment",
    pipeline_pb2.Target.STATEFULSET: "StatefulSet",
    pipeline_pb2.Target.DAEMONSET: "DaemonSet",
}

# `name` identifies the resource; the rest are computed by the service.
OUTPUT_ONLY_FIELDS = ("name", "create_time", "update_time", "etag")
# UpdatePipeline: every other field is updatable; output-only paths in a mask are skipped, not an error
# (a mask read back from GetPipeline may name them).
UPDATABLE = UpdatableFields.all_except(Pipeline.DESCRIPTOR, OUTPUT_ONLY_FIELDS, ignore_output_only=True)


def clear_output_only(pipeline: Pipeline) -> None:
    for field in OUTPUT_ONLY_FIELDS:
        pipeline.ClearField(field)


def target_changed(before: Pipeline, after: Pipeline) -> bool:
    return bool(
        before.target.SerializeToString(deterministic=True) != after.target.SerializeToString(deterministic=True)
    )


def normalize_pipeline(pipeline: Pipeline) -> Pipeline:
    """A copy with canonical registry/repository spelling and explicit defaults.

    Display name and description are never touched: they are kept byte for byte.
    """
    result = Pipeline()
    result.CopyFrom(pipeline)
    source = result.source
    source.registry, source.repository = refs.normalize_repo(source.registry, source.repository)
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
    out.extend(tagfilter.validate(source.tag_filter, f"{prefix}.tag_filter"))
    if source.origin not in pipeline_pb2.ImageOrigin.values():
        out.append(FieldViolation(f"{prefix}.origin", f"unknown image origin {source.origin}"))
    return out


def _validate_target(target: pipeline_pb2.Target, prefix: str) -> list[FieldViolation]:
    out: list[FieldViolation] = []
    platforms = ", ".join(enum_names(pipeline_pb2.Target.Platform))
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
    out.extend(kubernetes_name_violations("Namespace", target.namespace, f"{prefix}.namespace"))
    # An unknown kind is reported below; every workload kind names its objects by the same rule.
    kind = _WORKLOAD_KINDS.get(target.workload_kind, "Deployment")
    out.extend(kubernetes_name_violations(kind, target.workload, f"{prefix}.workload"))
    out.extend(kubernetes_name_violations("Container", target.container, f"{prefix}.container"))
    kinds = ", ".join(enum_names(pipeline_pb2.Target.WorkloadKind))
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


def new_etag() -> str:
    """A fresh opaque etag; it changes on every write (AIP-154)."""
    return secrets.token_hex(8)


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
