"""In-memory fakes of the deployer's ports, for behaviour the API emulator cannot show."""

from __future__ import annotations

import copy
import datetime as dt
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import jsonpatch

from conveyor.v1 import bus_pb2
from conveyor_deployer.domain.kube_errors import KubeApiError
from conveyor_deployer.domain.patch import JsonPatch
from conveyor_deployer.domain.workloads import Kind, WorkloadRef
from conveyor_deployer.usecases.requests import DeployRequest

CLUSTER = "c1"
REF = WorkloadRef(CLUSTER, "demo", Kind.DEPLOYMENT, "web")


def deployment(image: str = "r.io/team/web:1", *, generation: int = 1, complete: bool = True) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "demo", "generation": generation, "resourceVersion": "10"},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "app", "image": image}, {"name": "sidecar", "image": "r.io/side:1"}]},
            },
        },
        "status": rolled_out(generation) if complete else {"observedGeneration": generation - 1},
    }


def rolled_out(generation: int) -> dict[str, Any]:
    return {
        "observedGeneration": generation,
        "replicas": 2,
        "updatedReplicas": 2,
        "readyReplicas": 2,
        "availableReplicas": 2,
    }


def api_error(status: int | None, verb: str = "get", message: str = "", causes: tuple[str, ...] = ()) -> KubeApiError:
    return KubeApiError(CLUSTER, verb, "deployments.apps", "demo", "web", status, "", message, causes)


class FakeWorkloadApi:
    """One cluster's workloads and pods in memory; JSON patches applied like an apiserver.

    `failures[method]` holds errors raised (in order) before the method works again;
    `after_patch` lets a test play the controller after each successful patch.
    """

    def __init__(self, workload: dict[str, Any] | None = None) -> None:
        self.objects: dict[WorkloadRef, dict[str, Any]] = {}
        if workload is not None:
            self.objects[REF] = workload
        self.namespaces = {"demo"}
        self.pods: list[dict[str, Any]] = []
        self.failures: dict[str, list[KubeApiError]] = defaultdict(list)
        self.calls: list[str] = []
        self.patches: list[JsonPatch] = []
        self.after_patch: Callable[[dict[str, Any]], None] | None = None
        self._version = 10

    def _maybe_fail(self, method: str) -> None:
        self.calls.append(method)
        if self.failures[method]:
            raise self.failures[method].pop(0)

    async def list_namespaces(self, cluster: str) -> list[str]:
        self._maybe_fail("list_namespaces")
        return sorted(self.namespaces)

    async def namespace_exists(self, cluster: str, namespace: str) -> bool:
        self._maybe_fail("namespace_exists")
        return namespace in self.namespaces

    async def list_workloads(self, cluster: str, namespace: str, kind: Kind) -> list[dict[str, Any]]:
        self._maybe_fail("list_workloads")
        return [copy.deepcopy(o) for r, o in self.objects.items() if r.namespace == namespace and r.kind is kind]

    async def get_workload(self, ref: WorkloadRef) -> dict[str, Any]:
        self._maybe_fail("get_workload")
        if ref not in self.objects:
            raise KubeApiError(ref.cluster, "get", "deployments.apps", ref.namespace, ref.name, 404, "NotFound")
        return copy.deepcopy(self.objects[ref])

    async def patch_workload(self, ref: WorkloadRef, patch: JsonPatch) -> dict[str, Any]:
        self._maybe_fail("patch_workload")
        current = self.objects[ref]
        try:
            patched = jsonpatch.apply_patch(current, patch, in_place=False)
        except jsonpatch.JsonPatchTestFailed as exc:
            raise api_error(422, "patch", "the server rejected our request", (str(exc),)) from None
        self.patches.append(patch)
        self._version += 1
        patched["metadata"]["resourceVersion"] = str(self._version)
        if patched["spec"] != current["spec"]:
            patched["metadata"]["generation"] = current["metadata"]["generation"] + 1
        self.objects[ref] = patched
        if self.after_patch is not None:
            self.after_patch(patched)
        return copy.deepcopy(patched)

    async def list_pods(self, cluster: str, namespace: str, label_selector: str) -> list[dict[str, Any]]:
        self._maybe_fail("list_pods")
        return copy.deepcopy(self.pods)

    def touch(self) -> None:
        """Someone else changed the object (new resourceVersion)."""
        self._version += 1
        self.objects[REF]["metadata"]["resourceVersion"] = str(self._version)


class MemorySink:
    def __init__(self) -> None:
        self.events: list[bus_pb2.RunEvent] = []

    async def publish(self, event: bus_pb2.RunEvent) -> bool:
        if any(e.event_id == event.event_id for e in self.events):
            return False
        self.events.append(event)
        return True

    def lines(self) -> list[str]:
        return [f"{entry.step}: {entry.message}" for event in self.events for entry in event.log_entries]


class FakeClock:
    """Monotonic time that advances only when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def request(
    *,
    run_id: str = "01jabcdefghjkmnpqrstvwxyz0",
    image: str = "r.io/team/web:2",
    container: str = "app",
    requested_at: dt.datetime | None = None,
    rollback: bool = False,
    timeout: float = 60.0,
    workload: str = "web",
) -> DeployRequest:
    return DeployRequest(
        run=f"pipelines/web/runs/{run_id}",
        pipeline_id="web",
        run_id=run_id,
        target=WorkloadRef(CLUSTER, "demo", Kind.DEPLOYMENT, workload),
        container=container,
        image=image,
        tag=image.rsplit(":", 1)[-1],
        digest="",
        trigger=2,
        requested_at=requested_at or dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
        event_id="",
        verify=True,
        rollout_timeout=timeout,
        rollback_on_failure=rollback,
    )
