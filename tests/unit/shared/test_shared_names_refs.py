from __future__ import annotations

import pytest

from conveyor import names, refs
from conveyor.errors import InvalidArgument


def test_pipeline_and_run_names_round_trip() -> None:
    assert str(names.parse_pipeline_name("pipelines/web-app")) == "pipelines/web-app"
    run = names.parse_run_name("pipelines/web-app/runs/01jabcdefghjkmnpqrstvwxyz0")
    assert run.pipeline == "web-app"
    assert str(run.parent) == "pipelines/web-app"
    assert names.parse_pipeline_name("pipelines/-", allow_wildcard=True).pipeline == "-"


@pytest.mark.parametrize("bad", ["web-app", "pipelines/", "pipelines/Web", "pipelines/a/runs", "runs/x", ""])
def test_bad_pipeline_names_are_field_violations(bad: str) -> None:
    with pytest.raises(InvalidArgument) as error:
        names.parse_pipeline_name(bad, field="parent")
    assert error.value.violations[0].field == "parent"


def test_wildcard_only_where_allowed() -> None:
    with pytest.raises(InvalidArgument):
        names.parse_pipeline_name("pipelines/-")


def test_user_ids_follow_aip_122() -> None:
    names.validate_user_id("checkout-api")
    for bad in ("1abc", "abc-", "ABC", "a" * 64, "a_b"):
        with pytest.raises(InvalidArgument):
            names.validate_user_id(bad)


def test_new_ids_sort_by_time_and_derived_ids_are_deterministic() -> None:
    first, second = names.new_id(), names.new_id()
    assert names.is_valid_id(first) and len(first) == 26
    assert first <= second
    a = names.derived_id(1_700_000_000_000, "push", "pipeline-a")
    assert a == names.derived_id(1_700_000_000_000, "push", "pipeline-a")
    assert a != names.derived_id(1_700_000_000_000, "push", "pipeline-b")
    assert a < names.derived_id(1_700_000_000_001, "push", "pipeline-a")


def test_registry_normalisation() -> None:
    assert refs.normalize_registry("HTTPS://Registry.Example.com:5000/") == "registry.example.com:5000"
    assert refs.normalize_registry("index.docker.io") == "docker.io"
    assert refs.normalize_repository("docker.io", "nginx") == "library/nginx"
    assert refs.normalize_repository("ghcr.io", "nginx") == "nginx"


def test_reference_validation() -> None:
    assert refs.is_valid_registry("demo.tencentcloudcr.com")
    assert refs.is_valid_registry("127.0.0.1:5000")
    assert not refs.is_valid_registry("bad host")
    assert refs.is_valid_repository("team/app")
    assert not refs.is_valid_repository("Team/App")
    assert refs.is_valid_tag("v1.2.3-rc.1")
    assert not refs.is_valid_tag("-leading")
    assert not refs.is_valid_tag("x" * 129)
    assert not refs.is_valid_tag("ütf")
    assert refs.is_valid_digest("sha256:" + "a" * 64)
    assert not refs.is_valid_digest("sha256:short")


def test_image_refs() -> None:
    digest = "sha256:" + "b" * 64
    assert refs.image_ref("r.io", "team/app", "v1", digest) == "r.io/team/app:v1"
    assert refs.image_ref("r.io", "team/app", "v1", digest, pin_digest=True) == f"r.io/team/app:v1@{digest}"
    parsed = refs.parse_image(f"R.io:5000/team/app:v1@{digest}")
    assert (parsed.registry, parsed.repository, parsed.tag, parsed.digest) == ("r.io:5000", "team/app", "v1", digest)
    assert str(refs.parse_image("nginx:1.27")) == "docker.io/library/nginx:1.27"
