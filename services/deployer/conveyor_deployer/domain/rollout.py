"""Rollout status per workload kind, evaluated the way `kubectl rollout status` does.

Mirrors kubectl's status viewers (k8s.io/kubectl/pkg/polymorphichelpers/rollout_status.go):
the same conditions in the same order, the same messages.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from conveyor_deployer.domain.workloads import Kind


@dataclass(frozen=True)
class RolloutStatus:
    """`done`: the rollout completed. `error`: it cannot complete (stop waiting). Otherwise keep waiting."""

    message: str
    done: bool = False
    error: str | None = None


def _int(mapping: Mapping[str, Any], key: str, default: int = 0) -> int:
    value = mapping.get(key)
    return default if value is None else int(value)


def evaluate(kind: Kind, workload: Mapping[str, Any]) -> RolloutStatus:
    if kind is Kind.DEPLOYMENT:
        return deployment_status(workload)
    if kind is Kind.STATEFULSET:
        return statefulset_status(workload)
    return daemonset_status(workload)


def deployment_status(deployment: Mapping[str, Any]) -> RolloutStatus:
    meta = deployment.get("metadata") or {}
    spec = deployment.get("spec") or {}
    status = deployment.get("status") or {}
    name = meta.get("name", "")
    if spec.get("paused"):
        # kubectl would wait forever; nothing rolls out until someone resumes it.
        return RolloutStatus(
            f"deployment {name!r} is paused",
            error=f"deployment {name!r} is paused (spec.paused): the new image rolls out only after "
            f"`kubectl rollout resume deployment/{name}`",
        )
    if _int(meta, "generation") > _int(status, "observedGeneration"):
        return RolloutStatus("Waiting for deployment spec update to be observed...")
    for condition in status.get("conditions") or []:
        if condition.get("type") == "Progressing" and condition.get("reason") == "ProgressDeadlineExceeded":
            deadline = spec.get("progressDeadlineSeconds")
            detail = f" ({deadline}s)" if deadline is not None else ""
            return RolloutStatus(
                f"deployment {name!r} exceeded its progress deadline",
                error=f"deployment {name!r} exceeded its progress deadline{detail}: "
                f"{condition.get('message') or 'no progress'}",
            )
    replicas = spec.get("replicas", 1)
    updated = _int(status, "updatedReplicas")
    if replicas is not None and updated < int(replicas):
        return RolloutStatus(
            f"Waiting for deployment {name!r} rollout to finish: {updated} out of {replicas} new replicas have been "
            "updated..."
        )
    total = _int(status, "replicas")
    if total > updated:
        return RolloutStatus(
            f"Waiting for deployment {name!r} rollout to finish: {total - updated} old replicas are pending "
            "termination..."
        )
    available = _int(status, "availableReplicas")
    if available < updated:
        return RolloutStatus(
            f"Waiting for deployment {name!r} rollout to finish: {available} of {updated} updated replicas are "
            "available..."
        )
    return RolloutStatus(f"deployment {name!r} successfully rolled out", done=True)


def statefulset_status(statefulset: Mapping[str, Any]) -> RolloutStatus:
    meta = statefulset.get("metadata") or {}
    spec = statefulset.get("spec") or {}
    status = statefulset.get("status") or {}
    strategy = spec.get("updateStrategy") or {}
    if strategy.get("type", "RollingUpdate") != "RollingUpdate":
        # kubectl refuses; for a deploy the patch is all we can do: pods pick it up when deleted.
        return RolloutStatus(
            f"statefulset {meta.get('name', '')!r} uses the {strategy.get('type')} update strategy: its pods take "
            "the new image only when they are deleted; not waiting for them",
            done=True,
        )
    observed = status.get("observedGeneration")
    if observed is None or _int(meta, "generation") > int(observed):
        return RolloutStatus("Waiting for statefulset spec update to be observed...")
    replicas = spec.get("replicas", 1)
    ready = _int(status, "readyReplicas")
    if replicas is not None and ready < int(replicas):
        return RolloutStatus(f"Waiting for {int(replicas) - ready} pods to be ready...")
    rolling = strategy.get("rollingUpdate") or {}
    updated = _int(status, "updatedReplicas")
    if rolling.get("partition") is not None:
        partition = int(rolling["partition"])
        if replicas is not None and updated < int(replicas) - partition:
            return RolloutStatus(
                f"Waiting for partitioned roll out to finish: {updated} out of {int(replicas) - partition} new pods "
                "have been updated..."
            )
        return RolloutStatus(f"partitioned roll out complete: {updated} new pods have been updated...", done=True)
    update_revision = status.get("updateRevision", "")
    if update_revision != status.get("currentRevision", ""):
        return RolloutStatus(
            f"waiting for statefulset rolling update to complete {updated} pods at revision {update_revision}..."
        )
    return RolloutStatus(
        f"statefulset rolling update complete {_int(status, 'currentReplicas')} pods at revision "
        f"{status.get('currentRevision', '')}...",
        done=True,
    )


def daemonset_status(daemonset: Mapping[str, Any]) -> RolloutStatus:
    meta = daemonset.get("metadata") or {}
    spec = daemonset.get("spec") or {}
    status = daemonset.get("status") or {}
    name = meta.get("name", "")
    strategy = spec.get("updateStrategy") or {}
    if strategy.get("type", "RollingUpdate") != "RollingUpdate":
        return RolloutStatus(
            f"daemon set {name!r} uses the {strategy.get('type')} update strategy: its pods take the new image only "
            "when they are deleted; not waiting for them",
            done=True,
        )
    if _int(meta, "generation") > _int(status, "observedGeneration"):
        return RolloutStatus("Waiting for daemon set spec update to be observed...")
    desired = _int(status, "desiredNumberScheduled")
    updated = _int(status, "updatedNumberScheduled")
    if updated < desired:
        return RolloutStatus(
            f"Waiting for daemon set {name!r} rollout to finish: {updated} out of {desired} new pods have been "
            "updated..."
        )
    available = _int(status, "numberAvailable")
    if available < desired:
        return RolloutStatus(
            f"Waiting for daemon set {name!r} rollout to finish: {available} of {desired} updated pods are available..."
        )
    return RolloutStatus(f"daemon set {name!r} successfully rolled out", done=True)
