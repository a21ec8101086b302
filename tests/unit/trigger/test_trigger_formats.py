"""Every webhook format's parser against realistic payloads, and against broken ones."""

from __future__ import annotations

import base64
import contextlib
import copy
import datetime as dt
import json
from typing import Any

import pytest

from conveyor import refs
from conveyor.v1 import pipeline_pb2
from conveyor_trigger.domain.formats import FORMATS, PayloadError, UnknownFormat, WebhookRequest, parse_webhook
from conveyor_trigger.usecases.ingest import parse as safe_parse
from tests.support.webhook_payloads import DIGESTS, SAMPLE_LIST, SAMPLES, Sample

RECEIVED = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)


def request_for(sample: Sample, body: bytes | None = None, **overrides: Any) -> WebhookRequest:
    fields: dict[str, Any] = {
        "body": sample.body() if body is None else body,
        "headers": {k.lower(): v for k, v in sample.headers.items()},
        "query": dict(sample.query),
        "received_at": RECEIVED,
    }
    fields.update(overrides)
    return WebhookRequest(**fields)


def parse_json(fmt: str, document: Any, **overrides: Any) -> Any:
    fields: dict[str, Any] = {"body": json.dumps(document).encode(), "received_at": RECEIVED}
    fields.update(overrides)
    return parse_webhook(fmt, WebhookRequest(**fields))


def test_every_format_has_samples() -> None:
    assert sorted(FORMATS) == sorted({s.format for s in SAMPLE_LIST})


@pytest.mark.parametrize("sample", SAMPLE_LIST, ids=lambda s: s.name)
def test_sample_is_normalised_to_the_expected_pushes(sample: Sample) -> None:
    result = parse_webhook(sample.format, request_for(sample))

    got = [(p.registry, p.repository, p.tag, p.digest) for p in result.pushes]
    assert got == [(e.registry, e.repository, e.tag, e.digest) for e in sample.expected]
    assert len(result.ignored) == sample.ignored, result.ignored
    for push in result.pushes:
        assert push.source_format == sample.format
        assert push.event_id.startswith(f"{sample.format}:")
        assert push.origin == pipeline_pb2.IMAGE_ORIGIN_LOCAL_PUSH
        assert push.pushed_at.seconds > 0
    # Event ids are unique within a delivery and the same on a retry of it.
    again = parse_webhook(sample.format, request_for(sample))
    assert [p.event_id for p in again.pushes] == [p.event_id for p in result.pushes]
    assert len({p.event_id for p in result.pushes}) == len(result.pushes)


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_every_parsers_pushes_leave_normalised(fmt: str) -> None:
    # Mixed-case hosts, Hub aliases and stray slashes, as payloads and the `registry` setting spell them.
    request = {"default_registry": "HTTPS://Index.Docker.IO/", "received_at": RECEIVED}
    pushes = [
        push
        for sample in SAMPLE_LIST
        if sample.format == fmt
        for push in parse_webhook(fmt, request_for(sample, **request)).pushes
    ]
    assert pushes, f"no sample of {fmt} yields a push"
    for push in pushes:
        assert refs.normalize_repo(push.registry, push.repository) == (push.registry, push.repository)


# --- distribution ---------------------------------------------------------------------------


def test_distribution_reads_time_actor_media_type_and_the_events_own_id() -> None:
    result = parse_webhook("distribution", request_for(SAMPLES["distribution-push"]))
    (push,) = result.pushes
    assert push.event_id == "distribution:7e4f2a10-3c1d-4b8e-9f00-000000000003"
    assert push.pushed_at.ToDatetime(dt.UTC) == dt.datetime(2024, 5, 14, 9, 21, 3, 123456, tzinfo=dt.UTC)
    assert push.actor == "ci-bot"
    assert push.media_type == "application/vnd.oci.image.manifest.v1+json"
    assert any("blob" in line for line in result.ignored)


def test_distribution_multi_arch_index_is_one_push_of_the_index_digest() -> None:
    result = parse_webhook("distribution", request_for(SAMPLES["distribution-index-v2"]))
    assert [(p.tag, p.digest) for p in result.pushes] == [("v2.0.0", DIGESTS["index"])]
    assert sum("by digest" in line for line in result.ignored) == 2


def test_distribution_host_falls_back_to_the_target_url_then_the_default_registry() -> None:
    document = SAMPLES["distribution-push"].json()
    event = document["events"][2]
    del event["request"]["host"]
    (push,) = parse_json("distribution", document).pushes
    assert push.registry == "registry.example.com:5000"

    event["target"]["url"] = ""
    with pytest.raises(PayloadError) as missing:
        parse_json("distribution", document)
    assert missing.value.reason == "missing_registry"
    assert "?registry=" in missing.value.message

    (push,) = parse_json("distribution", document, default_registry="Mirror.Example.com").pushes
    assert push.registry == "mirror.example.com"


