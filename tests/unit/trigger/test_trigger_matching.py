"""The pure matcher: tag filters, origin, disabled pipelines, host/repository rules, the index."""

from __future__ import annotations

from conveyor.refs import normalize_repo
from conveyor.v1 import pipeline_pb2
from conveyor_trigger.domain.matching import ExcludedPipeline, Outcome, PipelineIndex, compile_pipeline
from tests.unit.trigger.trigger_factories import FILTER, pipeline, push

LOCAL = pipeline_pb2.IMAGE_ORIGIN_LOCAL_PUSH
BUILD = pipeline_pb2.IMAGE_ORIGIN_PLATFORM_BUILD


def index_of(*pipelines: pipeline_pb2.Pipeline) -> PipelineIndex:
    index, _ = PipelineIndex.build(pipelines)
    return index


def outcomes(index: PipelineIndex, tag: str, **kw: object) -> dict[str, int]:
    return {d.pipeline_name: d.outcome for d in index.match(push(tag, **kw))}  # type: ignore[arg-type]


def test_any_and_unspecified_filters_take_every_tag() -> None:
    index = index_of(pipeline("any", filter_type=FILTER.ANY), pipeline("unset", filter_type=FILTER.TYPE_UNSPECIFIED))
    assert outcomes(index, "whatever-1") == {"pipelines/any": Outcome.MATCHED, "pipelines/unset": Outcome.MATCHED}


def test_exact_filter() -> None:
    index = index_of(pipeline("exact", filter_type=FILTER.EXACT, value="v1"))
    assert outcomes(index, "v1") == {"pipelines/exact": Outcome.MATCHED}
    (decision,) = index.match(push("v10"))
    assert decision.outcome == Outcome.TAG_MISMATCH
    assert decision.reason == "tag 'v10' is not the exact tag 'v1'"


def test_regex_filter_must_match_the_whole_tag() -> None:
    index = index_of(pipeline("semver", filter_type=FILTER.REGEX, value=r"v\d+\.\d+\.\d+"))
    assert outcomes(index, "v1.2.3") == {"pipelines/semver": Outcome.MATCHED}
    for tag in ("v1.2.3-rc1", "xv1.2.3", "v1.2"):
        (decision,) = index.match(push(tag))
        assert decision.outcome == Outcome.TAG_MISMATCH, tag
        assert "does not match regex" in decision.reason


def test_regex_alternation_is_anchored_as_a_whole() -> None:
    # A naive `^a|b$` search would accept "ab-dev"; a full match must not.
    index = index_of(pipeline("alt", filter_type=FILTER.REGEX, value="main|release-.*"))
    assert outcomes(index, "release-7") == {"pipelines/alt": Outcome.MATCHED}
    assert outcomes(index, "main-old") == {"pipelines/alt": Outcome.TAG_MISMATCH}


def test_invalid_regex_never_reaches_the_matcher_but_is_explained() -> None:
    good = pipeline("good", filter_type=FILTER.REGEX, value="v.*")
    bad = pipeline("bad", filter_type=FILTER.REGEX, value="(unclosed")
    lookbehind = pipeline("perl", filter_type=FILTER.REGEX, value="(?<=v)1")
    index, rejected = PipelineIndex.build([good, bad, lookbehind])

    assert {r.name for r in rejected} == {"pipelines/bad", "pipelines/perl"}
    assert "does not compile" in rejected[0].reason
    assert index.get("pipelines/bad") is None and len(index) == 1
    decisions = {d.pipeline_name: d for d in index.match(push("v1"))}
    assert decisions["pipelines/good"].outcome == Outcome.MATCHED
    assert decisions["pipelines/bad"].outcome == Outcome.TAG_MISMATCH
    assert decisions["pipelines/bad"].pipeline is None
    assert decisions["pipelines/bad"].reason.startswith("excluded from matching: tag filter regex '(unclosed'")

    # Fixing it brings it in.
    fixed = pipeline("bad", filter_type=FILTER.REGEX, value="v1", updated=1_700_000_100, etag="e2")
    assert not isinstance(index.upsert(fixed), ExcludedPipeline)
    assert outcomes(index, "v1")["pipelines/bad"] == Outcome.MATCHED


def test_origin_filter() -> None:
    index = index_of(
        pipeline("builds", origin=BUILD),
        pipeline("local", origin=LOCAL),
        pipeline("any", origin=pipeline_pb2.IMAGE_ORIGIN_ANY),
        pipeline("unset", origin=pipeline_pb2.IMAGE_ORIGIN_UNSPECIFIED),
    )
    assert outcomes(index, "v1", origin=LOCAL) == {
        "pipelines/any": Outcome.MATCHED,
        "pipelines/builds": Outcome.ORIGIN_MISMATCH,
        "pipelines/local": Outcome.MATCHED,
        "pipelines/unset": Outcome.MATCHED,
    }
    assert outcomes(index, "v1", origin=BUILD)["pipelines/builds"] == Outcome.MATCHED
    assert outcomes(index, "v1", origin=BUILD)["pipelines/local"] == Outcome.ORIGIN_MISMATCH
    decision = next(d for d in index.match(push("v1")) if d.pipeline_name == "pipelines/builds")
    assert decision.reason == "origin LOCAL_PUSH is not the pipeline's origin PLATFORM_BUILD"


