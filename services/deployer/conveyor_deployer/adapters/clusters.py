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
        policy:                       # what may be deployed here (checked on every deploy and at Create)
          namespaces: [team-*]        # globs; default: all but kube-system, kube-public, kube-node-lease
          images: [registry.example.com/team/*]  # globs over registry/repository; default: any

Without the file, the kubeconfig's current context (if there is one) is the only cluster,
named after the context. A kubeconfig cluster entry carrying the extension
`conveyor.dev/sandbox` (written by `python -m conveyor_sandbox`) is reported as a sandbox.

The file is validated by the pydantic models below (`conveyor.yamlfile`): every problem is listed
at once, with its line, before the deployer starts.

Only names, platforms, regions and the sandbox flag ever leave this module (ListClusters,
logs); kubeconfig contents and credentials are read by the Kubernetes client and nowhere else.
"""

from __future__ import annotations

import logging
import os
import pathlib
from collections.abc import Mapping
from typing import Any

import pydantic
import yaml
from pydantic_core import ErrorDetails

from conveyor.settings import SettingsError
from conveyor.yamlfile import Loc, YamlModel, load_yaml_file
from conveyor_deployer.domain.clusters import PLATFORMS, ClusterConfig, current_context, marks_sandbox
from conveyor_deployer.domain.policy import ClusterPolicy

log = logging.getLogger(__name__)

NAME_RULE = "required, at most 253 characters, no spaces"


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


# --- the clusters file ------------------------------------------------------------------------


def _text(value: Any) -> Any:
    """A scalar as stripped text (empty for null/false/0, as `str(x or "")` reads it); anything else as is."""
    if isinstance(value, list | dict) and value:
        return value  # left to the str type: "expected a string, not a list"
    return str(value or "").strip()


def _valid_name(value: Any) -> str | None:
    name = _text(value)
    if not isinstance(name, str) or not name or any(ch.isspace() for ch in name) or len(name) > 253:
        return None
    return name


class _Context:
    """What validating one file needs beyond the document: where it is, the environment, the names seen."""

    def __init__(self, path: pathlib.Path, environ: Mapping[str, str]) -> None:
        self.base = path.parent
        self.environ = environ
        self.names: set[str] = set()

    @staticmethod
    def of(info: pydantic.ValidationInfo) -> _Context:
        context = (info.context or {}).get("clusters")
        if not isinstance(context, _Context):
            raise TypeError("validate a clusters file with load_clusters")
        return context

    def kubeconfig_paths(self, kubeconfig: str | None) -> tuple[pathlib.Path, ...]:
        """The file named (relative to the clusters file), else $KUBECONFIG / ~/.kube/config."""
        if not kubeconfig:
            return default_kubeconfig(self.environ)
        path = pathlib.Path(kubeconfig).expanduser()
        return (path if path.is_absolute() else self.base / path,)


class PolicyEntry(YamlModel):
    """`policy:` of a cluster; a list left out keeps its default, an empty list allows nothing."""

    namespaces: list[str] | None = None
    images: list[str] | None = None

    @pydantic.field_validator("namespaces", "images", mode="after")
    @classmethod
    def _globs(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and any(not glob.strip() or glob != glob.strip() for glob in value):
            raise ValueError("globs must be non-empty, without surrounding spaces")
        return value

    def to_policy(self) -> ClusterPolicy:
        return ClusterPolicy(
            namespaces=None if self.namespaces is None else tuple(self.namespaces),
            images=None if self.images is None else tuple(self.images),
        )


class ClusterEntry(YamlModel):
    """One item of `clusters:`. `kubeconfig` comes last: its check reads every other field."""

    name: str
    platform: int = PLATFORMS["KUBERNETES"]
    region: str = ""
    in_cluster: pydantic.StrictBool = False
    sandbox: pydantic.StrictBool = False
    context: str | None = None
    policy: PolicyEntry = PolicyEntry()
    kubeconfig: str | None = pydantic.Field(default=None, validate_default=True)

    @pydantic.model_validator(mode="before")
    @classmethod
    def _defined_once(cls, data: Any, info: pydantic.ValidationInfo) -> Any:
        # Before the fields: a later item of the same name is refused whatever else is wrong with either.
        name = _valid_name(data.get("name")) if isinstance(data, dict) else None
        if name is not None:
            names = _Context.of(info).names
            if name in names:
                raise ValueError("defined twice")
            names.add(name)
        return data

    @pydantic.field_validator("name", mode="before")
    @classmethod
    def _name(cls, value: Any) -> Any:
        text = _text(value)
        if isinstance(text, str) and _valid_name(text) is None:
            raise ValueError(NAME_RULE)
        return text

    @pydantic.field_validator("platform", mode="before")
    @classmethod
    def _platform(cls, value: Any) -> int:
        text = str(value or "KUBERNETES").strip().upper()
        if text not in PLATFORMS:
            raise ValueError(f"{text!r} is not one of {', '.join(PLATFORMS)}")
        return PLATFORMS[text]

    @pydantic.field_validator("region", mode="before")
    @classmethod
    def _region(cls, value: Any) -> Any:
        return _text(value)

    @pydantic.field_validator("context", "kubeconfig", mode="before")
    @classmethod
    def _optional_text(cls, value: Any) -> Any:
        return _text(value) or None

    @pydantic.field_validator("kubeconfig", mode="after")
    @classmethod
    def _kubeconfig_exists(cls, value: str | None, info: pydantic.ValidationInfo) -> str | None:
        # Only for an entry whose other fields are valid and that reads a kubeconfig (in_cluster with a
        # kubeconfig is refused below), as a missing file is noise next to the entry's other problems.
        if not set(info.data) >= _BEFORE_KUBECONFIG or info.data["in_cluster"]:
            return value
        paths = _Context.of(info).kubeconfig_paths(value)
        if not any(path.is_file() for path in paths):
            raise ValueError(f"{', '.join(map(str, paths))} does not exist")
        return value

    @pydantic.model_validator(mode="after")
    def _in_cluster_alone(self) -> ClusterEntry:
        if self.in_cluster and (self.kubeconfig or self.context):
            raise ValueError("in_cluster cannot be combined with kubeconfig/context")
        return self

    def to_config(self, context: _Context) -> ClusterConfig:
        kubeconfig = None if self.in_cluster else context.kubeconfig_paths(self.kubeconfig)
        sandbox = self.sandbox or (kubeconfig is not None and kubeconfig_marks_sandbox(kubeconfig, self.context))
        return ClusterConfig(
            name=self.name,
            platform=self.platform,
            region=self.region,
            kubeconfig=kubeconfig,
            context=self.context,
            in_cluster=self.in_cluster,
            sandbox=sandbox,
            policy=self.policy.to_policy(),
        )


class ClustersFile(YamlModel):
    clusters: list[ClusterEntry]

    @pydantic.model_validator(mode="before")
    @classmethod
    def _bare_list(cls, data: Any) -> Any:
        return {"clusters": data} if isinstance(data, list) else data  # a file that is just the list


_FIELDS = frozenset(ClusterEntry.model_fields)
_BEFORE_KUBECONFIG = _FIELDS - {"kubeconfig"}


def _relabel(loc: Loc, value: Any) -> str | None:
    # An item is called by its name once that name can be trusted: valid, and no unknown fields beside it.
    if len(loc) == 2 and loc[0] == "clusters" and isinstance(value, dict) and set(value) <= _FIELDS:
        name = _valid_name(value.get("name"))
        if name is not None:
            return f"cluster {name!r}"
    return None


def _explain(error: ErrorDetails) -> str | None:
    loc, kind = tuple(error["loc"]), error["type"]
    if loc == ("clusters",) and kind in ("missing", "list_type"):
        return "expected a list of clusters"
    if len(loc) == 3 and loc[0] == "clusters" and loc[2] == "name" and kind in ("missing", "string_type"):
        return NAME_RULE
    return None


def _clusters_from_file(path: pathlib.Path, environ: Mapping[str, str]) -> list[ClusterConfig]:
    context = _Context(path, environ)
    loaded = load_yaml_file(
        path,
        ClustersFile,
        where=f"CONVEYOR_CLUSTERS_FILE={path}",
        what="clusters file",
        context={"clusters": context},
        relabel=_relabel,
        explain=_explain,
    )
    return [entry.to_config(context) for entry in loaded.clusters]
