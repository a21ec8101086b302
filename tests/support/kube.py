"""Kubernetes helpers for tests: a sandbox cluster, deploy requests, and status written through the API.

Tests talk to the sandbox (kmock's emulator served over HTTP) with the official `kubernetes`
client, exactly as the deployer does; `SandboxCluster` itself is only used to start it, to
count the requests it received, and for direct reads in assertions.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import pathlib
from collections.abc import AsyncIterator
from typing import Any

from kubernetes import client, config

from conveyor.names import derived_id
from conveyor.v1 import bus_pb2, pipeline_pb2, run_pb2
from conveyor_sandbox import SandboxCluster

KINDS = {
    "Deployment": pipeline_pb2.Target.DEPLOYMENT,
    "StatefulSet": pipeline_pb2.Target.STATEFULSET,
    "DaemonSet": pipeline_pb2.Target.DAEMONSET,
}


@contextlib.asynccontextmanager
async def sandbox_cluster(
    tmp_path: pathlib.Path, *, auto_rollout: bool = True, rollout_delay: float = 0.05, samples: bool = True
) -> AsyncIterator[tuple[SandboxCluster, pathlib.Path]]:
    """A started sandbox (samples seeded) and the path of a kubeconfig for it (context `sandbox`)."""
    async with SandboxCluster(rollout_delay=rollout_delay, auto_rollout=auto_rollout) as sandbox:
        if samples:
            await sandbox.seed_samples()
        kubeconfig = sandbox.write_kubeconfig(tmp_path / "kubeconfig")
        yield sandbox, kubeconfig


class KubeClient:
    """The official client against a kubeconfig; blocking calls run in threads."""

    def __init__(self, kubeconfig: pathlib.Path, context: str = "sandbox") -> None:
        self.api_client = config.new_client_from_config(str(kubeconfig), context=context, persist_config=False)
        self.apps = client.AppsV1Api(self.api_client)
        self.core = client.CoreV1Api(self.api_client)

    def close(self) -> None:
        self.api_client.close()

    async def _json(self, call: Any) -> dict[str, Any]:
        response = await asyncio.to_thread(call)
        result: dict[str, Any] = json.loads(response.data)
        return result

    async def get(self, kind: str, namespace: str, name: str) -> dict[str, Any]:
        method = getattr(self.apps, f"read_namespaced_{_suffix(kind)}")
        return await self._json(lambda: method(name, namespace, _preload_content=False))

    async def create(self, kind: str, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        if kind == "Pod":
            return await self._json(lambda: self.core.create_namespaced_pod(namespace, body, _preload_content=False))
        method = getattr(self.apps, f"create_namespaced_{_suffix(kind)}")
        return await self._json(lambda: method(namespace, body, _preload_content=False))

    async def set_status(self, kind: str, namespace: str, name: str, status: dict[str, Any]) -> dict[str, Any]:
        """Write a workload's or pod's status through the status subresource, as a controller would."""
        if kind == "Pod":
            return await self._json(
                lambda: self.core.patch_namespaced_pod_status(
                    name,
                    namespace,
                    {"status": status},
                    _content_type="application/merge-patch+json",
                    _preload_content=False,
                )
            )
        method = getattr(self.apps, f"patch_namespaced_{_suffix(kind)}_status")
        return await self._json(
            lambda: method(
                name,
                namespace,
                {"status": status},
                _content_type="application/merge-patch+json",
                _preload_content=False,
            )
        )

    async def complete_rollout(self, kind: str, namespace: str, name: str) -> None:
        """Write the status of a finished rollout of the workload's current generation."""
        workload = await self.get(kind, namespace, name)
        await self.set_status(kind, namespace, name, complete_status(kind, workload))

    async def create_failing_pod(
        self, namespace: str, name: str, workload: dict[str, Any], *, reason: str, message: str = "", init: bool = False
    ) -> dict[str, Any]:
        """A pod of `workload`'s current template whose first (init) container waits with `reason`."""
        template = workload["spec"]["template"]
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace, "labels": dict(template["metadata"]["labels"])},
            "spec": template["spec"],
        }
        await self.create("Pod", namespace, pod)
        spec = template["spec"]
        field = "initContainers" if init else "containers"
        statuses = []
        for index, container in enumerate(spec.get(field, [])):
            state: dict[str, Any] = (
                {"waiting": {"reason": reason, "message": message}} if index == 0 else {"running": {}}
            )
            statuses.append({"name": container["name"], "image": container["image"], "ready": False, "state": state})
        status_field = "initContainerStatuses" if init else "containerStatuses"
        return await self.set_status("Pod", namespace, name, {"phase": "Pending", status_field: statuses})


