"""Cluster deploy policy: the pure rules, and how the clusters file declares them."""

from __future__ import annotations

import pathlib

import pytest

from conveyor.yamlfile import YamlFileError
from conveyor_deployer.adapters.clusters import load_clusters
from conveyor_deployer.domain.policy import ClusterPolicy, Denial, denial_message, image_repository


@pytest.mark.parametrize(
    ("image", "repository"),
    [
        ("registry.example.com/team/app:1.2", "registry.example.com/team/app"),
        ("registry.example.com:5000/team/app", "registry.example.com:5000/team/app"),
        ("registry.example.com:5000/team/app:v1@sha256:abc", "registry.example.com:5000/team/app"),
        ("localhost:5000/app@sha256:abc", "localhost:5000/app"),
    ],
)
def test_image_repository_drops_tag_and_digest_but_keeps_the_port(image: str, repository: str) -> None:
    assert image_repository(image) == repository


def test_default_policy_denies_only_the_system_namespaces() -> None:
    policy = ClusterPolicy()
    assert policy.check("payments", "any.registry/any/thing:1") == []
    for namespace in ("kube-system", "kube-public", "kube-node-lease"):
        [denial] = policy.check(namespace, "r/a:1")
        assert denial.field == "namespace"
        assert repr(namespace) in denial.reason


def test_namespace_globs_replace_the_default() -> None:
    policy = ClusterPolicy(namespaces=("payments-*", "kube-system"))
    assert policy.check("payments-prod", "r/a") == []
    assert policy.check("kube-system", "r/a") == []  # listed explicitly, so allowed
    [denial] = policy.check("billing", "r/a")
    assert denial == Denial("namespace", "namespace 'billing' is not allowed (namespaces: payments-*, kube-system)")
    assert ClusterPolicy(namespaces=()).check("anything", "r/a")[0].field == "namespace"


def test_image_globs_match_registry_and_repository() -> None:
    policy = ClusterPolicy(images=("registry.example.com/*", "ghcr.io/acme/web"))
    assert policy.check("web", "registry.example.com/team/deep/app:1") == []
    assert policy.check("web", "ghcr.io/acme/web:2@sha256:abc") == []
    [denial] = policy.check("web", "ghcr.io/acme/web-other:2")
    assert denial == Denial(
        "image", "image 'ghcr.io/acme/web-other' is not allowed (images: registry.example.com/*, ghcr.io/acme/web)"
    )
    assert len(policy.check("kube-system", "docker.io/evil/app:1")) == 2  # both reasons at once


def test_denial_message_names_the_cluster_and_every_reason() -> None:
    denials = [Denial("namespace", "a"), Denial("image", "b")]
    assert denial_message("prod", denials) == "denied by the policy of cluster prod: a; b"


def test_clusters_file_reads_a_policy_and_defaults_without_one(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "clusters.yaml"
    path.write_text(
        "clusters:\n"
        "  - name: prod\n    in_cluster: true\n"
        "    policy: {namespaces: [pay-*], images: ['registry.example.com/pay/*']}\n"
        "  - name: dev\n    in_cluster: true\n"
        "    policy: {images: []}\n"
        "  - name: lab\n    in_cluster: true\n"
    )
    prod, dev, lab = load_clusters(path, {})
    assert prod.policy == ClusterPolicy(namespaces=("pay-*",), images=("registry.example.com/pay/*",))
    assert dev.policy == ClusterPolicy(images=())
    assert lab.policy == ClusterPolicy()


def test_clusters_file_refuses_a_bad_policy(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "clusters.yaml"
    path.write_text("clusters:\n  - name: prod\n    in_cluster: true\n    policy: {namespace: [a], images: ['']}\n")
    with pytest.raises(YamlFileError) as caught:
        load_clusters(path, {})
    assert caught.value.problems == [
        "cluster 'prod'.policy.images: globs must be non-empty, without surrounding spaces (line 4)",
        "cluster 'prod'.policy: unknown field(s) namespace (known: images, namespaces) (line 4)",
    ]
