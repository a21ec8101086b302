"""The config domain: validation, normalisation, update masks, run states, filters, page tokens, ids.

Masks, filters, page tokens, ids and tag filters are the shared conveyor.aip / conveyor.tagfilter code;
these tests pin config's use of them (its declarations and the behaviour its clients see).
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from google.protobuf import timestamp_pb2

from conveyor import names as resource_names, tagfilter
from conveyor.aip import field_masks, ids, paging
from conveyor.aip.page_tokens import PageTokenCodec
from conveyor.errors import FieldViolation, InvalidArgument
from conveyor.v1 import bus_pb2, pipeline_pb2
from conveyor.v1.run_pb2 import Run
from conveyor_config.domain import names, pipelines, queries as filters, runs
from tests.unit.config.samples import CHINESE_DESCRIPTION, sample_pipeline

Kind = pipeline_pb2.Target


def violations_of(pipeline: pipeline_pb2.Pipeline) -> dict[str, str]:
    return {v.field: v.description for v in pipelines.validate_pipeline(pipelines.normalize_pipeline(pipeline))}


def with_source(**fields: object) -> pipeline_pb2.Pipeline:
    pipeline = sample_pipeline()
    for name, value in fields.items():
        if name == "tag_filter":
            pipeline.source.tag_filter.CopyFrom(value)  # type: ignore[arg-type]
        else:
            setattr(pipeline.source, name, value)
    return pipeline


def with_target(**fields: object) -> pipeline_pb2.Pipeline:
    pipeline = sample_pipeline()
    for name, value in fields.items():
        setattr(pipeline.target, name, value)
    return pipeline


# --------------------------------------------------------------------------- validation


def test_sample_pipeline_is_valid() -> None:
    assert violations_of(sample_pipeline()) == {}


def test_unicode_text_is_kept_byte_for_byte() -> None:
    # Decomposed "é" (e + combining acute) must not be NFC-normalised, nor spaces trimmed.
    display = "  生产 部署 e\u0301 🚀 "
    pipeline = sample_pipeline(display_name=display, description=CHINESE_DESCRIPTION)
    checked = pipelines.check_pipeline(pipeline)
    assert checked.display_name.encode() == display.encode()
    assert checked.description.encode() == CHINESE_DESCRIPTION.encode()
    round_trip = pipeline_pb2.Pipeline.FromString(checked.SerializeToString())
    assert round_trip.description == CHINESE_DESCRIPTION


def test_length_limits_count_characters_not_bytes() -> None:
    assert violations_of(sample_pipeline(display_name="流" * 200)) == {}
    too_long = violations_of(sample_pipeline(display_name="流" * 201))
    assert "at most 200 characters" in too_long["pipeline.display_name"]
    assert violations_of(sample_pipeline(description="描" * 4000)) == {}
    assert "at most 4000" in violations_of(sample_pipeline(description="描" * 4001))["pipeline.description"]


@pytest.mark.parametrize("display_name", ["", "   "])
def test_display_name_is_required(display_name: str) -> None:
    assert violations_of(sample_pipeline(display_name=display_name)) == {"pipeline.display_name": "required"}


def test_display_name_rejects_control_characters() -> None:
    assert "control characters" in violations_of(sample_pipeline(display_name="a\nb"))["pipeline.display_name"]


def test_missing_source_and_target_report_each_required_field() -> None:
    pipeline = pipeline_pb2.Pipeline(display_name="x")
    fields = set(violations_of(pipeline))
    assert fields == {
        "pipeline.source.registry",
        "pipeline.source.repository",
        "pipeline.target.platform",
        "pipeline.target.cluster",
        "pipeline.target.namespace",
        "pipeline.target.workload_kind",
        "pipeline.target.workload",
        "pipeline.target.container",
    }


@pytest.mark.parametrize(
    "registry", ["registry.example.com/path", "bad host", "-leading.example.com", "host:99999999", "a_b.com"]
)
def test_registry_must_be_a_host(registry: str) -> None:
    assert "is not a registry host" in violations_of(with_source(registry=registry))["pipeline.source.registry"]


@pytest.mark.parametrize("registry", ["registry.example.com:5000", "localhost:5000", "127.0.0.1:5000", "[::1]:5000"])
def test_registry_hosts_with_ports_are_valid(registry: str) -> None:
    assert violations_of(with_source(registry=registry)) == {}


def test_registry_and_repository_are_normalised() -> None:
    checked = pipelines.check_pipeline(with_source(registry="HTTPS://Demo.TencentCloudCR.com/", repository="team/app"))
    assert checked.source.registry == "demo.tencentcloudcr.com"
    hub = pipelines.check_pipeline(with_source(registry="index.docker.io", repository="nginx"))
    assert (hub.source.registry, hub.source.repository) == ("docker.io", "library/nginx")


@pytest.mark.parametrize("repository", ["Team/App", "team//app", "team/app:tag", "team/-app", "team app"])
def test_repository_must_be_a_path(repository: str) -> None:
    found = violations_of(with_source(repository=repository))
    assert "not a repository path" in found["pipeline.source.repository"]


def test_regex_filter_is_compiled_with_re2_and_rejected_with_its_message() -> None:
    bad = pipeline_pb2.TagFilter(type=pipeline_pb2.TagFilter.REGEX, value="v(1")
    description = violations_of(with_source(tag_filter=bad))["pipeline.source.tag_filter.value"]
    assert "missing )" in description  # RE2's own message
    # Backreferences are valid for Python's re but not for RE2 (no catastrophic backtracking).
    backreference = pipeline_pb2.TagFilter(type=pipeline_pb2.TagFilter.REGEX, value=r"(a)\1")
    assert "pipeline.source.tag_filter.value" in violations_of(with_source(tag_filter=backreference))
    empty = pipeline_pb2.TagFilter(type=pipeline_pb2.TagFilter.REGEX)
    assert "required" in violations_of(with_source(tag_filter=empty))["pipeline.source.tag_filter.value"]


@pytest.mark.parametrize("tag", ["-bad", ".bad", "a" * 129, "has space", "ütf"])
def test_exact_filter_must_be_a_valid_tag(tag: str) -> None:
    exact = pipeline_pb2.TagFilter(type=pipeline_pb2.TagFilter.EXACT, value=tag)
    assert "not a valid tag" in violations_of(with_source(tag_filter=exact))["pipeline.source.tag_filter.value"]


def test_exact_filter_needs_a_value_and_any_filter_none() -> None:
    exact = pipeline_pb2.TagFilter(type=pipeline_pb2.TagFilter.EXACT)
    assert "required" in violations_of(with_source(tag_filter=exact))["pipeline.source.tag_filter.value"]
    any_with_value = pipeline_pb2.TagFilter(type=pipeline_pb2.TagFilter.ANY, value="v1")
    assert "must be empty" in violations_of(with_source(tag_filter=any_with_value))["pipeline.source.tag_filter.value"]
    assert (
        violations_of(with_source(tag_filter=pipeline_pb2.TagFilter(type=pipeline_pb2.TagFilter.EXACT, value="v1")))
        == {}
    )
    # An unspecified type means ANY, so a value there is a mistake too.
    assert "pipeline.source.tag_filter.value" in violations_of(
        with_source(tag_filter=pipeline_pb2.TagFilter(value="v1"))
    )


def test_unknown_enum_values_are_rejected() -> None:
    pipeline = sample_pipeline()
    pipeline.source.origin = 42  # type: ignore[assignment]
    pipeline.target.platform = 42  # type: ignore[assignment]
    found = violations_of(pipeline)
    assert "unknown image origin" in found["pipeline.source.origin"]
    assert "one of TKE, EKS, EDGE, KUBERNETES" in found["pipeline.target.platform"]


@pytest.mark.parametrize("field", ["namespace", "container"])
@pytest.mark.parametrize("value", ["Web", "a" * 64, "-x", "x-", "a.b", "a_b"])
def test_namespace_and_container_names_must_be_dns1123_labels(field: str, value: str) -> None:
    description = violations_of(with_target(**{field: value}))[f"pipeline.target.{field}"]
    assert "DNS-1123 label" in description


@pytest.mark.parametrize("kind", [Kind.DEPLOYMENT, Kind.STATEFULSET, Kind.DAEMONSET, 0])
@pytest.mark.parametrize("value", ["Web", "a" * 254, "-x", "x-", "a..b", "a.", "a_b"])
def test_workload_names_must_be_dns1123_subdomains(kind: int, value: str) -> None:
    description = violations_of(with_target(workload_kind=kind, workload=value))["pipeline.target.workload"]
    assert "DNS-1123 subdomain" in description


@pytest.mark.parametrize("kind", [Kind.DEPLOYMENT, Kind.STATEFULSET, Kind.DAEMONSET])
def test_a_workload_may_be_named_like_a_subdomain_but_not_its_namespace_or_container(kind: int) -> None:
    assert violations_of(with_target(workload_kind=kind, workload="api.v2")) == {}
    refused = violations_of(with_target(workload_kind=kind, namespace="api.v2", container="api.v2"))
    assert set(refused) == {"pipeline.target.namespace", "pipeline.target.container"}
    assert "a lowercase RFC 1123 label must consist of" in refused["pipeline.target.container"]


def test_longest_valid_kubernetes_names() -> None:
    longest_subdomain = ".".join(["b" * 63] * 4)[:253]
    assert len(longest_subdomain) == 253
    assert violations_of(with_target(namespace="a" * 63, workload=longest_subdomain, container="c" * 63)) == {}


def test_cluster_and_region_formats() -> None:
    assert violations_of(with_target(cluster="arn:aws:eks:eu-west-1:123456789012:cluster/prod")) == {}
    assert "no spaces" in violations_of(with_target(cluster="my cluster"))["pipeline.target.cluster"]
    assert "region" in violations_of(with_target(region="ap guangzhou"))["pipeline.target.region"]
    assert violations_of(with_target(region="")) == {}


def test_platform_and_workload_kind_are_required() -> None:
    found = violations_of(with_target(platform=0, workload_kind=0))
    assert set(found) == {"pipeline.target.platform", "pipeline.target.workload_kind"}
    assert "DEPLOYMENT, STATEFULSET, DAEMONSET" in found["pipeline.target.workload_kind"]


@pytest.mark.parametrize("seconds", [0, -5, 6 * 3600 + 1])
def test_rollout_timeout_bounds(seconds: int) -> None:
    pipeline = sample_pipeline()
    pipeline.options.rollout_timeout.seconds = seconds
    assert "pipeline.options.rollout_timeout" in violations_of(pipeline)


def test_defaults_are_made_explicit() -> None:
    checked = pipelines.check_pipeline(
        sample_pipeline(source=pipeline_pb2.Source(registry="r.example.com", repository="a/b"))
    )
    assert checked.source.tag_filter.type == pipeline_pb2.TagFilter.ANY
    assert checked.source.origin == pipeline_pb2.IMAGE_ORIGIN_ANY
    assert checked.options.HasField("verify_rollout") and checked.options.verify_rollout is True
    assert checked.options.rollout_timeout.seconds == 600
    explicit = sample_pipeline()
    explicit.options.verify_rollout = False
    assert pipelines.check_pipeline(explicit).options.verify_rollout is False


def test_check_pipeline_raises_every_violation_at_once() -> None:
    with pytest.raises(InvalidArgument) as error:
        pipelines.check_pipeline(sample_pipeline(display_name="", target=pipeline_pb2.Target(namespace="Bad")))
    fields = {v.field for v in error.value.violations}
    assert {"pipeline.display_name", "pipeline.target.namespace", "pipeline.target.cluster"} <= fields


def test_tag_matching_uses_full_matches() -> None:
    regex = pipeline_pb2.TagFilter(type=pipeline_pb2.TagFilter.REGEX, value=r"v\d+")
    assert tagfilter.matches(regex, "v12")
    assert not tagfilter.matches(regex, "v12-rc1")
    exact = pipeline_pb2.TagFilter(type=pipeline_pb2.TagFilter.EXACT, value="stable")
    assert tagfilter.matches(exact, "stable") and not tagfilter.matches(exact, "stable2")
    assert tagfilter.matches(pipeline_pb2.TagFilter(), "anything")


def test_request_ids_are_bounded() -> None:
    names.validate_request_id("")
    names.validate_request_id("5f2b6c1e-8f0e-4b8e-9d3a-2f1c0e9b7a61")
    for bad in ("x" * 129, "has space", "ключ"):
        with pytest.raises(InvalidArgument):
            names.validate_request_id(bad)


def test_etags_change_every_time() -> None:
    assert len({pipelines.new_etag() for _ in range(100)}) == 100


# --------------------------------------------------------------------------- update masks


def apply_update_mask(
    existing: pipeline_pb2.Pipeline, patch: pipeline_pb2.Pipeline, paths: Sequence[str]
) -> pipeline_pb2.Pipeline:
    """What UpdatePipeline merges (before validating the result)."""
    merged, _paths = field_masks.apply(existing, patch, paths, pipelines.UPDATABLE)
    return merged


def stored() -> pipeline_pb2.Pipeline:
    pipeline = pipelines.check_pipeline(sample_pipeline())
    pipeline.name = "pipelines/web"
    pipeline.etag = "e1"
    pipeline.create_time.seconds = 100
    pipeline.update_time.seconds = 100
    return pipeline


def test_mask_updates_only_named_fields() -> None:
    patch = pipeline_pb2.Pipeline(display_name="新名字", description="ignored", disabled=True)
    result = apply_update_mask(stored(), patch, ["display_name", "disabled"])
    assert result.display_name == "新名字"
    assert result.disabled is True
    assert result.description == stored().description


def test_mask_with_nested_path_keeps_sibling_fields() -> None:
    patch = pipeline_pb2.Pipeline(target=pipeline_pb2.Target(workload="backend"))
    result = apply_update_mask(stored(), patch, ["target.workload"])
    assert result.target.workload == "backend"
    assert result.target.cluster == "prod"


def test_mask_naming_a_message_replaces_it_whole() -> None:
    patch = pipeline_pb2.Pipeline(source=pipeline_pb2.Source(registry="other.example.com", repository="x/y"))
    result = apply_update_mask(stored(), patch, ["source"])
    assert result.source.registry == "other.example.com"
    assert not result.source.HasField("tag_filter")


def test_mask_clears_optional_field_absent_from_the_patch() -> None:
    existing = stored()
    existing.options.verify_rollout = False
    result = apply_update_mask(existing, pipeline_pb2.Pipeline(), ["options.verify_rollout"])
    assert not result.options.HasField("verify_rollout")  # back to the default (true)


@pytest.mark.parametrize("paths", [["*"]])
def test_empty_or_star_mask_replaces_every_updatable_field(paths: list[str]) -> None:
    # AIP-134: only `*` replaces everything; an empty mask now means the fields the patch sets (below).
    patch = sample_pipeline(display_name="Replaced")
    patch.name = "pipelines/other"
    patch.etag = "forged"
    patch.create_time.seconds = 1
    result = apply_update_mask(stored(), patch, paths)
    assert result.display_name == "Replaced"
    assert not result.options.HasField("rollout_timeout")  # the patch has no options
    # Output-only fields are never taken from the request.
    assert (result.name, result.etag, result.create_time.seconds) == ("pipelines/web", "e1", 100)


def test_empty_mask_updates_the_fields_the_patch_sets() -> None:
    patch = sample_pipeline(display_name="Replaced")  # no options, like the `*` case above
    patch.name = "pipelines/other"
    patch.etag = "forged"
    patch.create_time.seconds = 1
    merged, paths = field_masks.apply(stored(), patch, [], pipelines.UPDATABLE)
    assert merged.display_name == "Replaced"
    assert merged.options.rollout_timeout.seconds == 600  # kept: the patch does not set options
    assert (merged.name, merged.etag, merged.create_time.seconds) == ("pipelines/web", "e1", 100)
    assert "options" not in {path.split(".")[0] for path in paths}
    assert not {"name", "etag", "create_time"} & set(paths)


def test_empty_mask_descends_to_the_leaves_the_patch_sets() -> None:
    existing = stored()
    existing.options.verify_rollout = False
    patch = pipeline_pb2.Pipeline(name="pipelines/web", target=pipeline_pb2.Target(workload="backend"))
    merged, paths = field_masks.apply(existing, patch, [], pipelines.UPDATABLE)
    assert paths == ["target.workload"]
    assert (merged.target.workload, merged.target.cluster) == ("backend", "prod")
    assert merged.display_name == existing.display_name and merged.options.verify_rollout is False
    # A field set to its default is not "set": `disabled = false` needs a mask naming it.
    disabled = stored()
    disabled.disabled = True
    unchanged, paths = field_masks.apply(disabled, pipeline_pb2.Pipeline(disabled=False), [], pipelines.UPDATABLE)
    assert (unchanged.disabled, paths) == (True, [])
    enabled = apply_update_mask(disabled, pipeline_pb2.Pipeline(disabled=False), ["disabled"])
    assert enabled.disabled is False


def test_output_only_fields_in_the_mask_are_ignored() -> None:
    patch = pipeline_pb2.Pipeline(name="pipelines/x", etag="forged", display_name="New")
    patch.create_time.seconds = 5
    result = apply_update_mask(stored(), patch, ["create_time", "etag", "name", "display_name"])
    assert (result.name, result.etag, result.create_time.seconds) == ("pipelines/web", "e1", 100)
    assert result.display_name == "New"


def test_invalid_mask_paths_are_field_violations() -> None:
    with pytest.raises(InvalidArgument) as error:
        apply_update_mask(stored(), pipeline_pb2.Pipeline(), ["nope", "target.nope", "disabled.x", "*"])
    assert [v.field for v in error.value.violations] == ["update_mask"] * 4
    descriptions = " | ".join(v.description for v in error.value.violations)
    assert "'nope'" in descriptions and "no sub-fields" in descriptions and "only path" in descriptions


def test_target_change_detection() -> None:
    before = stored()
    after = apply_update_mask(before, pipeline_pb2.Pipeline(display_name="x"), ["display_name"])
    assert not pipelines.target_changed(before, after)
    moved = apply_update_mask(
        before, pipeline_pb2.Pipeline(target=pipeline_pb2.Target(namespace="other")), ["target.namespace"]
    )
    assert pipelines.target_changed(before, moved)


# --------------------------------------------------------------------------- run states


def test_state_order() -> None:
    assert runs.state_rank(Run.QUEUED) < runs.state_rank(Run.RUNNING) < runs.state_rank(Run.SUCCEEDED)
    for terminal in (Run.SUCCEEDED, Run.FAILED, Run.SUPERSEDED, Run.CANCELLED):
        assert runs.is_terminal(terminal)
        assert runs.advances(Run.RUNNING, terminal)
        assert runs.advances(Run.QUEUED, terminal)
        for other in (Run.QUEUED, Run.RUNNING, Run.SUCCEEDED, Run.FAILED, Run.SUPERSEDED, Run.CANCELLED):
            assert not runs.advances(terminal, other)
    assert runs.advances(Run.QUEUED, Run.RUNNING)
    assert not runs.advances(Run.RUNNING, Run.QUEUED)
    assert not runs.advances(Run.RUNNING, Run.RUNNING)
    assert not runs.advances(Run.QUEUED, Run.STATE_UNSPECIFIED)


def ts(seconds: int) -> timestamp_pb2.Timestamp:
    return timestamp_pb2.Timestamp(seconds=seconds)


def test_run_event_moves_state_forward_and_records_times() -> None:
    run = runs.new_run_from_event(
        "pipelines/p/runs/r",
        bus_pb2.RunEvent(time=ts(10), trigger=Run.PUSH, image="r/a:v1", tag="v1", source_event_id="push-1"),
        ts(99),
    )
    assert (run.state, run.create_time.seconds, run.event_id) == (Run.QUEUED, 10, "push-1")
    assert runs.apply_run_event(run, bus_pb2.RunEvent(state=Run.RUNNING, time=ts(11)), ts(99))
    assert (run.state, run.start_time.seconds) == (Run.RUNNING, 11)
    finished = bus_pb2.RunEvent(state=Run.FAILED, time=ts(12), error="ImagePullBackOff", previous_image="r/a:v0")
    assert runs.apply_run_event(run, finished, ts(99))
    assert (run.state, run.end_time.seconds, run.error, run.previous_image) == (
        Run.FAILED,
        12,
        "ImagePullBackOff",
        "r/a:v0",
    )


def test_terminal_state_is_final_even_for_late_events() -> None:
    run = Run(name="pipelines/p/runs/r", state=Run.QUEUED)
    runs.apply_run_event(run, bus_pb2.RunEvent(state=Run.SUCCEEDED, time=ts(20)), ts(99))
    for late in (Run.RUNNING, Run.QUEUED, Run.FAILED):
        assert not runs.apply_run_event(run, bus_pb2.RunEvent(state=late, time=ts(30), error="late"), ts(99))
    assert (run.state, run.end_time.seconds, run.error) == (Run.SUCCEEDED, 20, "")
    assert not run.HasField("start_time")  # it never reported RUNNING before finishing


def test_event_without_time_uses_now() -> None:
    run = Run(name="pipelines/p/runs/r", state=Run.QUEUED)
    runs.apply_run_event(run, bus_pb2.RunEvent(state=Run.RUNNING), ts(77))
    assert run.start_time.seconds == 77


# --------------------------------------------------------------------------- filters


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", filters.PipelineFilter()),
        ('source.registry = "demo.tencentcloudcr.com"', filters.PipelineFilter(registry="demo.tencentcloudcr.com")),
        (
            'source.registry = "Demo.TencentCloudCR.com" AND target.cluster = "prod"',
            filters.PipelineFilter(registry="demo.tencentcloudcr.com", cluster="prod"),
        ),
        (
            "target.namespace=web AND target.workload = 'front end'",
            filters.PipelineFilter(namespace="web", workload="front end"),
        ),
        (
            'source.repository = "team/app" AND disabled = true',
            filters.PipelineFilter(repository="team/app", disabled=True),
        ),
        ('(disabled = "false")', filters.PipelineFilter(disabled=False)),
        (r'target.cluster = "a\"b"', filters.PipelineFilter(cluster='a"b')),
    ],
)
def test_pipeline_filters(text: str, expected: filters.PipelineFilter) -> None:
    assert filters.parse_pipeline_filter(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('owner = "me"', "unknown field 'owner'; filterable fields: source.registry"),
        ('target.cluster = "a" OR target.cluster = "b"', "OR is not supported here"),
        ('target.cluster != "a"', "operator '!=' is not supported"),
        ("target.cluster:a", "operator ':' is not supported"),
        ('target.cluster = "a" AND', "filter ends with AND"),
        ('target.cluster = "a', "unterminated string"),
        ("target.cluster =", "expected a value"),
        ("target.cluster", "expected '='"),
        ('target.cluster = "a" target.namespace = "b"', "expected AND"),
        ('target.cluster = "a" AND target.cluster = "b"', "compared more than once"),
        ("disabled = maybe", "true or false"),
        ("AND disabled = true", "expected a field name"),
    ],
)
def test_bad_pipeline_filters_are_clear_errors(text: str, message: str) -> None:
    with pytest.raises(InvalidArgument) as error:
        filters.parse_pipeline_filter(text)
    [violation] = error.value.violations
    assert violation.field == "filter"
    assert message in violation.description


def test_run_filters() -> None:
    assert filters.parse_run_filter("") == filters.RunFilter()
    assert filters.parse_run_filter("state = FAILED").states == {Run.FAILED}
    assert filters.parse_run_filter("state = FAILED OR state = running").states == {Run.FAILED, Run.RUNNING}
    assert filters.parse_run_filter('(state = "SUCCEEDED")').states == {Run.SUCCEEDED}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("state = DONE", "unknown state 'DONE'; states: QUEUED, RUNNING"),
        ("state = FAILED AND state = RUNNING", "AND is not supported here"),
        ("tag = v1", "unknown field 'tag'"),
        ("state = FAILED OR", "filter ends with OR"),
    ],
)
def test_bad_run_filters_are_clear_errors(text: str, message: str) -> None:
    with pytest.raises(InvalidArgument) as error:
        filters.parse_run_filter(text)
    assert error.value.violations[0].field == "filter"
    assert message in error.value.violations[0].description


# --------------------------------------------------------------------------- pagination


def test_page_size_defaults_and_bounds() -> None:
    assert paging.page_size(0) == 50
    assert paging.page_size(7) == 7
    assert paging.page_size(5000) == 1000
    with pytest.raises(InvalidArgument):
        paging.page_size(-1)


CODEC = PageTokenCodec(b"k" * 32)


def test_page_tokens_round_trip_and_are_opaque() -> None:
    query = filters.RunFilter(frozenset({Run.FAILED})).page_query("-")
    token = CODEC.encode([1700000000000000, "web", "01h"], query)
    assert "web" not in token and "=" not in token
    assert CODEC.decode(token, query, (int, str, str)) == [1700000000000000, "web", "01h"]


def test_page_token_for_another_filter_or_parent_is_rejected() -> None:
    token = CODEC.encode(["a"], filters.parse_pipeline_filter('target.cluster = "x"').page_query())
    other_queries = [
        filters.parse_pipeline_filter('target.cluster = "y"').page_query(),
        filters.RunFilter().page_query("web"),
    ]
    for other in other_queries:
        with pytest.raises(InvalidArgument) as error:
            CODEC.decode(token, other, (str,))
        assert error.value.violations == [
            FieldViolation(
                "page_token",
                "the page token was issued for a different parent or filter; "
                "repeat the request's filter or start again without a page token",
            )
        ]
    runs_token = CODEC.encode([1, "web", "r1"], filters.RunFilter().page_query("web"))
    with pytest.raises(InvalidArgument):
        CODEC.decode(runs_token, filters.RunFilter().page_query("-"), (int, str, str))


def test_equal_filters_spelled_differently_share_their_tokens() -> None:
    spelled = filters.parse_pipeline_filter('target.cluster = "prod" AND source.registry = "Demo.Example.com"')
    canonical = filters.parse_pipeline_filter("source.registry = demo.example.com AND target.cluster = prod")
    token = CODEC.encode(["a"], spelled.page_query())
    assert CODEC.decode(token, canonical.page_query(), (str,)) == ["a"]


# The last one is a token of the unsigned format config issued before issue 9: rejected, not trusted.
@pytest.mark.parametrize("token", ["garbage!", "e30", "eyJ2IjoxLCJrIjpbMV0sImIiOiJ4In0", "\u00e9"])
def test_malformed_page_tokens_are_rejected(token: str) -> None:
    with pytest.raises(InvalidArgument) as error:
        CODEC.decode(token, "x", (str,))
    assert error.value.violations[0].field == "page_token"


def test_a_token_signed_with_another_key_is_rejected() -> None:
    query = filters.PipelineFilter().page_query()
    token = PageTokenCodec(b"o" * 32).encode(["a"], query)
    with pytest.raises(InvalidArgument):
        CODEC.decode(token, query, (str,))


# --------------------------------------------------------------------------- ids


def test_generated_ids_are_valid_ids_and_resource_names() -> None:
    pipeline_id = ids.new_id(names.PIPELINE_ID_PREFIX)
    run_id = ids.new_id(names.RUN_ID_PREFIX)
    manual_run_id = ids.derived_id(names.RUN_ID_PREFIX, 1_700_000_000_000, "manual", pipeline_id, "request-1")
    for generated in (pipeline_id, run_id, manual_run_id):
        ids.validate_id(generated)  # raises InvalidArgument for an id the validator rejects
        assert generated[0].isalpha() and len(generated) == 27
    assert resource_names.parse_run_name(f"pipelines/{pipeline_id}/runs/{run_id}").run == run_id
    assert ids.derived_id(names.RUN_ID_PREFIX, 1_700_000_000_000, "manual", pipeline_id, "request-1") == manual_run_id


@pytest.mark.parametrize("chosen", ["9-starts-with-digit", "Upper", "ends-", "a" * 64, "under_score"])
def test_chosen_ids_must_be_rfc1034_labels(chosen: str) -> None:
    with pytest.raises(InvalidArgument) as error:
        ids.validate_id(chosen, "pipeline_id")
    assert error.value.violations[0].field == "pipeline_id"