def _suffix(kind: str) -> str:
    return {"Deployment": "deployment", "StatefulSet": "stateful_set", "DaemonSet": "daemon_set"}[kind]


def complete_status(kind: str, workload: dict[str, Any]) -> dict[str, Any]:
    generation = workload["metadata"].get("generation", 1)
    replicas = workload.get("spec", {}).get("replicas", 1)
    if kind == "Deployment":
        return {
            "observedGeneration": generation,
            "replicas": replicas,
            "updatedReplicas": replicas,
            "readyReplicas": replicas,
            "availableReplicas": replicas,
        }
    if kind == "StatefulSet":
        return {
            "observedGeneration": generation,
            "replicas": replicas,
            "readyReplicas": replicas,
            "currentReplicas": replicas,
            "updatedReplicas": replicas,
            "currentRevision": f"rev-{generation}",
            "updateRevision": f"rev-{generation}",
        }
    return {
        "observedGeneration": generation,
        "desiredNumberScheduled": 2,
        "currentNumberScheduled": 2,
        "updatedNumberScheduled": 2,
        "numberReady": 2,
        "numberAvailable": 2,
    }


def deploy_requested(
    *,
    pipeline: str = "web",
    run_id: str | None = None,
    kind: str = "Deployment",
    namespace: str = "demo",
    workload: str = "web",
    container: str = "app",
    image: str = "registry.example.com/demo/web:2.0.0",
    digest: str = "",
    cluster: str = "sandbox",
    requested_at: dt.datetime | None = None,
    rollout_timeout: float | None = 30.0,
    rollback_on_failure: bool = False,
    verify_rollout: bool | None = None,
    pin_digest: bool = False,
) -> bus_pb2.DeployRequested:
    """A DeployRequested as the trigger or config would publish it."""
    requested_at = requested_at or dt.datetime.now(dt.UTC)
    run_id = run_id or derived_id(int(requested_at.timestamp() * 1000), pipeline, image)
    options = pipeline_pb2.Options(rollback_on_failure=rollback_on_failure, pin_digest=pin_digest)
    if verify_rollout is not None:
        options.verify_rollout = verify_rollout
    if rollout_timeout is not None:
        options.rollout_timeout.FromTimedelta(dt.timedelta(seconds=rollout_timeout))
    message = bus_pb2.DeployRequested(
        run=f"pipelines/{pipeline}/runs/{run_id}",
        pipeline=pipeline_pb2.Pipeline(
            name=f"pipelines/{pipeline}",
            display_name=pipeline,
            target=pipeline_pb2.Target(
                platform=pipeline_pb2.Target.KUBERNETES,
                cluster=cluster,
                namespace=namespace,
                workload_kind=KINDS[kind],
                workload=workload,
                container=container,
            ),
            options=options,
        ),
        image=image,
        tag=image.rsplit(":", 1)[-1].split("@", maxsplit=1)[0],
        digest=digest,
        trigger=run_pb2.Run.MANUAL,
        event_id="",
    )
    message.requested_at.FromDatetime(requested_at)
    return message


def image_of(workload: dict[str, Any], container: str) -> str:
    spec = workload["spec"]["template"]["spec"]
    for item in [*spec.get("containers", []), *spec.get("initContainers", [])]:
        if item["name"] == container:
            return str(item["image"])
    raise AssertionError(f"no container {container} in {workload['metadata']['name']}")


def patch_bodies(sandbox: SandboxCluster, kind: str, namespace: str, name: str) -> list[Any]:
    """JSON bodies of the PATCH requests the workload (not its status) received."""
    return [
        request.data
        for request in sandbox.requests(method="PATCH", kind=kind, namespace=namespace, name=name)
        if request.subresource is None
    ]