def test_distribution_push_without_repository_is_rejected_saying_so() -> None:
    document = SAMPLES["distribution-push"].json()
    del document["events"][2]["target"]["repository"]
    with pytest.raises(PayloadError) as error:
        parse_json("distribution", document)
    assert error.value.reason == "missing_repository"
    assert "repository" in error.value.message


def test_distribution_invalid_names_are_rejected() -> None:
    document = SAMPLES["distribution-push"].json()
    document["events"][2]["target"]["tag"] = "not a tag!"
    with pytest.raises(PayloadError) as error:
        parse_json("distribution", document)
    assert error.value.reason == "invalid_reference"


def test_signature_and_attestation_tags_are_not_images() -> None:
    document = SAMPLES["distribution-push"].json()
    manifest = document["events"][2]
    for suffix in (".sig", ".att", ".sbom", ""):
        manifest["target"]["tag"] = "sha256-" + "0" * 64 + suffix
        result = parse_json("distribution", document)
        assert result.pushes == [] and "signature/attestation" in result.ignored[-1]
    manifest["target"]["tag"] = "sha256-not-a-digest"
    assert [p.tag for p in parse_json("distribution", document).pushes] == ["sha256-not-a-digest"]


def test_empty_envelope_is_accepted_with_nothing_in_it() -> None:
    result = parse_json("distribution", {"events": []})
    assert result.pushes == [] and result.ignored == []


# --- harbor / tcr ---------------------------------------------------------------------------


def test_harbor_default_uses_a_hash_of_the_document_as_event_id() -> None:
    sample = SAMPLES["harbor-push"]
    document = sample.json()
    (first,) = parse_webhook("harbor", request_for(sample)).pushes
    # The same document formatted differently is the same delivery.
    compact = json.dumps(document, separators=(",", ":"), sort_keys=False).encode()
    (same,) = parse_webhook("harbor", request_for(sample, body=compact)).pushes
    assert same.event_id == first.event_id
    document["occur_at"] += 1
    (other,) = parse_json("harbor", document).pushes
    assert other.event_id != first.event_id
    assert first.actor == "robot$team+ci"
    assert first.pushed_at.seconds == 1715678523


def test_harbor_cloudevents_structured_mode() -> None:
    (push,) = parse_webhook("harbor", request_for(SAMPLES["harbor-cloudevents-push"])).pushes
    assert push.event_id == "harbor:0a9c4e7e-2f56-4d1b-8c3a-6e5f4d3c2b1a"
    assert push.actor == "alice"
    assert push.pushed_at.ToDatetime(dt.UTC) == dt.datetime(2024, 5, 14, 9, 22, 3, tzinfo=dt.UTC)


def test_harbor_cloudevents_binary_mode() -> None:
    data = SAMPLES["harbor-cloudevents-push"].json()["data"]
    headers = {
        "ce-specversion": "1.0",
        "ce-id": "1f2e3d4c-0000-4000-8000-000000000001",
        "ce-type": "harbor.artifact.pushed",
        "ce-time": "2024-05-14T09:22:03Z",
        "ce-operator": "bob",
    }
    (push,) = parse_json("harbor", data, headers=headers).pushes
    assert (push.event_id, push.tag, push.actor) == ("harbor:1f2e3d4c-0000-4000-8000-000000000001", "v1.2.4", "bob")
    headers["ce-type"] = "harbor.artifact.pulled"
    result = parse_json("harbor", data, headers=headers)
    assert result.pushes == [] and len(result.ignored) == 1


def test_harbor_untagged_artifact_with_the_digest_in_tag_is_not_a_push() -> None:
    result = parse_webhook("harbor", request_for(SAMPLES["harbor-untagged"]))
    assert result.pushes == []
    assert "untagged" in result.ignored[0]


def test_harbor_several_resources_get_distinct_event_ids() -> None:
    document = SAMPLES["harbor-push"].json()
    resource = document["event_data"]["resources"][0]
    latest = {**resource, "tag": "latest", "resource_url": "harbor.example.com/team/app:latest"}
    document["event_data"]["resources"].append(latest)
    pushes = parse_json("harbor", document).pushes
    assert [p.tag for p in pushes] == ["v1.2.3", "latest"]
    assert pushes[0].event_id.endswith("#0") and pushes[1].event_id.endswith("#1")


