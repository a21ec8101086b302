"""A local SANDBOX Kubernetes cluster: an API emulator, not a real cluster.

Used by `make run` when the user has no kubeconfig (so a newcomer can watch a push deploy
something) and by the tests. It serves the Kubernetes API over HTTP with kmock's emulator
(extended in `conveyor_sandbox.emulator`), and plays the controllers' part
(`conveyor_sandbox.controller`): after a workload's pod template changes it creates pods for the
new template and, `rollout_delay` seconds later, reports the rollout complete -- unless an image's
tag matches `unpullable_tags` (default: tags ending in `broken` or `-unpullable`), whose pods stay
in ErrImagePull/ImagePullBackOff so the run fails (and rolls back when the pipeline asks for it).
Nothing ever runs: pods are records.

With `state=PATH` the sandbox keeps its objects in that JSON file: every change is written through
(to a temporary file, then renamed over it), and a sandbox started on an existing file resumes from
it -- workloads keep the images, generations and revisions they had, and a rollout that was under
way completes -- instead of starting empty (`restored` is then true; seed samples only when false).

Public API (everything else is internal)::

    from conveyor_sandbox import SandboxCluster

    async with SandboxCluster(port=0, rollout_delay=1.0, state=None) as sandbox:   # 0 = a free port
        sandbox.url                      # "http://127.0.0.1:PORT"
        sandbox.write_kubeconfig(path)   # kubeconfig (context "sandbox") for any Kubernetes client
        await sandbox.seed_samples()     # namespace "demo": Deployment web, StatefulSet db, DaemonSet agent
        sandbox.restored                 # True when started from an existing state file
        await sandbox.apply(manifest)    # create or replace an object (namespace, workload, pod...)
        sandbox.get("Deployment", "demo", "web")            # stored object (dict) or None
        sandbox.list_objects("Pod", "demo")                 # stored objects
        await sandbox.delete("Pod", "demo", "web-abc")      # remove an object
        await sandbox.complete_rollout("Deployment", "demo", "web")   # act now (ignores the delay)
        sandbox.auto_rollout = False     # stop acting on changes; tests then write status themselves
        sandbox.requests(method="PATCH", kind="Deployment", namespace="demo", name="web")
        sandbox.emulator                 # the kmock emulator (objects, every request received)

Supported kinds: Namespace, Pod, Deployment, StatefulSet, DaemonSet, ReplicaSet, ControllerRevision.

As a process (what the launcher runs)::

    python -m conveyor_sandbox --port 6443 --kubeconfig data/sandbox.kubeconfig [--state data/sandbox-state.json] \
        [--no-samples] [--web-image IMAGE] [--rollout-delay 2s] [--unpullable-tags REGEX] [--context sandbox]

It prints one line starting with `SANDBOX` naming its URL and kubeconfig, then serves until
SIGTERM/SIGINT. The kubeconfig's cluster carries the extension `conveyor.dev/sandbox`, which
the deployer reads to report the cluster as a sandbox.
"""

from __future__ import annotations

import copy
import json
import os
import pathlib
from types import TracebackType
from typing import Any, Self

import kmock
import yaml
from kmock._internal import rendering

from conveyor_sandbox import samples
from conveyor_sandbox.controller import DEFAULT_UNPULLABLE_TAGS, RolloutSimulator
from conveyor_sandbox.emulator import (
    CONTROLLERREVISIONS,
    DAEMONSETS,
    DEPLOYMENTS,
    NAMESPACES,
    PODS,
    REPLICASETS,
    STATEFULSETS,
    WORKLOADS,
    SandboxEmulator,
)

__all__ = ["DEFAULT_UNPULLABLE_TAGS", "SANDBOX_EXTENSION", "SandboxCluster"]

# Name of the kubeconfig cluster extension that marks a sandbox.
SANDBOX_EXTENSION = "conveyor.dev/sandbox"
SAMPLE_NAMESPACE = samples.NAMESPACE

KINDS: dict[str, kmock.resource] = {
    "Namespace": NAMESPACES,
    "Pod": PODS,
    "Deployment": DEPLOYMENTS,
    "StatefulSet": STATEFULSETS,
    "DaemonSet": DAEMONSETS,
    "ReplicaSet": REPLICASETS,
    "ControllerRevision": CONTROLLERREVISIONS,
}


def _resource(kind: str) -> kmock.resource:
    try:
        return KINDS[kind]
    except KeyError:
        raise ValueError(f"the sandbox does not serve {kind!r}; it serves {', '.join(KINDS)}") from None


