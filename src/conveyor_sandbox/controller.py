"""The sandbox's stand-in for the workload controllers and the kubelet.

The emulator stores objects but nothing acts on them. After a Deployment, StatefulSet or
DaemonSet's pod template changes (its `metadata.generation` moves past
`status.observedGeneration`), `RolloutSimulator` waits `delay` seconds and then does what the
controllers would: records the new revision (ReplicaSet / ControllerRevision), replaces the pods
with pods of the new template, and writes the workload status of a completed rollout.

When an image of the new template has a tag matching `unpullable_tags`, the rollout stalls
instead, as on a real cluster whose nodes cannot pull the image: one new pod sits in
`ErrImagePull` (then `ImagePullBackOff`), the old pods keep serving, and the status shows the
rollout in progress.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import hashlib
import json
import logging
from collections.abc import Iterable
from typing import Any

import kmock
import re2

from conveyor.refs import parse_image
from conveyor_sandbox.emulator import (
    CONTROLLERREVISIONS,
    DAEMONSETS,
    DEPLOYMENTS,
    PODS,
    REPLICASETS,
    STATEFULSETS,
    WORKLOADS,
    SandboxEmulator,
    now_rfc3339,
)

log = logging.getLogger(__name__)

# Tags whose images the sandbox pretends it cannot pull (full match).
DEFAULT_UNPULLABLE_TAGS = r".*(broken|-unpullable)"
# The sandbox's pretend nodes (DaemonSets run one pod on each).
NODES = ("sandbox-node-1", "sandbox-node-2")

_SAFE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
_IMAGE_PULL_BACKOFF_AFTER = 1.0

WorkloadKey = tuple[kmock.resource, str, str]


def safe_hash(text: str, length: int = 10) -> str:
    """A short hash in the alphabet Kubernetes uses for pod-template hashes."""
    digest = hashlib.sha256(text.encode()).digest()
    return "".join(_SAFE_ALPHABET[b % len(_SAFE_ALPHABET)] for b in digest[:length])


def template_hash(template: dict[str, Any]) -> str:
    return safe_hash(json.dumps(template, sort_keys=True))


class RolloutSimulator:
    """Moves workloads to "rollout complete" (or a stuck image pull) after their template changes."""

    def __init__(
        self,
        emulator: SandboxEmulator,
        *,
        delay: float = 1.0,
        unpullable_tags: str = DEFAULT_UNPULLABLE_TAGS,
        enabled: bool = True,
    ) -> None:
        self.emulator = emulator
        self.delay = delay
        self.enabled = enabled
        self.unpullable_tags = unpullable_tags
        self._unpullable = re2.compile(unpullable_tags)
        self._timers: dict[WorkloadKey, asyncio.Task[None]] = {}
        emulator.add_listener(self._on_write)

    def resume(self) -> None:
        """Finish the rollouts a restored state left under way (template changed, status not yet)."""
        for resource in WORKLOADS:
            for obj in self.emulator.list_objects(resource):
                meta = obj["metadata"]
                self._on_write(resource, meta.get("namespace"), meta["name"])

    def is_unpullable(self, image: str) -> bool:
        tag = parse_image(image).tag
        return bool(tag) and self._unpullable.fullmatch(tag) is not None

    async def close(self) -> None:
        timers = list(self._timers.values())
        self._timers.clear()
        for task in timers:
            task.cancel()
        for task in timers:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    def _on_write(self, resource: kmock.resource, namespace: str | None, name: str) -> None:
        if not self.enabled or resource not in WORKLOADS or namespace is None:
            return
        obj = self.emulator.read_object(resource, namespace, name)
        if obj is None:
            return
        generation = obj["metadata"].get("generation", 1)
        if (obj.get("status") or {}).get("observedGeneration") == generation:
            return  # metadata-only change: nothing for a controller to do
        key = (resource, namespace, name)
        previous = self._timers.pop(key, None)
        if previous is not None:
            previous.cancel()
        self._timers[key] = asyncio.get_running_loop().create_task(self._delayed(key, self.delay))

    async def _delayed(self, key: WorkloadKey, delay: float) -> None:
        try:
            await asyncio.sleep(delay)
            await self.reconcile(*key)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("sandbox controller failed", extra={"workload": f"{key[1]}/{key[2]}"})
        finally:
            if self._timers.get(key) is asyncio.current_task():
                del self._timers[key]

    async def reconcile(self, resource: kmock.resource, namespace: str, name: str) -> None:
        """Act on the workload's current template now (regardless of `enabled` and `delay`)."""
        pending = self._timers.get((resource, namespace, name))
        if pending is not None and pending is not asyncio.current_task():
            pending.cancel()
            del self._timers[(resource, namespace, name)]
        obj = self.emulator.read_object(resource, namespace, name)
        if obj is None:
            return
        if resource == DEPLOYMENTS:
            stuck = await self._reconcile_deployment(obj)
        elif resource == STATEFULSETS:
            stuck = await self._reconcile_statefulset(obj)
        elif resource == DAEMONSETS:
            stuck = await self._reconcile_daemonset(obj)
        else:
            raise ValueError(f"not a workload resource: {resource}")
        if stuck:
            # The kubelet retries the pull, fails again, and backs off.
            await asyncio.sleep(min(self.delay, _IMAGE_PULL_BACKOFF_AFTER))
            for pod_name in stuck:
                await self._back_off(namespace, pod_name)

    # ---- Deployments ----------------------------------------------------------------------

    async def _reconcile_deployment(self, deployment: dict[str, Any]) -> list[str]:
        meta, spec = deployment["metadata"], deployment.get("spec", {})
        namespace, name = meta["namespace"], meta["name"]
        replicas = int(spec.get("replicas", 1))
        template = spec.get("template", {})
        new_hash = template_hash(template)
        owned_sets = [rs for rs in self.emulator.list_objects(REPLICASETS, namespace) if _owned_by(rs, meta)]
        revision = 1 + max((_revision(rs) for rs in owned_sets), default=0)
        new_set_name = f"{name}-{new_hash}"
        new_set = next((rs for rs in owned_sets if rs["metadata"]["name"] == new_set_name), None)
        if new_set is not None:
            revision = _revision(new_set)
        unpullable = self._unpullable_images(template)
        pods = [
            p
            for p in self.emulator.list_objects(PODS, namespace)
            if any(_owned_by(p, rs["metadata"]) for rs in owned_sets)
        ]
        new_pods = [p for p in pods if p["metadata"].get("labels", {}).get("pod-template-hash") == new_hash]
        old_pods = [p for p in pods if p not in new_pods]
        wanted_new = min(1, replicas) if unpullable and old_pods else replicas
        new_set = await self.emulator.store(
            REPLICASETS,
            _owned_object(
                "ReplicaSet",
                new_set_name,
                deployment,
                labels={**_labels(template), "pod-template-hash": new_hash},
                annotations={
                    "deployment.kubernetes.io/revision": str(revision),
                    **_change_cause(deployment),
                },
                spec={
                    "replicas": wanted_new,
                    "selector": _with_label(spec.get("selector", {}), "pod-template-hash", new_hash),
                    "template": _template_with_label(template, "pod-template-hash", new_hash),
                },
            ),
        )
        stuck: list[str] = []
        for index in range(wanted_new):
            pod_name = f"{new_set_name}-{safe_hash(f'{new_set_name}/{index}', 5)}"
            if self.emulator.read_object(PODS, namespace, pod_name) is None:
                await self._create_pod(
                    pod_name,
                    namespace=namespace,
                    template=template,
                    extra_labels={"pod-template-hash": new_hash},
                    owner=new_set,
                    node=NODES[index % len(NODES)],
                )
                if unpullable:
                    stuck.append(pod_name)
        expected = {f"{new_set_name}-{safe_hash(f'{new_set_name}/{index}', 5)}" for index in range(wanted_new)}
        for pod in new_pods:
            if pod["metadata"]["name"] not in expected:
                await self.emulator.remove_object(PODS, namespace, pod["metadata"]["name"])
        ready_new = 0 if unpullable else wanted_new
        if not unpullable:
            for pod in old_pods:
                await self.emulator.remove_object(PODS, namespace, pod["metadata"]["name"])
            for rs in owned_sets:
                if rs["metadata"]["name"] != new_set_name and (rs.get("spec") or {}).get("replicas", 0):
                    rs["spec"]["replicas"] = 0
                    rs["status"] = {"replicas": 0, "observedGeneration": rs["metadata"].get("generation", 1)}
                    await self.emulator.store(REPLICASETS, rs, notify=False)
        old_ready = len(old_pods) if unpullable else 0
        await self.emulator.store_status(
            REPLICASETS,
            namespace,
            new_set_name,
            {
                "replicas": wanted_new,
                "readyReplicas": ready_new,
                "availableReplicas": ready_new,
                "fullyLabeledReplicas": wanted_new,
                "observedGeneration": new_set["metadata"].get("generation", 1),
            },
        )
        now = now_rfc3339()
        if unpullable:
            progressing = {
                "type": "Progressing",
                "status": "True",
                "reason": "ReplicaSetUpdated",
                "message": f'ReplicaSet "{new_set_name}" is progressing.',
            }
        else:
            progressing = {
                "type": "Progressing",
                "status": "True",
                "reason": "NewReplicaSetAvailable",
                "message": f'ReplicaSet "{new_set_name}" has successfully progressed.',
            }
        available = ready_new + old_ready
        status = {
            "observedGeneration": meta.get("generation", 1),
            "replicas": wanted_new + old_ready,
            "updatedReplicas": wanted_new,
            "readyReplicas": available,
            "availableReplicas": available,
            "conditions": [
                {
                    "type": "Available",
                    "status": "True" if available >= replicas else "False",
                    "reason": "MinimumReplicasAvailable" if available >= replicas else "MinimumReplicasUnavailable",
                    "message": "Deployment has minimum availability."
                    if available >= replicas
                    else "Deployment does not have minimum availability.",
                    "lastUpdateTime": now,
                    "lastTransitionTime": now,
                },
                {**progressing, "lastUpdateTime": now, "lastTransitionTime": now},
            ],
        }
        unavailable = wanted_new + old_ready - available
        if unavailable:
            status["unavailableReplicas"] = unavailable
        await self.emulator.store_status(DEPLOYMENTS, namespace, name, status)
        return stuck

    # ---- StatefulSets -----------------------------------------------------------------------

    async def _reconcile_statefulset(self, statefulset: dict[str, Any]) -> list[str]:
        meta, spec = statefulset["metadata"], statefulset.get("spec", {})
        namespace, name = meta["namespace"], meta["name"]
        replicas = int(spec.get("replicas", 1))
        template = spec.get("template", {})
        new_revision = f"{name}-{template_hash(template)}"
        old_status = statefulset.get("status") or {}
        current_revision = old_status.get("currentRevision") or new_revision
        await self._record_revision(statefulset, new_revision, template)
        partition = int(((spec.get("updateStrategy") or {}).get("rollingUpdate") or {}).get("partition", 0) or 0)
        unpullable = self._unpullable_images(template)
        stuck: list[str] = []
        # Highest ordinal first, as the StatefulSet controller does; a stuck pod halts the rollout.
        for ordinal in reversed(range(replicas)):
            pod_name = f"{name}-{ordinal}"
            pod = self.emulator.read_object(PODS, namespace, pod_name)
            pod_revision = (pod or {}).get("metadata", {}).get("labels", {}).get("controller-revision-hash")
            if pod is None or (pod_revision != new_revision and ordinal >= partition and not stuck):
                await self._create_pod(
                    pod_name,
                    namespace=namespace,
                    template=template,
                    extra_labels={
                        "controller-revision-hash": new_revision,
                        "statefulset.kubernetes.io/pod-name": pod_name,
                    },
                    owner=statefulset,
                    node=NODES[ordinal % len(NODES)],
                )
                if unpullable:
                    stuck.append(pod_name)
        pods = []
        for pod in self.emulator.list_objects(PODS, namespace):
            ordinal_text = pod["metadata"]["name"].removeprefix(f"{name}-")
            if not _owned_by(pod, meta) or not ordinal_text.isdigit():
                continue
            if int(ordinal_text) >= replicas:
                await self.emulator.remove_object(PODS, namespace, pod["metadata"]["name"])
            else:
                pods.append(pod)
        updated = sum(1 for p in pods if p["metadata"]["labels"].get("controller-revision-hash") == new_revision)
        ready = sum(1 for p in pods if _pod_ready(p))
        all_updated = updated == replicas and ready == replicas
        status = {
            "observedGeneration": meta.get("generation", 1),
            "replicas": len(pods),
            "readyReplicas": ready,
            "availableReplicas": ready,
            "currentReplicas": len(pods) if all_updated else len(pods) - updated,
            "updatedReplicas": updated,
            "currentRevision": new_revision if all_updated else current_revision,
            "updateRevision": new_revision,
            "collisionCount": 0,
        }
        await self.emulator.store_status(STATEFULSETS, namespace, name, status)
        return stuck

    # ---- DaemonSets -------------------------------------------------------------------------

    async def _reconcile_daemonset(self, daemonset: dict[str, Any]) -> list[str]:
        meta, spec = daemonset["metadata"], daemonset.get("spec", {})
        namespace, name = meta["namespace"], meta["name"]
        template = spec.get("template", {})
        new_hash = template_hash(template)
        await self._record_revision(daemonset, f"{name}-{new_hash}", template)
        unpullable = self._unpullable_images(template)
        pods = [p for p in self.emulator.list_objects(PODS, namespace) if _owned_by(p, meta)]
        by_node = {p.get("spec", {}).get("nodeName"): p for p in pods}
        stuck: list[str] = []
        for node in NODES:
            pod = by_node.get(node)
            current = (pod or {}).get("metadata", {}).get("labels", {}).get("controller-revision-hash")
            # maxUnavailable 1: a pod that cannot start stops the rollout on the other nodes.
            if pod is None or (current != new_hash and not stuck):
                if pod is not None:
                    await self.emulator.remove_object(PODS, namespace, pod["metadata"]["name"])
                pod_name = f"{name}-{safe_hash(f'{name}/{node}/{new_hash}', 5)}"
                await self._create_pod(
                    pod_name,
                    namespace=namespace,
                    template=template,
                    extra_labels={"controller-revision-hash": new_hash},
                    owner=daemonset,
                    node=node,
                )
                if unpullable:
                    stuck.append(pod_name)
        pods = [p for p in self.emulator.list_objects(PODS, namespace) if _owned_by(p, meta)]
        updated = sum(1 for p in pods if p["metadata"]["labels"].get("controller-revision-hash") == new_hash)
        ready = sum(1 for p in pods if _pod_ready(p))
        desired = len(NODES)
        status = {
            "observedGeneration": meta.get("generation", 1),
            "desiredNumberScheduled": desired,
            "currentNumberScheduled": desired,
            "numberMisscheduled": 0,
            "numberReady": ready,
            "numberAvailable": ready,
            "updatedNumberScheduled": updated,
        }
        if desired - ready:
            status["numberUnavailable"] = desired - ready
        await self.emulator.store_status(DAEMONSETS, namespace, name, status)
        return stuck

    # ---- pods -----------------------------------------------------------------------------

    def _unpullable_images(self, template: dict[str, Any]) -> set[str]:
        pod_spec = template.get("spec", {})
        containers = [*pod_spec.get("initContainers", []), *pod_spec.get("containers", [])]
        return {c["image"] for c in containers if c.get("image") and self.is_unpullable(c["image"])}

    async def _record_revision(self, owner: dict[str, Any], name: str, template: dict[str, Any]) -> dict[str, Any]:
        namespace = owner["metadata"]["namespace"]
        existing = self.emulator.read_object(CONTROLLERREVISIONS, namespace, name)
        if existing is not None:
            return existing
        revisions = [
            r for r in self.emulator.list_objects(CONTROLLERREVISIONS, namespace) if _owned_by(r, owner["metadata"])
        ]
        revision = _owned_object("ControllerRevision", name, owner, labels=_labels(template), annotations={})
        revision.pop("spec")
        revision["data"] = {"spec": {"template": template}}
        revision["revision"] = 1 + max((int(r.get("revision", 0)) for r in revisions), default=0)
        return await self.emulator.store(CONTROLLERREVISIONS, revision)

    async def _create_pod(
        self,
        name: str,
        *,
        namespace: str,
        template: dict[str, Any],
        extra_labels: dict[str, str],
        owner: dict[str, Any],
        node: str,
    ) -> None:
        pod_spec = copy.deepcopy(template.get("spec", {}))
        pod_spec["nodeName"] = node
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "labels": {**_labels(template), **extra_labels},
                "annotations": dict((template.get("metadata") or {}).get("annotations") or {}),
                "ownerReferences": [_owner_reference(owner)],
            },
            "spec": pod_spec,
            "status": self._pod_status(pod_spec),
        }
        await self.emulator.remove_object(PODS, namespace, name)
        await self.emulator.store(PODS, pod)

    def _pod_status(self, pod_spec: dict[str, Any]) -> dict[str, Any]:
        now = now_rfc3339()
        init_containers = pod_spec.get("initContainers", [])
        containers = pod_spec.get("containers", [])
        broken_init = next((c for c in init_containers if self.is_unpullable(c.get("image", ""))), None)
        init_statuses = []
        for container in init_containers:
            if broken_init is not None and container is broken_init:
                state: dict[str, Any] = {"waiting": self._pull_error(container["image"])}
            elif broken_init is not None and init_containers.index(container) > init_containers.index(broken_init):
                state = {"waiting": {"reason": "PodInitializing"}}
            else:
                state = {"terminated": {"exitCode": 0, "reason": "Completed", "startedAt": now, "finishedAt": now}}
            init_statuses.append(_container_status(container, state, ready=broken_init is None))
        statuses = []
        all_ready = broken_init is None
        for container in containers:
            if broken_init is not None:
                state = {"waiting": {"reason": "PodInitializing"}}
                ready = False
            elif self.is_unpullable(container.get("image", "")):
                state = {"waiting": self._pull_error(container["image"])}
                ready = False
                all_ready = False
            else:
                state = {"running": {"startedAt": now}}
                ready = True
            statuses.append(_container_status(container, state, ready=ready))
        ready_text = "True" if all_ready else "False"
        return {
            "phase": "Running" if all_ready else "Pending",
            "conditions": [
                {
                    "type": "Initialized",
                    "status": "True" if broken_init is None else "False",
                    "lastTransitionTime": now,
                },
                {"type": "Ready", "status": ready_text, "lastTransitionTime": now},
                {"type": "ContainersReady", "status": ready_text, "lastTransitionTime": now},
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": now},
            ],
            "hostIP": "10.0.0.1",
            "podIP": "10.1.0." + str(int(hashlib.sha256(str(containers).encode()).hexdigest()[:2], 16)),
            "startTime": now,
            "initContainerStatuses": init_statuses,
            "containerStatuses": statuses,
            "qosClass": "BestEffort",
        }

    def _pull_error(self, image: str) -> dict[str, str]:
        return {
            "reason": "ErrImagePull",
            "message": (
                f'failed to pull image "{image}": the Conveyor sandbox cannot pull images whose tag matches '
                f"{self.unpullable_tags!r} (simulated registry failure)"
            ),
        }

    async def _back_off(self, namespace: str, pod_name: str) -> None:
        pod = self.emulator.read_object(PODS, namespace, pod_name)
        if pod is None:
            return
        status = pod.get("status", {})
        changed = False
        for field in ("initContainerStatuses", "containerStatuses"):
            for container_status in status.get(field, []):
                waiting = container_status.get("state", {}).get("waiting", {})
                if waiting.get("reason") == "ErrImagePull":
                    waiting["reason"] = "ImagePullBackOff"
                    waiting["message"] = f'Back-off pulling image "{container_status["image"]}"'
                    changed = True
        if changed:
            await self.emulator.store_status(PODS, namespace, pod_name, status)