def test_tcr_reads_the_instance_domain_from_resource_url() -> None:
    (push,) = parse_webhook("tcr", request_for(SAMPLES["tcr-push"])).pushes
    assert push.registry == "demo.tencentcloudcr.com"
    assert push.actor == "100012345678"


# --- hosts from configuration ------------------------------------------------------------------


def test_dockerhub_official_images_live_under_library() -> None:
    document = SAMPLES["dockerhub-push"].json()
    document["repository"].update(repo_name="nginx", namespace="library", name="nginx")
    (push,) = parse_json("dockerhub", document).pushes
    assert (push.registry, push.repository, push.digest) == ("docker.io", "library/nginx", "")
    assert push.actor == "acme-ci"


def test_aliyun_naive_times_are_china_standard_time() -> None:
    (push,) = parse_webhook("aliyun", request_for(SAMPLES["aliyun-push"])).pushes
    assert push.pushed_at.ToDatetime(dt.UTC) == dt.datetime(2024, 5, 14, 9, 25, 46, tzinfo=dt.UTC)


def test_aliyun_enterprise_host_comes_from_configuration() -> None:
    sample = SAMPLES["aliyun-push"]
    host = "acme-registry.cn-hangzhou.cr.aliyuncs.com"
    (push,) = parse_webhook("aliyun", request_for(sample, default_registry=host)).pushes
    assert push.registry == host
    document = sample.json()
    del document["repository"]["region"]
    with pytest.raises(PayloadError) as error:
        parse_json("aliyun", document)
    assert error.value.reason == "missing_registry"


def test_ecr_host_is_built_from_account_and_region() -> None:
    document = SAMPLES["ecr-push"].json()
    document["region"] = "cn-north-1"
    (push,) = parse_json("ecr", document).pushes
    assert push.registry == "123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn"
    assert push.event_id == "ecr:13cde686-328b-6117-af20-0e5566167481"


def test_ecr_only_successful_tagged_pushes() -> None:
    for name in ("ecr-push-failed", "ecr-delete", "ecr-scan"):
        result = parse_webhook("ecr", request_for(SAMPLES[name]))
        assert result.pushes == [], name
    document = SAMPLES["ecr-push"].json()
    del document["detail"]["image-tag"]
    assert parse_json("ecr", document).pushes == []


# --- quay ---------------------------------------------------------------------------------------


def test_quay_map_shape_keeps_a_real_digest_and_drops_image_ids() -> None:
    document = SAMPLES["quay-push-map"].json()
    document["updated_tags"]["v2.9.2"] = DIGESTS["gar"]
    pushes = parse_json("quay", document).pushes
    assert [(p.tag, p.digest) for p in pushes] == [("v2.9.1", ""), ("v2.9.2", DIGESTS["gar"])]


def test_quay_without_updated_tags_is_ignored() -> None:
    result = parse_webhook("quay", request_for(SAMPLES["quay-build"]))
    assert result.pushes == [] and "build" in result.ignored[0]


# --- github -------------------------------------------------------------------------------------


def test_github_lowercases_the_owner_and_uses_the_delivery_id() -> None:
    sample = SAMPLES["github-registry-package"]
    (push,) = parse_webhook("github", request_for(sample)).pushes
    assert push.repository == "acme-org/app"
    assert push.event_id == "github:72d3162e-cc78-11e3-81ab-4c9367dc0958"
    assert push.actor == "octocat"


def test_github_body_is_recognised_without_the_event_header_and_other_events_are_ignored() -> None:
    sample = SAMPLES["github-registry-package"]
    (push,) = parse_webhook("github", request_for(sample, headers={})).pushes
    assert push.tag == "v5.1.0"
    result = parse_webhook("github", request_for(sample, headers={"x-github-event": "push"}))
    assert result.pushes == [] and "not a package event" in result.ignored[0]
    with pytest.raises(PayloadError):
        parse_json("github", {"zen": "hi"})


def test_github_version_digest_fallback() -> None:
    document = SAMPLES["github-package"].json()
    version = document["package"]["package_version"]
    version["container_metadata"]["tag"] = {"name": "v6", "digest": ""}
    version["package_url"] = ""
    (push,) = parse_json("github", document, headers={"x-github-event": "package"}).pushes
    assert (push.registry, push.repository, push.tag) == ("ghcr.io", "acme-org/app", "v6")
    assert push.digest == DIGESTS["github"]


# --- gar ----------------------------------------------------------------------------------------


