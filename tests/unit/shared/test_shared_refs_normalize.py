"""conveyor.refs.normalize_repo: the one spelling of registry host + repository."""

from __future__ import annotations

import pytest

from conveyor import refs


@pytest.mark.parametrize(
    ("registry", "repository", "expected"),
    [
        ("HTTPS://Registry.Example.com:5000/", " /team/app/ ", ("registry.example.com:5000", "team/app")),
        ("http://ghcr.io", "owner/tool", ("ghcr.io", "owner/tool")),
        ("index.docker.io", "nginx", ("docker.io", "library/nginx")),
        ("registry-1.docker.io/", "bitnami/redis", ("docker.io", "bitnami/redis")),
        ("docker.io", "library/nginx", ("docker.io", "library/nginx")),
        ("ghcr.io", "nginx", ("ghcr.io", "nginx")),
        ("docker.io", "  ", ("docker.io", "")),  # empty stays empty, never "library/"
        ("", "team/app", ("", "team/app")),
    ],
)
def test_normalize_repo(registry: str, repository: str, expected: tuple[str, str]) -> None:
    result = refs.normalize_repo(registry, repository)
    assert result == expected
    assert (result.registry, result.repository) == expected


def test_normalize_repo_agrees_with_the_building_blocks() -> None:
    host = refs.normalize_registry("Index.Docker.IO")
    assert refs.normalize_repo("Index.Docker.IO", "alpine") == (host, refs.normalize_repository(host, "alpine"))
    assert refs.normalize_repo(*refs.normalize_repo("Docker.io/", "alpine")) == ("docker.io", "library/alpine")


@pytest.mark.parametrize(
    ("reference", "expected"),
    [
        ("harbor.example.com/library/app:v1", ("harbor.example.com", "library/app:v1")),
        (
            "http://Registry.Example.com:5000/v2/team/app/manifests/x",
            ("Registry.Example.com:5000", "v2/team/app/manifests/x"),
        ),
        ("HTTPS://ghcr.io/owner/", ("ghcr.io", "owner/")),
        ("localhost/team/app", ("localhost", "team/app")),
        ("team/app:v1", ("", "team/app:v1")),  # a path on the caller's default registry
        ("https://quay.io", ("", "quay.io")),  # no path: nothing says it is a host
        ("", ("", "")),
    ],
)
def test_split_host(reference: str, expected: tuple[str, str]) -> None:
    assert refs.split_host(reference) == expected