def test_disabled_pipeline_is_reported_not_matched() -> None:
    index = index_of(pipeline("off", disabled=True, filter_type=FILTER.EXACT, value="v1"))
    (decision,) = index.match(push("v1"))
    assert (decision.outcome, decision.reason) == (Outcome.PIPELINE_DISABLED, "pipeline is disabled")


def test_no_pipeline_for_the_repository() -> None:
    index = index_of(pipeline("app"))
    (decision,) = index.match(push("v1", repository="team/other"))
    assert decision.outcome == Outcome.NO_PIPELINE
    assert decision.pipeline_name == ""
    assert decision.reason == "no pipeline watches registry.example.com/team/other"


def test_hosts_compare_case_insensitively_and_docker_hub_aliases_fold() -> None:
    index = index_of(
        pipeline("mixed", registry="Registry.Example.COM", repository="team/app"),
        pipeline("hub", registry="index.docker.io", repository="nginx"),
        pipeline("port", registry="registry.example.com:5000", repository="team/app"),
    )
    assert outcomes(index, "v1", registry="registry.example.com") == {"pipelines/mixed": Outcome.MATCHED}
    assert outcomes(index, "v1", registry="REGISTRY.example.com:5000") == {"pipelines/port": Outcome.MATCHED}
    for host, repository in [("docker.io", "library/nginx"), ("registry-1.docker.io", "nginx"), ("DOCKER.IO", "nginx")]:
        assert outcomes(index, "1.25", registry=host, repository=repository) == {"pipelines/hub": Outcome.MATCHED}
    # Repository paths compare exactly (they are lower case by the distribution spec).
    assert outcomes(index, "v1", repository="team/app2") == {"": Outcome.NO_PIPELINE}
    assert normalize_repo("https://Index.Docker.io/", "nginx") == ("docker.io", "library/nginx")


def test_matching_only_looks_at_the_pushes_repository_among_many() -> None:
    pipelines = [
        pipeline(f"p{n}", repository=f"team/app{n % 1000}", filter_type=FILTER.REGEX, value=rf"v{n % 3}\..*")
        for n in range(5000)
    ]
    index = index_of(*pipelines)
    assert len(index) == 5000
    decisions = index.match(push("v1.0", repository="team/app7"))
    # 5 pipelines watch team/app7 (n = 7, 1007, ...); only they are looked at.
    assert sorted(d.pipeline_name for d in decisions) == sorted(f"pipelines/p{n}" for n in range(7, 5000, 1000))
    matched = {d.pipeline_name for d in decisions if d.outcome == Outcome.MATCHED}
    assert matched == {f"pipelines/p{n}" for n in range(7, 5000, 1000) if n % 3 == 1}


def test_upsert_moves_a_pipeline_between_repositories_and_remove_forgets_it() -> None:
    index = index_of(pipeline("p", repository="team/a"))
    index.upsert(pipeline("p", repository="team/b"))
    assert outcomes(index, "v1", repository="team/a") == {"": Outcome.NO_PIPELINE}
    assert outcomes(index, "v1", repository="team/b") == {"pipelines/p": Outcome.MATCHED}
    index.remove("pipelines/p")
    assert len(index) == 0 and index.by_key == {}
    index.remove("pipelines/never-existed")


def test_rebuild_reuses_unchanged_compiled_pipelines() -> None:
    original = pipeline("p", filter_type=FILTER.REGEX, value="v.*", etag="e1")
    first = index_of(original)
    second, _ = PipelineIndex.build([original], previous=first)
    assert second.get("pipelines/p") is first.get("pipelines/p")
    changed = pipeline("p", filter_type=FILTER.REGEX, value="x.*", etag="e2", updated=1_700_000_500)
    third, _ = PipelineIndex.build([changed], previous=second)
    assert third.get("pipelines/p") is not first.get("pipelines/p")
    assert outcomes(third, "x1") == {"pipelines/p": Outcome.MATCHED}


def test_unusable_pipelines_are_excluded_with_a_reason() -> None:
    no_source = pipeline("nosrc", registry="", repository="")
    empty_exact = pipeline("exact", filter_type=FILTER.EXACT, value="")
    bad_name = pipeline("x")
    bad_name.name = "not-a-name"
    _, rejected = PipelineIndex.build([no_source, empty_exact, bad_name])
    reasons = {r.name: r.reason for r in rejected}
    assert reasons == {
        "pipelines/nosrc": "source registry and repository are required",
        "pipelines/exact": "EXACT tag filter without a tag",
        "not-a-name": "invalid pipeline name 'not-a-name'",
    }


def test_compiled_pipeline_keeps_the_pipeline_snapshot() -> None:
    source = pipeline("snap", pin_digest=True)
    compiled = compile_pipeline(source)
    assert compiled.pipeline == source and compiled.pipeline_id == "snap"