def test_gar_decodes_base64_data_without_padding() -> None:
    document = SAMPLES["gar-insert"].json()
    document["message"]["data"] = document["message"]["data"].rstrip("=")
    del document["message"]["messageId"]
    (push,) = parse_json("gar", document).pushes
    assert push.event_id == "gar:10944516352371161"
    assert push.pushed_at.ToDatetime(dt.UTC) == dt.datetime(2024, 5, 14, 9, 55, 55, 749000, tzinfo=dt.UTC)


@pytest.mark.parametrize("data", ["!!!not base64!!!", base64.b64encode(b"not json").decode(), ""])
def test_gar_rejects_data_that_is_not_base64_json(data: str) -> None:
    document = SAMPLES["gar-insert"].json()
    document["message"]["data"] = data
    with pytest.raises(PayloadError) as error:
        parse_json("gar", document)
    assert error.value.reason in {"malformed_json", "unknown_shape"}


def test_gar_digest_of_another_image_is_not_used() -> None:
    document = SAMPLES["gar-insert"].json()
    data = json.loads(base64.b64decode(document["message"]["data"]))
    data["digest"] = "europe-west1-docker.pkg.dev/acme-prod/containers/other@" + DIGESTS["gar"]
    document["message"]["data"] = base64.b64encode(json.dumps(data).encode()).decode()
    (push,) = parse_json("gar", document).pushes
    assert push.digest == ""


# --- malformed input ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"", "malformed_json"),
        (b"   ", "malformed_json"),
        (b"{not json", "malformed_json"),
        (b"\xff\xfe\x00garbage", "malformed_json"),
        (b"[" * 100_000, "malformed_json"),
        (b"[]", "unknown_shape"),
        (b'"a string"', "unknown_shape"),
        (b"null", "unknown_shape"),
        (b'{"unrelated": true}', "unknown_shape"),
    ],
)
@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_malformed_bodies_are_payload_errors(fmt: str, body: bytes, reason: str) -> None:
    with pytest.raises(PayloadError) as error:
        parse_webhook(fmt, WebhookRequest(body=body))
    assert error.value.reason == reason
    assert error.value.message


def test_unknown_format() -> None:
    with pytest.raises(UnknownFormat) as error:
        parse_webhook("nexus", WebhookRequest(body=b"{}"))
    assert "harbor" in str(error.value)


_WRONG_VALUES: list[Any] = [None, 0, -1, 1.5, True, "", "x" * 300, [], {}, [None], {"a": None}]


def _mutations(document: Any, path: tuple[Any, ...] = ()) -> Any:
    """Every document obtained by replacing one node with a value of the wrong type."""
    for wrong in _WRONG_VALUES:
        yield path, wrong
    children: Any = []
    if isinstance(document, dict):
        children = document.items()
    elif isinstance(document, list):
        children = enumerate(document)
    for key, child in children:
        yield from _mutations(child, (*path, key))


def _replace(document: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    copied = copy.deepcopy(document)
    node = copied
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return copied


@pytest.mark.parametrize("sample", [s for s in SAMPLE_LIST if s.expected], ids=lambda s: s.name)
def test_no_mutation_of_a_real_payload_crashes_a_parser(sample: Sample) -> None:
    """Each node replaced by a wrong-typed value: the parser returns or raises PayloadError, nothing else."""
    document = sample.json()
    headers = {k.lower(): v for k, v in sample.headers.items()}
    checked = 0
    for path, value in _mutations(document):
        body = json.dumps(_replace(document, path, value)).encode()
        with contextlib.suppress(PayloadError):
            FORMATS[sample.format](json.loads(body), WebhookRequest(body=body, headers=headers))
        checked += 1
    assert checked > 50


def test_a_parser_crash_becomes_an_unknown_shape_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(payload: Any, request: WebhookRequest) -> Any:
        raise KeyError("surprise")

    monkeypatch.setitem(FORMATS, "harbor", broken)
    with pytest.raises(PayloadError) as error:
        safe_parse("harbor", WebhookRequest(body=b"{}"))
    assert error.value.reason == "unknown_shape"


def test_origin_and_default_time_come_from_the_request() -> None:
    sample = SAMPLES["quay-push-list"]
    result = parse_webhook("quay", request_for(sample, origin=pipeline_pb2.IMAGE_ORIGIN_PLATFORM_BUILD))
    assert {p.origin for p in result.pushes} == {pipeline_pb2.IMAGE_ORIGIN_PLATFORM_BUILD}
    # Quay carries no push time: the receive time stands in.
    assert {p.pushed_at.ToDatetime(dt.UTC) for p in result.pushes} == {RECEIVED}
