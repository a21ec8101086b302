"""conveyor.yamlfile: YAML files into pydantic models with messages that say where and what."""

from __future__ import annotations

import pathlib
from typing import Any, Literal

import pydantic
import pytest

from conveyor import yamlfile
from conveyor.settings import SettingsError
from conveyor.yamlfile import YamlFileError, YamlModel


class Cluster(YamlModel):
    name: str
    platform: Literal["TKE", "EKS", "EDGE", "KUBERNETES"] = "KUBERNETES"
    region: str = ""
    in_cluster: bool = False
    kubeconfig: str | None = None

    @pydantic.model_validator(mode="after")
    def _in_cluster_alone(self) -> Cluster:
        if self.in_cluster and self.kubeconfig:
            raise ValueError("in_cluster cannot be combined with kubeconfig/context")
        return self


class ClustersFile(YamlModel):
    clusters: list[Cluster]


class Loose(pydantic.BaseModel):
    """No extra="forbid" of its own: the loader rejects unknown fields anyway."""

    name: str


class LooseFile(pydantic.BaseModel):
    items: list[Loose] = []


def write(tmp_path: pathlib.Path, text: str) -> pathlib.Path:
    path = tmp_path / "clusters.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def problems_of(path: pathlib.Path, model: type[pydantic.BaseModel] = ClustersFile, **options: Any) -> list[str]:
    with pytest.raises(YamlFileError) as caught:
        yamlfile.load_yaml_file(path, model, **options)
    return caught.value.problems


def test_a_valid_file_loads(tmp_path: pathlib.Path) -> None:
    path = write(tmp_path, "clusters:\n  - name: prod\n    platform: TKE\n  - {name: edge, in_cluster: true}\n")
    loaded = yamlfile.load_yaml_file(path, ClustersFile)
    assert [(c.name, c.platform, c.in_cluster) for c in loaded.clusters] == [
        ("prod", "TKE", False),
        ("edge", "KUBERNETES", True),
    ]


def test_every_problem_names_its_place_what_was_expected_and_its_line(tmp_path: pathlib.Path) -> None:
    path = write(
        tmp_path,
        "clusters:\n"  # 1
        "  - name: a\n"  # 2
        "    platform: AKS\n"  # 3
        "  - name: b\n"  # 4
        "    tokn: abc\n"  # 5
        "    colour: blue\n"  # 6
        "  - platform: EKS\n"  # 7
        "  - just a string\n"  # 8
        "  - {name: c, in_cluster: maybe}\n"  # 9
        "  - {name: d, in_cluster: true, kubeconfig: x}\n"  # 10
        "  - {name: [1, 2]}\n",  # 11
    )
    with pytest.raises(YamlFileError) as caught:
        yamlfile.load_yaml_file(path, ClustersFile, where=f"CONVEYOR_CLUSTERS_FILE={path}", what="clusters file")
    error = caught.value
    assert isinstance(error, SettingsError)
    assert error.problems == [
        "clusters[0].platform: 'AKS' is not one of 'TKE', 'EKS', 'EDGE' or 'KUBERNETES' (line 3)",
        "clusters[1]: unknown field(s) tokn, colour (known: in_cluster, kubeconfig, name, platform, region) (line 5)",
        "clusters[2].name: required (line 7)",
        "clusters[3]: expected a mapping with in_cluster, kubeconfig, name, platform, region, not a string (line 8)",
        "clusters[4].in_cluster: expected true or false, not 'maybe' (line 9)",
        "clusters[5]: in_cluster cannot be combined with kubeconfig/context (line 10)",
        "clusters[6].name: expected a string, not a list (line 11)",
    ]
    assert str(error).startswith(f"CONVEYOR_CLUSTERS_FILE={path}: invalid clusters file:\n  clusters[0].platform")


def test_the_top_level_shape_is_explained(tmp_path: pathlib.Path) -> None:
    assert problems_of(write(tmp_path, "- a\n- b\n")) == ["expected a mapping with clusters, not a list (line 1)"]
    assert problems_of(write(tmp_path, "clusters: {a: 1}\n")) == ["clusters: expected a list, not a mapping (line 1)"]
    assert problems_of(write(tmp_path, "")) == ["clusters: required"]


def test_unknown_fields_are_rejected_even_when_the_model_allows_them(tmp_path: pathlib.Path) -> None:
    path = write(tmp_path, "items:\n  - {name: a, extra: 1}\nother: 2\n")
    assert problems_of(path, LooseFile) == [
        "items[0]: unknown field(s) extra (known: name) (line 2)",
        "unknown field(s) other (known: items) (line 3)",
    ]


