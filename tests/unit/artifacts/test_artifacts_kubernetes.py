"""deploy/kubernetes: valid by the Kubernetes schemas (offline), least-privilege, wired like the code reads it."""

from __future__ import annotations

import pathlib
from collections.abc import Iterator
from typing import Any

import kubernetes_validate
import pytest
import yaml

from conveyor.settings import parse_address
from tests.unit.artifacts.artifacts_support import ROOT, SERVICES, command_problem, env_names_read, service_of_command

MANIFESTS = ROOT / "deploy" / "kubernetes"
# The oldest version we support (native gRPC probes are GA from 1.27) and the newest schema shipped.
KUBERNETES_VERSIONS = ("1.27", kubernetes_validate.utils.latest_version())


def manifest_files() -> list[pathlib.Path]:
    return sorted(p for p in MANIFESTS.glob("*.yaml") if p.name != "kustomization.yaml")


def documents(path: pathlib.Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def all_objects(*, include_examples: bool = True) -> list[dict[str, Any]]:
    return [
        doc for path in manifest_files() if include_examples or ".example." not in path.name for doc in documents(path)
    ]


def objects_of(kind: str) -> list[dict[str, Any]]:
    return [doc for doc in all_objects() if doc["kind"] == kind]


def deployments() -> dict[str, dict[str, Any]]:
    """Service name (config/trigger/deployer) -> its Deployment."""
    found = {}
    for deployment in objects_of("Deployment"):
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        which = service_of_command(container["command"])
        assert which, f"{deployment['metadata']['name']}: command {container['command']} is not a service"
        found[which] = deployment
    return found


def containers() -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
    for service, deployment in deployments().items():
        pod = deployment["spec"]["template"]["spec"]
        for container in pod["containers"]:
            yield service, pod, container


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("path", manifest_files(), ids=lambda p: p.name)
def test_every_manifest_is_valid_by_the_kubernetes_schema(path: pathlib.Path, version: str) -> None:
    docs = documents(path)
    assert docs
    for doc in docs:
        # strict: unknown fields are errors too (a typo is not silently ignored).
        kubernetes_validate.validate(doc, version, strict=True)


def test_the_validator_rejects_a_broken_manifest() -> None:
    deployment = deployments()["config"]
    broken = yaml.safe_load(yaml.safe_dump(deployment))
    broken["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["grpc"]["prot"] = 1
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSIONS[-1], strict=True)


def test_kustomization_lists_every_manifest_but_the_examples() -> None:
    kustomization = yaml.safe_load((MANIFESTS / "kustomization.yaml").read_text())
    assert sorted(kustomization["resources"]) == sorted(p.name for p in manifest_files() if ".example." not in p.name)
    assert {image["name"] for image in kustomization["images"]} == {
        c["image"].split(":")[0] for _, _, c in containers()
    }


def test_one_deployment_and_service_per_service() -> None:
    assert set(deployments()) == set(SERVICES)
    services = {svc["metadata"]["name"]: svc for svc in objects_of("Service")}
    for deployment in deployments().values():
        name = deployment["metadata"]["name"]
        assert name in services, f"no Service for {name}"
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        selector = deployment["spec"]["selector"]["matchLabels"]
        assert selector.items() <= labels.items()
        assert services[name]["spec"]["selector"].items() <= labels.items()
    # Every Service selects some pods, by labels the pods carry, and targets ports they name.
    for svc in services.values():
        targets = [
            d
            for d in deployments().values()
            if svc["spec"]["selector"].items() <= d["spec"]["template"]["metadata"]["labels"].items()
        ]
        assert len(targets) == 1, svc["metadata"]["name"]
        port_names = {p["name"] for c in targets[0]["spec"]["template"]["spec"]["containers"] for p in c["ports"]}
        assert {p["targetPort"] for p in svc["spec"]["ports"]} <= port_names


def test_commands_are_console_scripts_and_env_names_are_read_by_that_service() -> None:
    unknown = []
    for service, _, container in containers():
        assert command_problem(container["command"]) is None
        names = env_names_read(service)
        unknown += [
            f"{service}: {env['name']}"
            for env in container.get("env", [])
            if env["name"].startswith("CONVEYOR_") and not names.reads(env["name"], service)
        ]
    assert unknown == []


def test_listen_addresses_match_ports_probes_and_the_addresses_clients_use() -> None:
    services = {svc["metadata"]["name"]: svc for svc in objects_of("Service")}
    listen = {}
    for service, _, container in containers():
        env = {e["name"]: e for e in container["env"]}
        host, port = parse_address(env[f"CONVEYOR_{service.upper()}_ADDR"]["value"])
        assert host == "0.0.0.0"
        listen[service] = port
        assert {"name": "grpc", "containerPort": port} in container["ports"]
        for probe in ("startupProbe", "livenessProbe"):
            assert container[probe]["grpc"]["port"] == port, f"{service} {probe}"
        assert "readinessProbe" in container
    for service, _, container in containers():
        env = {e["name"]: e.get("value") for e in container["env"]}
        for other in SERVICES:
            address = env.get(f"CONVEYOR_{other.upper()}_ADDR")
            if other != service and address is not None:
                host, port = parse_address(address)
                assert host in services and port == listen[other], f"{service} -> {other}: {address}"


def test_database_nats_and_webhook_secrets_come_from_secrets() -> None:
    from_secret = {}
    for service, _, container in containers():
        for env in container["env"]:
            if "valueFrom" in env:
                ref = env["valueFrom"]["secretKeyRef"]
                from_secret[(service, env["name"])] = (ref["name"], ref["key"])
    assert from_secret[("config", "CONVEYOR_DATABASE_URL")] == ("conveyor-database", "url")
    assert from_secret[("trigger", "CONVEYOR_WEBHOOK_TOKEN")] == ("conveyor-webhook", "token")
    for service in SERVICES:
        assert from_secret[(service, "CONVEYOR_NATS_URL")] == ("conveyor-nats", "url")
    examples = {secret["metadata"]["name"]: secret for secret in objects_of("Secret")}
    for name, key in from_secret.values():
        assert key in examples[name]["stringData"], f"secrets.example.yaml lacks {name}/{key}"


def test_pods_are_locked_down_and_sized() -> None:
    for service, pod, container in containers():
        assert pod["securityContext"]["runAsNonRoot"] is True, service
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
        security = container["securityContext"]
        assert security["readOnlyRootFilesystem"] is True, service
        assert security["allowPrivilegeEscalation"] is False
        assert security["capabilities"]["drop"] == ["ALL"]
        resources = container["resources"]
        assert set(resources["requests"]) == {"cpu", "memory"} and set(resources["limits"]) == {"cpu", "memory"}
        # A writable /tmp, since the root filesystem is read-only.
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert "emptyDir" in volumes[mounts["/tmp"]]


def test_only_the_deployer_has_kubernetes_credentials_and_only_what_it_needs() -> None:
    accounts = {sa["metadata"]["name"]: sa for sa in objects_of("ServiceAccount")}
    for service, deployment in deployments().items():
        pod = deployment["spec"]["template"]["spec"]
        assert pod["serviceAccountName"] in accounts
        mounts_token = pod.get(
            "automountServiceAccountToken",
            accounts[pod["serviceAccountName"]].get("automountServiceAccountToken", True),
        )
        assert mounts_token is (service == "deployer"), service

    (role,) = objects_of("ClusterRole")
    granted = {
        (group, resource, verb)
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }
    expected = {
        ("apps", r, v) for r in ("deployments", "statefulsets", "daemonsets") for v in ("get", "list", "watch", "patch")
    }
    expected |= {("apps", r, v) for r in ("replicasets", "controllerrevisions") for v in ("get", "list", "watch")}
    expected |= {("", r, v) for r in ("pods", "namespaces") for v in ("get", "list", "watch")}
    assert granted == expected
    assert not any("*" in part for rule in role["rules"] for part in [*rule["verbs"], *rule["resources"]])

    (binding,) = objects_of("ClusterRoleBinding")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": role["metadata"]["name"],
    }
    deployer_account = deployments()["deployer"]["spec"]["template"]["spec"]["serviceAccountName"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": deployer_account, "namespace": "conveyor"}]


def test_the_deployer_clusters_file_is_one_the_deployer_accepts(tmp_path: pathlib.Path) -> None:
    from conveyor_deployer.adapters.clusters import load_clusters

    (config_map,) = objects_of("ConfigMap")
    deployer = deployments()["deployer"]
    (container,) = deployer["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    clusters_path = pathlib.PurePosixPath(env["CONVEYOR_CLUSTERS_FILE"])
    (mount,) = [m for m in container["volumeMounts"] if clusters_path.is_relative_to(m["mountPath"])]
    volume = {v["name"]: v for v in deployer["spec"]["template"]["spec"]["volumes"]}[mount["name"]]
    assert volume["configMap"]["name"] == config_map["metadata"]["name"]

    written = tmp_path / clusters_path.name
    written.write_text(config_map["data"][clusters_path.name])
    (cluster,) = load_clusters(written, {})
    assert cluster.in_cluster and cluster.name == "in-cluster"


def test_every_object_is_in_the_conveyor_namespace_or_cluster_scoped() -> None:
    cluster_scoped = {"Namespace", "ClusterRole", "ClusterRoleBinding"}
    for obj in all_objects():
        if obj["kind"] in cluster_scoped:
            assert "namespace" not in obj["metadata"]
        else:
            assert obj["metadata"]["namespace"] == "conveyor", obj["metadata"]["name"]
