"""Workloads as the deployer sees them: kinds, references, containers, selectors, deploy records.

Pure functions over the Kubernetes JSON objects (dicts) the API returns; no I/O.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

from conveyor.v1 import pipeline_pb2

WorkloadKindProto = pipeline_pb2.Target.WorkloadKind


class Kind(Enum):
    DEPLOYMENT = "Deployment"
    STATEFULSET = "StatefulSet"
    DAEMONSET = "DaemonSet"

    @property
    def plural(self) -> str:
        return self.value.lower() + "s"

    @property
    def proto(self) -> int:
        protos: dict[Kind, int] = {
            Kind.DEPLOYMENT: pipeline_pb2.Target.DEPLOYMENT,
            Kind.STATEFULSET: pipeline_pb2.Target.STATEFULSET,
            Kind.DAEMONSET: pipeline_pb2.Target.DAEMONSET,
        }
        return protos[self]

    @classmethod
    def from_proto(cls, value: int) -> Kind | None:
        kinds: dict[int, Kind] = {
            pipeline_pb2.Target.DEPLOYMENT: cls.DEPLOYMENT,
            pipeline_pb2.Target.STATEFULSET: cls.STATEFULSET,
            pipeline_pb2.Target.DAEMONSET: cls.DAEMONSET,
        }
        return kinds.get(value)


@dataclass(frozen=True, order=True)
class WorkloadRef:
    cluster: str
    namespace: str
    kind: Kind
    name: str

    def __str__(self) -> str:
        return f"{self.kind.value} {self.namespace}/{self.name} in cluster {self.cluster}"

    @property
    def key(self) -> tuple[str, str, str, str]:
        """What runs are serialised on."""
        return (self.cluster, self.namespace, self.kind.value, self.name)


@dataclass(frozen=True)
class ContainerSlot:
    """Where a container sits in a workload's pod template."""

    name: str
    image: str
    index: int
    init: bool

    @property
    def pointer(self) -> str:
        """JSON pointer of the container in the workload."""
        field = "initContainers" if self.init else "containers"
        return f"/spec/template/spec/{field}/{self.index}"

    @property
    def description(self) -> str:
        return f"init container {self.name!r}" if self.init else f"container {self.name!r}"


@dataclass(frozen=True)
class ContainerImage:
    name: str
    image: str


@dataclass(frozen=True)
class WorkloadSummary:
    ref: WorkloadRef
    containers: tuple[ContainerImage, ...]
    init_containers: tuple[ContainerImage, ...]


class ContainerNotFound(LookupError):
    def __init__(self, ref: WorkloadRef, container: str, workload: Mapping[str, Any]) -> None:
        summary = summarize(ref, workload)
        names = ", ".join(c.name for c in summary.containers) or "none"
        init_names = ", ".join(c.name for c in summary.init_containers) or "none"
        super().__init__(
            f"container {container!r} not found in {ref}: its containers are {names}; its init containers are "
            f"{init_names}. Fix the pipeline's target container."
        )


def pod_spec(workload: Mapping[str, Any]) -> Mapping[str, Any]:
    return ((workload.get("spec") or {}).get("template") or {}).get("spec") or {}


def summarize(ref: WorkloadRef, workload: Mapping[str, Any]) -> WorkloadSummary:
    spec = pod_spec(workload)

    def images(items: Sequence[Mapping[str, Any]] | None) -> tuple[ContainerImage, ...]:
        return tuple(ContainerImage(str(c.get("name", "")), str(c.get("image", ""))) for c in items or [])

    return WorkloadSummary(ref, images(spec.get("containers")), images(spec.get("initContainers")))


def find_container(ref: WorkloadRef, workload: Mapping[str, Any], name: str) -> ContainerSlot:
    """The named container: regular containers first, then init containers."""
    spec = pod_spec(workload)
    for init, field in ((False, "containers"), (True, "initContainers")):
        for index, container in enumerate(spec.get(field) or []):
            if container.get("name") == name:
                return ContainerSlot(name, str(container.get("image", "")), index, init)
    raise ContainerNotFound(ref, name, workload)


def resource_version(workload: Mapping[str, Any]) -> str:
    return str((workload.get("metadata") or {}).get("resourceVersion", ""))


def workload_annotations(workload: Mapping[str, Any]) -> Mapping[str, str]:
    return (workload.get("metadata") or {}).get("annotations") or {}


# ---- label selectors -----------------------------------------------------------------------

_OPERATORS = {"In": "in", "NotIn": "notin"}


def selector_string(selector: Mapping[str, Any] | None) -> str:
    """A workload's `spec.selector` (matchLabels + matchExpressions) as a `labelSelector` query."""
    if not selector:
        return ""
    parts = [f"{key}={value}" for key, value in sorted((selector.get("matchLabels") or {}).items())]
    for expression in selector.get("matchExpressions") or []:
        key, operator = expression.get("key", ""), expression.get("operator", "")
        values = ",".join(sorted(expression.get("values") or []))
        if operator in _OPERATORS:
            parts.append(f"{key} {_OPERATORS[operator]} ({values})")
        elif operator == "Exists":
            parts.append(key)
        elif operator == "DoesNotExist":
            parts.append(f"!{key}")
    return ",".join(parts)


def selector_matches(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    """Client-side check of a label selector (servers may ignore or approximate it; we do not rely on them)."""
    if not selector:
        return False  # an empty selector selects nothing for workloads
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions") or []:
        key, operator = expression.get("key", ""), expression.get("operator", "")
        values = set(expression.get("values") or [])
        if operator == "In" and labels.get(key) not in values:
            return False
        if operator == "NotIn" and key in labels and labels[key] in values:
            return False
        if operator == "Exists" and key not in labels:
            return False
        if operator == "DoesNotExist" and key in labels:
            return False
    return True


# ---- what Conveyor records on a workload -----------------------------------------------------

CHANGE_CAUSE_ANNOTATION = "kubernetes.io/change-cause"
# One annotation per container: the last run that set its image (JSON). It lets a restarted
# deployer recognise its own patch and refuse to apply an older request after a newer one.
DEPLOY_RECORD_PREFIX = "deploy.conveyor.dev/"


class RecordState(Enum):
    APPLIED = "applied"
    ROLLED_BACK = "rolled-back"


@dataclass(frozen=True)
class DeployRecord:
    run: str
    requested_at: dt.datetime
    image: str
    previous_image: str
    state: RecordState = RecordState.APPLIED

    def to_json(self) -> str:
        return json.dumps(
            {
                "run": self.run,
                # Full precision: requests accepted within one millisecond must still order the same way.
                "requestedAt": self.requested_at.astimezone(dt.UTC).isoformat(timespec="microseconds"),
                "image": self.image,
                "previousImage": self.previous_image,
                "state": self.state.value,
            },
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, text: str) -> DeployRecord | None:
        try:
            data = json.loads(text)
            return cls(
                run=str(data["run"]),
                requested_at=dt.datetime.fromisoformat(str(data["requestedAt"])).astimezone(dt.UTC),
                image=str(data.get("image", "")),
                previous_image=str(data.get("previousImage", "")),
                state=RecordState(data.get("state", RecordState.APPLIED.value)),
            )
        except (ValueError, KeyError, TypeError):
            return None  # someone edited it by hand: ignore rather than fail deploys


def record_annotation(container: str) -> str:
    return DEPLOY_RECORD_PREFIX + container


def read_record(workload: Mapping[str, Any], container: str) -> DeployRecord | None:
    text = workload_annotations(workload).get(record_annotation(container))
    return DeployRecord.from_json(text) if text else None