class SandboxCluster:
    """An emulated Kubernetes API on a local port, with simulated rollouts (see the module doc)."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        rollout_delay: float = 1.0,
        unpullable_tags: str = DEFAULT_UNPULLABLE_TAGS,
        auto_rollout: bool = True,
        context: str = "sandbox",
        state: str | os.PathLike[str] | None = None,
    ) -> None:
        self.context = context
        self.state_path = pathlib.Path(state) if state is not None else None
        self.restored = False
        self.emulator = SandboxEmulator()
        self.controller = RolloutSimulator(
            self.emulator, delay=rollout_delay, unpullable_tags=unpullable_tags, enabled=auto_rollout
        )
        self._server = kmock.Server(self.emulator, host=host, port=port or None)
        self._started = False

    # ---- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> Self:
        if self.state_path is not None and self.state_path.exists():
            self.emulator.restore(json.loads(self.state_path.read_text()))
            self.restored = True
        await self.emulator.__aenter__()
        await self._server.__aenter__()
        self._started = True
        if self.state_path is not None:
            self.emulator.add_change_listener(self.save_state)
            self.save_state()
        if self.restored:
            self.controller.resume()
        return self

    def save_state(self) -> None:
        """Write every object to the state file (atomically: a reader sees the old or the new state)."""
        assert self.state_path is not None, "the sandbox has no state file"
        self.state_path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.state_path.with_name(self.state_path.name + ".tmp")
        temporary.write_text(json.dumps(self.emulator.snapshot(), separators=(",", ":")))
        temporary.replace(self.state_path)

    async def stop(self) -> None:
        if not self._started:
            return
        self._started = False
        await self.controller.close()
        await self._server.__aexit__(None, None, None)
        await self.emulator.__aexit__(None, None, None)

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    @property
    def port(self) -> int:
        return self._server.port

    @property
    def url(self) -> str:
        return f"http://{self._server.host}:{self.port}"

    @property
    def auto_rollout(self) -> bool:
        return self.controller.enabled

    @auto_rollout.setter
    def auto_rollout(self, enabled: bool) -> None:
        self.controller.enabled = enabled

    @property
    def rollout_delay(self) -> float:
        return self.controller.delay

    @rollout_delay.setter
    def rollout_delay(self, seconds: float) -> None:
        self.controller.delay = seconds

    # ---- kubeconfig ---------------------------------------------------------------------------

    def kubeconfig(self, *, context: str | None = None, namespace: str = SAMPLE_NAMESPACE) -> dict[str, Any]:
        name = context or self.context
        return {
            "apiVersion": "v1",
            "kind": "Config",
            "preferences": {},
            "clusters": [
                {
                    "name": f"conveyor-{name}",
                    "cluster": {
                        "server": self.url,
                        "extensions": [
                            {
                                "name": SANDBOX_EXTENSION,
                                "extension": {"note": "Conveyor sandbox: a Kubernetes API emulator, not a cluster"},
                            }
                        ],
                    },
                }
            ],
            # The emulator checks no credentials; a token keeps every client's auth code path normal.
            "users": [{"name": f"conveyor-{name}", "user": {"token": "sandbox"}}],
            "contexts": [
                {
                    "name": name,
                    "context": {"cluster": f"conveyor-{name}", "user": f"conveyor-{name}", "namespace": namespace},
                }
            ],
            "current-context": name,
        }

    def write_kubeconfig(
        self, path: str | os.PathLike[str], *, context: str | None = None, namespace: str = SAMPLE_NAMESPACE
    ) -> pathlib.Path:
        """Write a kubeconfig whose current context points at this sandbox; returns the path."""
        target = pathlib.Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        text = yaml.safe_dump(self.kubeconfig(context=context, namespace=namespace), sort_keys=False)
        temporary = target.with_name(target.name + ".tmp")
        temporary.write_text(text)
        temporary.chmod(0o600)
        temporary.replace(target)
        return target

    # ---- objects ------------------------------------------------------------------------------

    async def seed_samples(self, namespace: str = SAMPLE_NAMESPACE, *, web_image: str | None = None) -> None:
        """A namespace with a two-container Deployment (plus init container), a StatefulSet and a DaemonSet.

        `web_image` replaces the image of Deployment web's container app.
        """
        await self.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
        for manifest in samples.workloads(namespace, web_image=web_image):
            await self.apply(manifest)
            meta = manifest["metadata"]
            await self.complete_rollout(manifest["kind"], meta["namespace"], meta["name"])

    async def apply(self, manifest: dict[str, Any]) -> dict[str, Any]:
        """Create or replace an object, as stored by the API (metadata stamped)."""
        resource = _resource(manifest.get("kind", ""))
        obj = copy.deepcopy(manifest)
        if resource != NAMESPACES and not obj.get("metadata", {}).get("namespace"):
            raise ValueError("metadata.namespace is required")
        return await self.emulator.store(resource, obj)

    def get(self, kind: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        return self.emulator.read_object(_resource(kind), None if kind == "Namespace" else namespace, name)

    def list_objects(self, kind: str, namespace: str | None = None) -> list[dict[str, Any]]:
        return self.emulator.list_objects(_resource(kind), namespace)

    async def delete(self, kind: str, namespace: str | None, name: str) -> None:
        await self.emulator.remove_object(_resource(kind), namespace, name)

    async def complete_rollout(self, kind: str, namespace: str, name: str) -> None:
        """Play the controller for one workload now: new pods and status for its current template."""
        resource = _resource(kind)
        if resource not in WORKLOADS:
            raise ValueError(f"{kind} is not a workload kind")
        await self.controller.reconcile(resource, namespace, name)

    def requests(
        self,
        *,
        method: str | None = None,
        kind: str | None = None,
        namespace: str | None = None,
        name: str | None = None,
        subresource: str | None = None,
    ) -> list[rendering.Request]:
        """HTTP requests the API received (e.g. to count PATCHes of one workload)."""
        return self.emulator.requests_matching(
            method=method,
            resource=_resource(kind) if kind else None,
            namespace=namespace,
            name=name,
            subresource=subresource,
        )
