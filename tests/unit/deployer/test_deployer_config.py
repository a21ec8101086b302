"""Settings, the clusters file, deploy request parsing and the client adapter's error mapping."""

from __future__ import annotations

import datetime as dt
import json
import pathlib

import pytest
import yaml
from kubernetes.client.exceptions import ApiException

from conveyor import errors
from conveyor.retry import RetryPolicy
from conveyor.settings import SettingsError
from conveyor.v1 import pipeline_pb2
from conveyor_deployer import settings as settings_module
from conveyor_deployer.adapters.clusters import load_clusters
from conveyor_deployer.adapters.kube import KubeWorkloadApi
from conveyor_deployer.domain.clusters import ClusterConfig
from conveyor_deployer.domain.kube_errors import ErrorKind, KubeApiError
from conveyor_deployer.settings import DeployerSettings
from conveyor_deployer.usecases.requests import InvalidDeployRequest, parse_deploy_request
from conveyor_deployer.usecases.targets import TargetQueries
from tests.support.kube import deploy_requested
from tests.unit.deployer.fakes import FakeWorkloadApi, api_error


def kubeconfig(path: pathlib.Path, contexts: list[str], current: str | None, sandbox: bool = False) -> pathlib.Path:
    cluster: dict = {"server": "https://k8s.example.com"}
    if sandbox:
        cluster["extensions"] = [{"name": "conveyor.dev/sandbox", "extension": {}}]
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "k", "cluster": cluster}],
        "users": [{"name": "u", "user": {"token": "s3cr3t"}}],
        "contexts": [{"name": name, "context": {"cluster": "k", "user": "u"}} for name in contexts],
    }
    if current:
        doc["current-context"] = current
    path.write_text(yaml.safe_dump(doc))
    return path


def test_settings_have_documented_defaults() -> None:
    settings = DeployerSettings.from_env({})
    assert settings.address == "127.0.0.1:50053"
    assert settings.clusters_file is None
    assert (settings.max_concurrent_runs, settings.kube_concurrency, settings.kube_retries) == (16, 8, 5)
    assert (settings.poll_interval, settings.default_rollout_timeout, settings.ack_wait) == (2.0, 600.0, 10.0)
    assert settings.heartbeat_interval == pytest.approx(10.0 / 3)
    assert settings.lease_ttl == 10.0
    table = settings_module.__doc__ or ""
    for name in (
        "CONVEYOR_DEPLOYER_ADDR",
        "CONVEYOR_CLUSTERS_FILE",
        "CONVEYOR_DEPLOYER_ACK_WAIT",
        "CONVEYOR_DEPLOYER_SHUTDOWN_GRACE",
        "CONVEYOR_DEPLOYER_KUBE_TIMEOUT",
    ):
        assert f"`{name}`" in table


def test_invalid_settings_are_all_reported() -> None:
    with pytest.raises(SettingsError) as caught:
        DeployerSettings.from_env({"CONVEYOR_DEPLOYER_ADDR": "nope", "CONVEYOR_DEPLOYER_KUBE_RETRIES": "x"})
    assert "CONVEYOR_DEPLOYER_ADDR" in str(caught.value) and "CONVEYOR_DEPLOYER_KUBE_RETRIES" in str(caught.value)


def test_without_a_clusters_file_the_current_context_is_the_cluster(tmp_path: pathlib.Path) -> None:
    path = kubeconfig(tmp_path / "config", ["dev", "prod"], "prod")
    [cluster] = load_clusters(None, {"KUBECONFIG": str(path)})
    assert (cluster.name, cluster.context, cluster.platform_name, cluster.sandbox) == (
        "prod",
        "prod",
        "KUBERNETES",
        False,
    )
    assert load_clusters(None, {"KUBECONFIG": str(tmp_path / "missing")}) == []
    no_current = kubeconfig(tmp_path / "other", ["dev"], None)
    assert load_clusters(None, {"KUBECONFIG": str(no_current)}) == []
    sandbox = kubeconfig(tmp_path / "sandbox", ["sandbox"], "sandbox", sandbox=True)
    assert load_clusters(None, {"KUBECONFIG": str(sandbox)})[0].sandbox is True


def test_the_clusters_file_is_read_and_validated(tmp_path: pathlib.Path) -> None:
    kubeconfig(tmp_path / "prod.kubeconfig", ["deployer"], "deployer")
    good = tmp_path / "clusters.yaml"
    good.write_text(
        "clusters:\n"
        "  - {name: prod-gz, platform: tke, region: ap-guangzhou, kubeconfig: prod.kubeconfig, context: deployer}\n"
        "  - {name: edge-1, platform: EDGE, in_cluster: true}\n"
    )
    clusters = load_clusters(good, {})
    assert [(c.name, c.platform, c.region, c.in_cluster) for c in clusters] == [
        ("prod-gz", pipeline_pb2.Target.TKE, "ap-guangzhou", False),
        ("edge-1", pipeline_pb2.Target.EDGE, "", True),
    ]
    assert clusters[0].kubeconfig == (tmp_path / "prod.kubeconfig",)

    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "clusters:\n"
        "  - {name: a, platform: AKS}\n"
        "  - {name: b, kubeconfig: nowhere.yaml}\n"
        "  - {name: c, in_cluster: true, context: x}\n"
        "  - {name: d, in_cluster: true, tokn: abc}\n"
        "  - {name: d, in_cluster: true}\n"
        "  - {platform: EKS}\n"
    )
    with pytest.raises(SettingsError) as caught:
        load_clusters(bad, {})
    text = str(caught.value)
    assert "cluster 'a'.platform: 'AKS' is not one of TKE, EKS, EDGE, KUBERNETES" in text
    assert f"cluster 'b'.kubeconfig: {tmp_path / 'nowhere.yaml'} does not exist" in text
    assert "cluster 'c': in_cluster cannot be combined with kubeconfig/context" in text
    assert "clusters[3]: unknown field(s) tokn" in text
    assert "cluster 'd': defined twice" in text
    assert "clusters[5].name: required" in text