def _container_status(container: dict[str, Any], state: dict[str, Any], *, ready: bool) -> dict[str, Any]:
    image = container.get("image", "")
    return {
        "name": container["name"],
        "image": image,
        "imageID": ""
        if "waiting" in state
        else f"{image.split('@')[0]}@sha256:{hashlib.sha256(image.encode()).hexdigest()}",
        "ready": ready and "running" in state,
        "started": "running" in state,
        "restartCount": 0,
        "state": state,
    }


def _pod_ready(pod: dict[str, Any]) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def _labels(template: dict[str, Any]) -> dict[str, str]:
    return dict((template.get("metadata") or {}).get("labels") or {})


def _with_label(selector: dict[str, Any], key: str, value: str) -> dict[str, Any]:
    result = copy.deepcopy(selector)
    result.setdefault("matchLabels", {})[key] = value
    return result


def _template_with_label(template: dict[str, Any], key: str, value: str) -> dict[str, Any]:
    result = copy.deepcopy(template)
    result.setdefault("metadata", {}).setdefault("labels", {})[key] = value
    return result


def _change_cause(workload: dict[str, Any]) -> dict[str, str]:
    cause = (workload["metadata"].get("annotations") or {}).get("kubernetes.io/change-cause")
    return {"kubernetes.io/change-cause": cause} if cause else {}


def _owner_reference(owner: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": owner.get("apiVersion", "apps/v1"),
        "kind": owner.get("kind", ""),
        "name": owner["metadata"]["name"],
        "uid": owner["metadata"].get("uid", ""),
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _owned_object(
    kind: str,
    name: str,
    owner: dict[str, Any],
    *,
    labels: dict[str, str],
    annotations: dict[str, str],
    spec: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": kind,
        "metadata": {
            "name": name,
            "namespace": owner["metadata"]["namespace"],
            "labels": labels,
            "annotations": annotations,
            "ownerReferences": [_owner_reference(owner)],
        },
        "spec": spec or {},
    }


def _owned_by(obj: dict[str, Any], owner_meta: dict[str, Any]) -> bool:
    refs: Iterable[dict[str, Any]] = obj.get("metadata", {}).get("ownerReferences") or []
    return any(ref.get("uid") == owner_meta.get("uid") and ref.get("name") == owner_meta.get("name") for ref in refs)


def _revision(replica_set: dict[str, Any]) -> int:
    try:
        return int((replica_set["metadata"].get("annotations") or {}).get("deployment.kubernetes.io/revision", 0))
    except ValueError:
        return 0
