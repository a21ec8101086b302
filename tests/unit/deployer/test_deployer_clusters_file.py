"""The clusters file through its pydantic models: what is accepted as before, and where each problem is."""

from __future__ import annotations

import pathlib

import pytest

from conveyor.yamlfile import YamlFileError
from conveyor_deployer.adapters.clusters import load_clusters


def problems(tmp_path: pathlib.Path, text: str) -> list[str]:
    path = tmp_path / "clusters.yaml"
    path.write_text(text)
    with pytest.raises(YamlFileError) as caught:
        load_clusters(path, {})
    assert str(caught.value).startswith(f"CONVEYOR_CLUSTERS_FILE={path}: ")
    return caught.value.problems


def test_loose_scalars_and_a_bare_list_are_read_as_before(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "clusters.yaml"
    path.write_text("- {name: 2024, platform: eks, region: 7, in_cluster: true, context: ''}\n")
    [cluster] = load_clusters(path, {})
    assert (cluster.name, cluster.platform_name, cluster.region, cluster.context) == ("2024", "EKS", "7", None)
    assert cluster.in_cluster and cluster.kubeconfig is None


def test_each_problem_names_its_cluster_field_and_line(tmp_path: pathlib.Path) -> None:
    found = problems(
        tmp_path,
        "clusters:\n  - name: a\n    in_cluster: yes please\n  - name: has space\n    in_cluster: true\n",
    )
    assert found == [
        "cluster 'a'.in_cluster: expected true or false, not 'yes please' (line 3)",
        "clusters[1].name: required, at most 253 characters, no spaces (line 4)",
    ]


def test_a_file_without_a_clusters_list_or_with_a_repeated_key_says_so(tmp_path: pathlib.Path) -> None:
    assert problems(tmp_path, "clusters: {name: a}\n") == ["clusters: expected a list of clusters (line 1)"]
    [duplicate] = problems(tmp_path, "clusters:\n  - name: a\n    name: b\n    in_cluster: true\n")
    assert duplicate.startswith("not valid YAML at line 3, column 5: duplicate key 'name'")