def test_deploy_requests_are_checked_and_normalised() -> None:
    now = dt.datetime(2026, 5, 1, tzinfo=dt.UTC)
    digest = "sha256:" + "b" * 64
    message = deploy_requested(image="r.io/team/web:2", digest=digest, pin_digest=True, rollout_timeout=99999)
    parsed = parse_deploy_request(message, default_rollout_timeout=600, now=now)
    assert parsed.image == f"r.io/team/web:2@{digest}"
    assert parsed.rollout_timeout == 6 * 3600  # capped
    assert parsed.verify is True and parsed.target.key == ("sandbox", "demo", "Deployment", "web")

    unset = deploy_requested(rollout_timeout=None, verify_rollout=False)
    unset.ClearField("requested_at")
    parsed = parse_deploy_request(unset, default_rollout_timeout=600, now=now)
    assert parsed.rollout_timeout == 600 and parsed.verify is False
    assert parsed.requested_at != now  # taken from the run id's ULID time

    with pytest.raises(InvalidDeployRequest) as caught:
        parse_deploy_request(deploy_requested(pin_digest=True), default_rollout_timeout=600, now=now)
    assert "pins digests" in caught.value.message and caught.value.run is not None
    incomplete = deploy_requested()
    incomplete.pipeline.target.ClearField("namespace")
    incomplete.pipeline.target.workload_kind = 0  # type: ignore[assignment]
    with pytest.raises(InvalidDeployRequest) as caught:
        parse_deploy_request(incomplete, default_rollout_timeout=600, now=now)
    assert "pipeline.target.namespace is empty" in caught.value.message
    assert "workload_kind" in caught.value.message
    bad_name = deploy_requested()
    bad_name.run = "runs/x"
    with pytest.raises(InvalidDeployRequest) as caught:
        parse_deploy_request(bad_name, default_rollout_timeout=600, now=now)
    assert caught.value.run is None


async def test_client_exceptions_become_kube_api_errors_without_secrets() -> None:
    api = KubeWorkloadApi({"c1": object()}, concurrency=1)  # type: ignore[dict-item]
    body = json.dumps(
        {
            "kind": "Status",
            "code": 422,
            "reason": "Invalid",
            "message": "the server rejected our request due to an error in our request",
            "details": {"causes": [{"message": "testing value /metadata/resourceVersion failed: test failed"}]},
        }
    )

    def failing() -> None:
        raise ApiException(status=422, reason="Unprocessable Entity", body=body)

    with pytest.raises(KubeApiError) as caught:
        await api._call("c1", verb="patch", resource="deployments.apps", namespace="demo", name="web", call=failing)
    assert caught.value.kind is ErrorKind.CONFLICT
    assert caught.value.causes == ("testing value /metadata/resourceVersion failed: test failed",)

    def refused() -> None:
        raise ConnectionRefusedError(111, "Connection refused")

    with pytest.raises(KubeApiError) as caught:
        await api._call("c1", verb="get", resource="pods", namespace="demo", name=None, call=refused)
    assert caught.value.status is None and caught.value.kind is ErrorKind.TRANSIENT


async def test_target_queries_map_rbac_and_outages_to_grpc_errors() -> None:
    api = FakeWorkloadApi()
    queries = TargetQueries(api, load_clusters(None, {"KUBECONFIG": "/nonexistent"}), RetryPolicy(max_attempts=1))
    with pytest.raises(errors.NotFound):
        await queries.list_namespaces("c1")  # not configured
    queries = TargetQueries(api, [ClusterConfig(name="c1")], RetryPolicy(max_attempts=1))
    api.failures["list_namespaces"] = [api_error(403, "list", "namespaces is forbidden")]
    with pytest.raises(errors.PermissionDenied) as denied:
        await queries.list_namespaces("c1")
    assert "RBAC" in denied.value.message
    api.failures["list_namespaces"] = [api_error(None, "list", "connection refused")]
    with pytest.raises(errors.Unavailable):
        await queries.list_namespaces("c1")


def test_a_cluster_whose_kubeconfig_context_does_not_exist_stops_the_start(tmp_path: pathlib.Path) -> None:
    path = kubeconfig(tmp_path / "config", ["dev"], "dev")
    clusters = [ClusterConfig(name="prod", kubeconfig=(path,), context="prod")]
    with pytest.raises(SettingsError) as caught:
        KubeWorkloadApi.from_clusters(clusters)
    assert "cluster 'prod'" in str(caught.value) and "s3cr3t" not in str(caught.value)


async def test_lists_follow_continue_tokens() -> None:
    class Page:
        def __init__(self, names: list[str], token: str | None) -> None:
            self.data = json.dumps(
                {"metadata": {"continue": token} if token else {}, "items": [{"metadata": {"name": n}} for n in names]}
            ).encode()

    pages = {None: Page(["a", "b"], "t1"), "t1": Page(["c"], None)}
    asked: list[str | None] = []

    def fetch(token: str | None) -> Page:
        asked.append(token)
        return pages[token]

    api = KubeWorkloadApi({"c1": object()}, concurrency=1)  # type: ignore[dict-item]
    items = await api._list("c1", "pods", "demo", fetch)
    assert [i["metadata"]["name"] for i in items] == ["a", "b", "c"] and asked == [None, "t1"]
