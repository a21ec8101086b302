"""The real `WorkloadApi`: the official Kubernetes client, in threads, behind a bound.

The client is synchronous; every call runs in `asyncio.to_thread` while holding a semaphore,
so at most `concurrency` API calls (and threads) are in flight across all clusters. Responses
are read as plain JSON (`_preload_content=False`) so the domain sees exactly what the server
stored, unknown fields included.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

import urllib3
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

from conveyor.settings import SettingsError
from conveyor_deployer.domain.clusters import ClusterConfig
from conveyor_deployer.domain.kube_errors import KubeApiError
from conveyor_deployer.domain.patch import JsonPatch
from conveyor_deployer.domain.workloads import Kind, WorkloadRef
from conveyor_deployer.usecases.ports import KubeObject, UnknownCluster

log = logging.getLogger(__name__)

_METHOD_SUFFIX = {Kind.DEPLOYMENT: "deployment", Kind.STATEFULSET: "stateful_set", Kind.DAEMONSET: "daemon_set"}
_PAGE_SIZE = 500


def resource_name(kind: Kind) -> str:
    """The RBAC resource name (`deployments.apps`)."""
    return f"{kind.plural}.apps"


def connect(cluster: ClusterConfig, *, pool_size: int) -> client.ApiClient:
    """An API client for one configured cluster (no network I/O); SettingsError when unusable."""
    configuration = client.Configuration()
    configuration.connection_pool_maxsize = pool_size
    try:
        if cluster.in_cluster:
            config.load_incluster_config(client_configuration=configuration)
            return client.ApiClient(configuration)
        assert cluster.kubeconfig is not None
        return config.new_client_from_config(
            config_file=os.pathsep.join(str(p) for p in cluster.kubeconfig),
            context=cluster.context,
            persist_config=False,
            client_configuration=configuration,
        )
    except (ConfigException, OSError, ValueError, TypeError) as exc:
        # The loader's messages name files and contexts, not secrets.
        raise SettingsError(f"cluster {cluster.name!r}: cannot use its kubeconfig/service account: {exc}") from None


def _status_details(exc: ApiException) -> tuple[str, str, tuple[str, ...]]:
    try:
        body = json.loads(exc.body or "{}")
    except (TypeError, ValueError):
        return str(exc.reason or ""), str(exc.body or "")[:500], ()
    if not isinstance(body, dict):
        return str(exc.reason or ""), "", ()
    causes = tuple(
        str(cause.get("message", ""))
        for cause in ((body.get("details") or {}).get("causes") or [])
        if isinstance(cause, dict) and cause.get("message")
    )
    return str(body.get("reason") or exc.reason or ""), str(body.get("message") or ""), causes


class KubeWorkloadApi:
    """`WorkloadApi` over the official client; one ApiClient per configured cluster."""

    def __init__(self, clients: Mapping[str, client.ApiClient], *, concurrency: int = 8, timeout: float = 15.0):
        self._clients = dict(clients)
        self._semaphore = asyncio.Semaphore(concurrency)
        self._timeout = timeout

    @classmethod
    def from_clusters(
        cls, clusters: list[ClusterConfig], *, concurrency: int = 8, timeout: float = 15.0
    ) -> KubeWorkloadApi:
        clients = {cluster.name: connect(cluster, pool_size=concurrency) for cluster in clusters}
        return cls(clients, concurrency=concurrency, timeout=timeout)

    def close(self) -> None:
        for api_client in self._clients.values():
            try:
                api_client.close()
            except Exception:  # closing must not hide the reason we are stopping
                log.debug("closing a Kubernetes client failed", exc_info=True)

    def _client(self, cluster: str) -> client.ApiClient:
        try:
            return self._clients[cluster]
        except KeyError:
            raise UnknownCluster(cluster) from None

    async def _call(
        self,
        cluster: str,
        *,
        verb: str,
        resource: str,
        namespace: str | None,
        name: str | None,
        call: Callable[[], Any],
    ) -> Any:
        async with self._semaphore:
            try:
                response = await asyncio.to_thread(call)
            except ApiException as exc:
                reason, message, causes = _status_details(exc)
                raise KubeApiError(
                    cluster, verb, resource, namespace, name, exc.status, reason, message, causes
                ) from None
            except (urllib3.exceptions.HTTPError, OSError) as exc:
                raise KubeApiError(cluster, verb, resource, namespace, name, None, "", _short(exc)) from None
        return json.loads(response.data or b"{}")

    async def _list(
        self, cluster: str, resource: str, namespace: str | None, fetch: Callable[[str | None], Any]
    ) -> list[KubeObject]:
        items: list[KubeObject] = []
        token: str | None = None
        while True:
            page = await self._call(
                cluster, verb="list", resource=resource, namespace=namespace, name=None, call=partial(fetch, token)
            )
            items.extend(page.get("items") or [])
            token = (page.get("metadata") or {}).get("continue") or None
            if not token:
                return items

    async def list_namespaces(self, cluster: str) -> list[str]:
        core = client.CoreV1Api(self._client(cluster))
        items = await self._list(
            cluster,
            "namespaces",
            None,
            lambda token: core.list_namespace(
                limit=_PAGE_SIZE, _continue=token, _preload_content=False, _request_timeout=self._timeout
            ),
        )
        return sorted(str(item["metadata"]["name"]) for item in items)

    async def namespace_exists(self, cluster: str, namespace: str) -> bool:
        core = client.CoreV1Api(self._client(cluster))
        try:
            await self._call(
                cluster,
                verb="get",
                resource="namespaces",
                namespace=None,
                name=namespace,
                call=lambda: core.read_namespace(namespace, _preload_content=False, _request_timeout=self._timeout),
            )
        except KubeApiError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    async def list_workloads(self, cluster: str, namespace: str, kind: Kind) -> list[KubeObject]:
        apps = client.AppsV1Api(self._client(cluster))
        method = getattr(apps, f"list_namespaced_{_METHOD_SUFFIX[kind]}")
        return await self._list(
            cluster,
            resource_name(kind),
            namespace,
            lambda token: method(
                namespace, limit=_PAGE_SIZE, _continue=token, _preload_content=False, _request_timeout=self._timeout
            ),
        )

    async def get_workload(self, ref: WorkloadRef) -> KubeObject:
        apps = client.AppsV1Api(self._client(ref.cluster))
        method = getattr(apps, f"read_namespaced_{_METHOD_SUFFIX[ref.kind]}")
        result: KubeObject = await self._call(
            ref.cluster,
            verb="get",
            resource=resource_name(ref.kind),
            namespace=ref.namespace,
            name=ref.name,
            call=lambda: method(ref.name, ref.namespace, _preload_content=False, _request_timeout=self._timeout),
        )
        return result

    async def patch_workload(self, ref: WorkloadRef, patch: JsonPatch) -> KubeObject:
        apps = client.AppsV1Api(self._client(ref.cluster))
        method = getattr(apps, f"patch_namespaced_{_METHOD_SUFFIX[ref.kind]}")
        result: KubeObject = await self._call(
            ref.cluster,
            verb="patch",
            resource=resource_name(ref.kind),
            namespace=ref.namespace,
            name=ref.name,
            call=lambda: method(
                ref.name,
                ref.namespace,
                patch,
                field_manager="conveyor-deployer",
                _content_type="application/json-patch+json",
                _preload_content=False,
                _request_timeout=self._timeout,
            ),
        )
        return result

    async def list_pods(self, cluster: str, namespace: str, label_selector: str) -> list[KubeObject]:
        core = client.CoreV1Api(self._client(cluster))
        return await self._list(
            cluster,
            "pods",
            namespace,
            lambda token: core.list_namespaced_pod(
                namespace,
                label_selector=label_selector or None,
                limit=_PAGE_SIZE,
                _continue=token,
                _preload_content=False,
                _request_timeout=self._timeout,
            ),
        )


def _short(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) <= 300 else text[:300] + "..."
