"""The clusters the deployer knows, and what a kubeconfig says about them (over parsed documents; no I/O).

Where they come from (the clusters file, the current kubeconfig context) is
`conveyor_deployer.adapters.clusters`.
"""

from __future__ import annotations

import pathlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from conveyor.v1 import pipeline_pb2
from conveyor_deployer.domain.policy import ClusterPolicy

SANDBOX_EXTENSION = "conveyor.dev/sandbox"
PLATFORMS = {
    "TKE": pipeline_pb2.Target.TKE,
    "EKS": pipeline_pb2.Target.EKS,
    "EDGE": pipeline_pb2.Target.EDGE,
    "KUBERNETES": pipeline_pb2.Target.KUBERNETES,
}


@dataclass(frozen=True)
class ClusterConfig:
    name: str
    platform: int = pipeline_pb2.Target.KUBERNETES
    region: str = ""
    # Paths of the kubeconfig file(s) (KUBECONFIG may list several), or None when in-cluster.
    kubeconfig: tuple[pathlib.Path, ...] | None = None
    context: str | None = None
    in_cluster: bool = False
    sandbox: bool = False
    policy: ClusterPolicy = field(default_factory=ClusterPolicy)

    @property
    def platform_name(self) -> str:
        return str(pipeline_pb2.Target.Platform.Name(self.platform))


def current_context(documents: Sequence[dict[str, Any]]) -> str | None:
    # As kubectl merges several files: the first file that sets current-context wins.
    for document in documents:
        if document.get("current-context"):
            return str(document["current-context"])
    return None


def marks_sandbox(documents: Sequence[dict[str, Any]], context: str | None) -> bool:
    """Whether the context's cluster entry carries the `conveyor.dev/sandbox` extension."""
    context = context or current_context(documents)
    cluster_name = None
    for document in documents:
        for entry in document.get("contexts") or []:
            if entry.get("name") == context:
                cluster_name = (entry.get("context") or {}).get("cluster")
                break
        if cluster_name:
            break
    for document in documents:
        for entry in document.get("clusters") or []:
            if entry.get("name") == cluster_name:
                extensions = (entry.get("cluster") or {}).get("extensions") or []
                return any(ext.get("name") == SANDBOX_EXTENSION for ext in extensions)
    return False