def test_yaml_syntax_errors_name_line_and_column(tmp_path: pathlib.Path) -> None:
    path = write(tmp_path, "clusters:\n  - name: a\n   platform: TKE\n")
    (problem,) = problems_of(path)
    assert problem.startswith("not valid YAML at line 3, column 4: expected <block end>")
    with pytest.raises(YamlFileError, match=r"^/some/where: not valid YAML at line 2"):
        yamlfile.load_yaml_file(write(tmp_path, "clusters: [\n"), ClustersFile, where="/some/where")


def test_duplicate_keys_are_an_error_not_silently_the_last(tmp_path: pathlib.Path) -> None:
    (problem,) = problems_of(write(tmp_path, "clusters:\n  - name: a\n    name: b\n"))
    assert problem.startswith("not valid YAML at line 3, column 5: duplicate key 'name'")


def test_merge_keys_may_be_overridden(tmp_path: pathlib.Path) -> None:
    path = write(
        tmp_path,
        "base: &base {platform: TKE, region: gz}\nclusters:\n  - <<: *base\n    name: a\n    region: sh\n",
    )

    class WithBase(YamlModel):
        base: dict[str, str]
        clusters: list[Cluster]

    loaded = yamlfile.load_yaml_file(path, WithBase)
    assert (loaded.clusters[0].platform, loaded.clusters[0].region) == ("TKE", "sh")


def test_unreadable_files_are_reported(tmp_path: pathlib.Path) -> None:
    missing = tmp_path / "missing.yaml"
    with pytest.raises(YamlFileError, match=r"missing.yaml: cannot read: No such file or directory"):
        yamlfile.load_yaml_file(missing, ClustersFile)
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    assert problems_of(binary) == ["cannot read: not UTF-8 text"]


def test_items_can_be_labelled_by_name(tmp_path: pathlib.Path) -> None:
    path = write(tmp_path, "clusters:\n  - {name: a, platform: AKS}\n  - {platform: AKS}\n")
    problems = problems_of(path, relabel=yamlfile.label_items("clusters", "cluster {!r}"))
    assert problems == [
        "cluster 'a'.platform: 'AKS' is not one of 'TKE', 'EKS', 'EDGE' or 'KUBERNETES' (line 2)",
        "clusters[1].name: required (line 3)",
        "clusters[1].platform: 'AKS' is not one of 'TKE', 'EKS', 'EDGE' or 'KUBERNETES' (line 3)",
    ]


def test_messages_can_be_replaced_per_error(tmp_path: pathlib.Path) -> None:
    def explain(error: Any) -> str | None:
        return "unknown keys " + str(error["loc"][-1]) if error["type"] == "extra_forbidden" else None

    path = write(tmp_path, "clusters:\n  - {name: a, passwrd: x}\n")
    assert problems_of(path, explain=explain) == ["clusters[0].passwrd: unknown keys passwrd (line 2)"]


def test_validators_see_the_context(tmp_path: pathlib.Path) -> None:
    class Source(YamlModel):
        token_env: str

        @pydantic.field_validator("token_env")
        @classmethod
        def _set(cls, value: str, info: pydantic.ValidationInfo) -> str:
            environ = (info.context or {}).get("environ", {})
            if value not in environ:
                raise ValueError(f"environment variable {value} (token_env) is not set")
            return value

    class Sources(YamlModel):
        sources: list[Source]

    path = write(tmp_path, "sources:\n  - token_env: HOOK_TOKEN\n")
    loaded = yamlfile.load_yaml_file(path, Sources, context={"environ": {"HOOK_TOKEN": "x" * 16}})
    assert loaded.sources[0].token_env == "HOOK_TOKEN"
    assert problems_of(path, Sources, context={"environ": {}}) == [
        "sources[0].token_env: environment variable HOOK_TOKEN (token_env) is not set (line 2)"
    ]


def test_already_parsed_documents_validate_the_same_way() -> None:
    with pytest.raises(YamlFileError) as caught:
        yamlfile.validate_document({"clusters": [{"name": "a", "x": 1}]}, ClustersFile, where="sources")
    assert caught.value.problems == [
        "clusters[0]: unknown field(s) x (known: in_cluster, kubeconfig, name, platform, region)"
    ]
    assert str(caught.value).startswith("sources: invalid file:\n  ")


def test_locations_render_as_paths() -> None:
    assert yamlfile.format_location(("clusters", 2, "platform")) == "clusters[2].platform"
    assert yamlfile.format_location(("a", "b", 0, 1)) == "a.b[0][1]"
    assert yamlfile.format_location(()) == ""
