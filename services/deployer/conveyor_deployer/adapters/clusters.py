"""Which clusters the deployer knows, from `CONVEYOR_CLUSTERS_FILE` or the current kubeconfig context.

Clusters file (YAML)::

    clusters:
      - name: prod-gz                 # what pipelines name in target.cluster (required, unique)
        platform: TKE                 # TKE | EKS | EDGE | KUBERNETES (default KUBERNETES)
        region: ap-guangzhou          # optional, informational
        kubeconfig: /etc/conveyor/prod-gz.kubeconfig  # default: $KUBECONFIG, else ~/.kube/config;
                                                      # relative paths are relative to this file
        context: prod-gz-deployer     # default: the kubeconfig's current context
      - name: edge-1
        platform: EDGE
        in_cluster: true              # use the pod's service account (no kubeconfig)
      - name: local
        kubeconfig: ~/.kube/config
        sandbox: true                 # report it as a sandbox (also detected from the kubeconfig)

Without the file, the kubeconfig's current context (if there is one) is the only cluster,
named after the context. A kubeconfig cluster entry carrying the extension
`conveyor.dev/sandbox` (written by `python -m conveyor_sandbox`) is reported as a sandbox.

Only names, platforms, regions and the sandbox flag ever leave this module (ListClusters,
logs); kubeconfig contents and credentials are read by the Kubernetes client and nowhere else.
"""

from __future__ import annotations

import logging
import os
import pathlib
from collections.abc import Mapping
from typing import Any

import yaml

from conveyor.settings import SettingsError
from conveyor_deployer.domain.clusters import PLATFORMS, ClusterConfig, current_context, marks_sandbox

log = logging.getLogger(__name__)

_FIELDS = {"name", "platform", "region", "kubeconfig", "context", "in_cluster", "sandbox"}


def default_kubeconfig(environ: Mapping[str, str]) -> tuple[pathlib.Path, ...]:
    value = environ.get("KUBECONFIG", "").strip()
    if value:
        return tuple(pathlib.Path(p).expanduser() for p in value.split(os.pathsep) if p)
    home = environ.get("HOME")
    base = pathlib.Path(home) if home else pathlib.Path.home()
    return (base / ".kube" / "config",)


def load_clusters(clusters_file: pathlib.Path | None, environ: Mapping[str, str]) -> list[ClusterConfig]:
    """The configured clusters; raises SettingsError listing every problem in the file."""
    if clusters_file is None:
        return _current_context_cluster(environ)
    return _clusters_from_file(clusters_file, environ)


def _read_kubeconfigs(paths: tuple[pathlib.Path, ...]) -> list[dict[str, Any]]:
    documents = []
    for path in paths:
        if path.is_file():
            data = yaml.safe_load(path.read_text()) or {}
            if isinstance(data, dict):
                documents.append(data)
    return documents


def kubeconfig_marks_sandbox(paths: tuple[pathlib.Path, ...], context: str | None) -> bool:
    """`marks_sandbox` over the kubeconfig files at `paths` (missing ones are skipped)."""
    return marks_sandbox(_read_kubeconfigs(paths), context)


def _current_context_cluster(environ: Mapping[str, str]) -> list[ClusterConfig]:
    paths = default_kubeconfig(environ)
    try:
        documents = _read_kubeconfigs(paths)
    except (OSError, yaml.YAMLError) as exc:
        raise SettingsError(f"cannot read kubeconfig {', '.join(map(str, paths))}: {exc}") from None
    context = current_context(documents)
    if context is None:
        log.warning(
            "no clusters: CONVEYOR_CLUSTERS_FILE is not set and the kubeconfig has no current context",
            extra={"kubeconfig": os.pathsep.join(map(str, paths))},
        )
        return []
    return [
        ClusterConfig(
            name=context,
            kubeconfig=paths,
            context=context,
            sandbox=kubeconfig_marks_sandbox(paths, context),
        )
    ]


def _clusters_from_file(path: pathlib.Path, environ: Mapping[str, str]) -> list[ClusterConfig]:
    where = f"CONVEYOR_CLUSTERS_FILE={path}"
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise SettingsError(f"{where}: cannot read it: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise SettingsError(f"{where}: not valid YAML: {exc}") from None
    entries = data.get("clusters") if isinstance(data, dict) else data
    if not isinstance(entries, list):
        raise SettingsError(f"{where}: expected a `clusters:` list of clusters")
    problems: list[str] = []
    clusters: list[ClusterConfig] = []
    seen: set[str] = set()
    for index, entry in enumerate(entries):
        label = f"clusters[{index}]"
        if not isinstance(entry, dict):
            problems.append(
                f"{label}: expected a mapping with name, platform, region, kubeconfig/context or in_cluster"
            )
            continue
        unknown = sorted(set(entry) - _FIELDS)
        if unknown:
            problems.append(f"{label}: unknown field(s) {', '.join(unknown)} (known: {', '.join(sorted(_FIELDS))})")
        name = str(entry.get("name") or "").strip()
        if not name or any(ch.isspace() for ch in name) or len(name) > 253:
            problems.append(f"{label}.name: required, at most 253 characters, no spaces")
            continue
        label = f"cluster {name!r}"
        if name in seen:
            problems.append(f"{label}: defined twice")
            continue
        seen.add(name)
        platform_text = str(entry.get("platform") or "KUBERNETES").strip().upper()
        if platform_text not in PLATFORMS:
            problems.append(f"{label}.platform: {platform_text!r} is not one of {', '.join(PLATFORMS)}")
            continue
        in_cluster = entry.get("in_cluster", False)
        sandbox = entry.get("sandbox", False)
        if not isinstance(in_cluster, bool) or not isinstance(sandbox, bool):
            problems.append(f"{label}: in_cluster and sandbox must be true or false")
            continue
        if in_cluster and (entry.get("kubeconfig") or entry.get("context")):
            problems.append(f"{label}: in_cluster cannot be combined with kubeconfig/context")
            continue
        kubeconfig: tuple[pathlib.Path, ...] | None = None
        context = str(entry["context"]).strip() if entry.get("context") else None
        if not in_cluster:
            if entry.get("kubeconfig"):
                kube_path = pathlib.Path(str(entry["kubeconfig"])).expanduser()
                if not kube_path.is_absolute():
                    kube_path = path.parent / kube_path
                kubeconfig = (kube_path,)
            else:
                kubeconfig = default_kubeconfig(environ)
            if not any(p.is_file() for p in kubeconfig):
                problems.append(f"{label}.kubeconfig: {', '.join(map(str, kubeconfig))} does not exist")
                continue
            sandbox = sandbox or kubeconfig_marks_sandbox(kubeconfig, context)
        clusters.append(
            ClusterConfig(
                name=name,
                platform=PLATFORMS[platform_text],
                region=str(entry.get("region") or "").strip(),
                kubeconfig=kubeconfig,
                context=context,
                in_cluster=in_cluster,
                sandbox=sandbox,
            )
        )
    if problems:
        raise SettingsError(f"{where}: invalid clusters file:\n  " + "\n  ".join(problems))
    return clusters
