"""Kubernetes names are checked by the rule the API server applies to each kind, in its words."""

from __future__ import annotations

import pytest

from conveyor.names import KubernetesKind, kubernetes_name_violations

WORKLOADS: list[KubernetesKind] = ["Deployment", "StatefulSet", "DaemonSet"]
LABELS: list[KubernetesKind] = ["Namespace", "Container"]

# What kube-apiserver answers (k8s.io/apimachinery/pkg/util/validation), word for word.
LABEL_MESSAGE = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and "
    "end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is "
    "'[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
)
SUBDOMAIN_MESSAGE = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must "
    "start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is "
    r"'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
)


def description(kind: KubernetesKind, value: str) -> str:
    (violation,) = kubernetes_name_violations(kind, value, "target.x")
    assert violation.field == "target.x"
    return violation.description


@pytest.mark.parametrize("kind", WORKLOADS)
@pytest.mark.parametrize("value", ["api.v2", "web", "0", "a-b.c-d.e", "x" * 253, ".".join(["a" * 63] * 4)[:253]])
def test_workloads_are_named_by_dns1123_subdomains(kind: KubernetesKind, value: str) -> None:
    assert kubernetes_name_violations(kind, value, "target.workload") == []


@pytest.mark.parametrize("kind", LABELS)
@pytest.mark.parametrize("value", ["web", "0", "a-b", "x" * 63])
def test_namespaces_and_containers_are_named_by_dns1123_labels(kind: KubernetesKind, value: str) -> None:
    assert kubernetes_name_violations(kind, value, "target.x") == []


@pytest.mark.parametrize("kind", LABELS)
def test_a_dotted_name_is_refused_for_a_namespace_or_a_container_in_kubernetes_words(kind: KubernetesKind) -> None:
    noun = kind.lower()
    assert description(kind, "api.v2") == f"'api.v2' is not a valid {noun} name (DNS-1123 label): {LABEL_MESSAGE}"


@pytest.mark.parametrize("kind", WORKLOADS)
@pytest.mark.parametrize("value", ["Api.v2", "api_v2", "-api", "api.", ".api", "api..v2", "api.-v2", "api\n", "ápi"])
def test_workload_names_outside_the_subdomain_grammar_are_refused(kind: KubernetesKind, value: str) -> None:
    assert description(kind, value) == f"{value!r} is not a valid {kind} name (DNS-1123 subdomain): {SUBDOMAIN_MESSAGE}"


@pytest.mark.parametrize("kind", LABELS)
@pytest.mark.parametrize("value", ["Web", "a_b", "-a", "a-", "a\n"])
def test_label_names_outside_the_label_grammar_are_refused(kind: KubernetesKind, value: str) -> None:
    assert description(kind, value).endswith(f"(DNS-1123 label): {LABEL_MESSAGE}")


def test_lengths_are_kubernetes_limits_and_every_problem_is_named() -> None:
    assert description("Deployment", "a" * 254).endswith(": must be no more than 253 characters")
    assert description("Namespace", "a" * 64).endswith(": must be no more than 63 characters")
    both = description("Container", "A" * 64)
    assert both.endswith(f": must be no more than 63 characters; {LABEL_MESSAGE}")


@pytest.mark.parametrize("kind", [*WORKLOADS, *LABELS])
def test_an_empty_name_is_required(kind: KubernetesKind) -> None:
    assert description(kind, "") == "required"
