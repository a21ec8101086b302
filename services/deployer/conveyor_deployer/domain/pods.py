"""Why a rollout's new pods cannot become ready, in words a user can act on."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from conveyor.refs import parse_image
from conveyor_deployer.domain.workloads import selector_matches

PULL_FAILURES = {"ErrImagePull", "ImagePullBackOff", "RegistryUnavailable"}
# Waiting reasons that are normal while a pod starts: not worth mentioning.
_STARTING = {"ContainerCreating", "PodInitializing", ""}


@dataclass(frozen=True)
class PodFailure:
    pod: str
    container: str
    reason: str
    message: str


def new_pods(
    pods: Iterable[dict[str, Any]], selector: Mapping[str, Any] | None, container: str, image: str
) -> list[dict[str, Any]]:
    """Pods of the workload (selector checked here, whatever the server did) running the new image."""
    found = []
    for pod in pods:
        meta = pod.get("metadata") or {}
        if meta.get("deletionTimestamp") or not selector_matches(selector, meta.get("labels") or {}):
            continue
        spec = pod.get("spec") or {}
        for item in [*(spec.get("containers") or []), *(spec.get("initContainers") or [])]:
            if item.get("name") == container and item.get("image") == image:
                found.append(pod)
                break
    return found


def pull_failure_message(image: str, cluster: str, detail: str) -> str:
    registry = parse_image(image).registry
    return (
        f"the cluster cannot pull {image}: check that cluster {cluster} can reach registry {registry} and that its "
        f"pull secret / registry credentials are configured ({detail})"
    )


def classify(pods: Iterable[Mapping[str, Any]], cluster: str) -> PodFailure | None:
    """The first failure that will not resolve by waiting, or None."""
    for pod in pods:
        pod_name = (pod.get("metadata") or {}).get("name", "")
        status = pod.get("status") or {}
        for container_status in [
            *(status.get("initContainerStatuses") or []),
            *(status.get("containerStatuses") or []),
        ]:
            failure = _container_failure(pod_name, container_status, pod, cluster)
            if failure is not None:
                return failure
    return None


def _spec_image(pod: Mapping[str, Any], container: str) -> str:
    spec = pod.get("spec") or {}
    for item in [*(spec.get("containers") or []), *(spec.get("initContainers") or [])]:
        if item.get("name") == container:
            return str(item.get("image", ""))
    return ""


def _container_failure(
    pod_name: str, container_status: Mapping[str, Any], pod: Mapping[str, Any], cluster: str
) -> PodFailure | None:
    name = str(container_status.get("name", ""))
    waiting = (container_status.get("state") or {}).get("waiting") or {}
    reason = str(waiting.get("reason", ""))
    server_message = str(waiting.get("message", "")).strip()
    # The spec's image is what was asked for; the status may show a resolved form.
    image = _spec_image(pod, name) or str(container_status.get("image", ""))
    if reason in PULL_FAILURES:
        detail = f"pod {pod_name}, container {name}: {reason}" + (f": {server_message}" if server_message else "")
        return PodFailure(pod_name, name, reason, pull_failure_message(image, cluster, detail))
    if reason == "InvalidImageName":
        return PodFailure(
            pod_name,
            name,
            reason,
            f"the image reference {image!r} is invalid (pod {pod_name}, container {name}: {server_message or reason})",
        )
    if reason == "CrashLoopBackOff":
        last = (container_status.get("lastState") or {}).get("terminated") or {}
        restarts = container_status.get("restartCount", 0)
        if last:
            ending = f"last exit code {last.get('exitCode', '?')} ({last.get('reason') or 'Error'})"
            if last.get("message"):
                ending += f": {str(last['message']).strip()}"
        else:
            ending = "no termination details reported"
        return PodFailure(
            pod_name,
            name,
            reason,
            f"container {name} of pod {pod_name} keeps crashing (CrashLoopBackOff, {restarts} restarts): {ending}",
        )
    if reason == "ErrImageNeverPull":
        return PodFailure(
            pod_name,
            name,
            reason,
            f"{image} is not present on the node of pod {pod_name} and container {name} has imagePullPolicy Never",
        )
    return None


def waiting_reasons(pods: Iterable[Mapping[str, Any]], limit: int = 3) -> list[str]:
    """Why new pods are still waiting (e.g. CreateContainerConfigError), for a timeout message."""
    reasons: list[str] = []
    for pod in pods:
        pod_name = (pod.get("metadata") or {}).get("name", "")
        status = pod.get("status") or {}
        for container_status in [
            *(status.get("initContainerStatuses") or []),
            *(status.get("containerStatuses") or []),
        ]:
            waiting = (container_status.get("state") or {}).get("waiting") or {}
            reason = str(waiting.get("reason", ""))
            if reason in _STARTING:
                continue
            message = str(waiting.get("message", "")).strip()
            reasons.append(
                f"pod {pod_name} container {container_status.get('name', '')}: {reason}"
                + (f": {message}" if message else "")
            )
            if len(reasons) >= limit:
                return reasons
    return reasons
