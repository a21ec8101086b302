from __future__ import annotations

import argparse
import pathlib

import grpc
import pytest
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2

from conveyor.v1 import pipeline_pb2
from conveyor_ctl import main as ctl_main, spec
from conveyor_ctl.client import CONFIG, DEPLOYER, CallError, resolve_address
from conveyor_ctl.failure import Failure, exit_code_for

Target = pipeline_pb2.Target


# ---------------------------------------------------------------- names


@pytest.mark.parametrize("text", ["web", "pipelines/web", " pipelines/web "])
def test_pipeline_names(text: str) -> None:
    assert spec.pipeline_name(text) == "pipelines/web"


@pytest.mark.parametrize("text", ["", "Web", "pipelines/", "pipelines/a/b", "-web"])
def test_bad_pipeline_names(text: str) -> None:
    with pytest.raises(spec.UsageError, match="is not a pipeline name"):
        spec.pipeline_name(text)


@pytest.mark.parametrize("text", ["pipelines/web/runs/01abc", "web/runs/01abc", "web/01abc"])
def test_run_names(text: str) -> None:
    assert spec.run_name(text) == "pipelines/web/runs/01abc"


@pytest.mark.parametrize("text", ["web", "pipelines/web", "web/runs", "a/b/c", "web/RUN"])
def test_bad_run_names(text: str) -> None:
    with pytest.raises(spec.UsageError, match="is not a run name"):
        spec.run_name(text)


def test_run_parent_defaults_to_every_pipeline() -> None:
    assert spec.run_parent(None) == "pipelines/-"
    assert spec.run_parent("web") == "pipelines/web"


# ---------------------------------------------------------------- words


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("any", pipeline_pb2.TagFilter(type=pipeline_pb2.TagFilter.ANY)),
        ("exact:v1.2", pipeline_pb2.TagFilter(type=pipeline_pb2.TagFilter.EXACT, value="v1.2")),
        ("regex:^v\\d+:x$", pipeline_pb2.TagFilter(type=pipeline_pb2.TagFilter.REGEX, value="^v\\d+:x$")),
        ("REGEX:^a", pipeline_pb2.TagFilter(type=pipeline_pb2.TagFilter.REGEX, value="^a")),
        ("semver:^1.2", pipeline_pb2.TagFilter(type=pipeline_pb2.TagFilter.SEMVER, value="^1.2")),
        (
            "semver:>=1.0.0 <2.0.0",
            pipeline_pb2.TagFilter(type=pipeline_pb2.TagFilter.SEMVER, value=">=1.0.0 <2.0.0"),
        ),
    ],
)
def test_tag_filter(text: str, expected: pipeline_pb2.TagFilter) -> None:
    assert spec.tag_filter(text) == expected
    assert spec.tag_filter(spec.describe_tag_filter(expected)) == expected


@pytest.mark.parametrize("text", ["v1", "exact:", "regex:", "glob:v*", "any:x", "semver:", "semver: "])
def test_bad_tag_filter(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="invalid tag filter"):
        spec.tag_filter(text)


def test_enum_words_accept_case_and_underscores() -> None:
    kind = spec.enum_word("kind", spec.KINDS)
    origin = spec.enum_word("origin", spec.ORIGINS)
    assert kind("StatefulSet") == Target.STATEFULSET
    assert kind("ds") == Target.DAEMONSET
    assert origin("PLATFORM_BUILD") == pipeline_pb2.IMAGE_ORIGIN_PLATFORM_BUILD
    assert origin("image_origin_local_push") == pipeline_pb2.IMAGE_ORIGIN_LOCAL_PUSH
    with pytest.raises(argparse.ArgumentTypeError, match="unknown kind 'job'"):
        kind("job")


def test_durations() -> None:
    assert spec.duration("5m").seconds == 300
    assert (spec.duration("1500ms").seconds, spec.duration("1500ms").nanos) == (1, 500_000_000)
    with pytest.raises(argparse.ArgumentTypeError):
        spec.duration("soon")


def test_image_repository() -> None:
    assert spec.image_repository("registry.example.com:5000/team/app") == ("registry.example.com:5000", "team/app")
    assert spec.image_repository("docker.io/nginx") == ("docker.io", "library/nginx")
    with pytest.raises(argparse.ArgumentTypeError, match="without a tag"):
        spec.image_repository("ghcr.io/team/app:v1")


# ---------------------------------------------------------------- flags -> pipeline, masks


def parse_update(*argv: str) -> argparse.Namespace:
    return ctl_main.build_parser().parse_args(["pipelines", "update", "web", *argv])


def test_flags_build_the_pipeline_and_the_mask_of_exactly_those_fields() -> None:
    args = parse_update(
        "--container", "app", "--kind", "sts", "--no-pin-digest", "--rollout-timeout", "90s", "--tag-filter", "any"
    )
    pipeline, paths = spec.pipeline_from_flags(args)
    assert paths == [
        "source.tag_filter",
        "target.workload_kind",
        "target.container",
        "options.pin_digest",
        "options.rollout_timeout",
    ]
    assert pipeline.target.container == "app" and pipeline.target.workload_kind == Target.STATEFULSET
    assert pipeline.options.rollout_timeout.seconds == 90
    assert pipeline.options.pin_digest is False


def test_exclusions_and_prereleases_go_into_the_tag_filter() -> None:
    args = parse_update("--tag-filter", "semver:~1.4.0", "--exclude", "*-rc*", "--exclude", "regex:v9.*")
    pipeline, paths = spec.pipeline_from_flags(args)
    assert paths == ["source.tag_filter"]
    assert pipeline.source.tag_filter == pipeline_pb2.TagFilter(
        type=pipeline_pb2.TagFilter.SEMVER, value="~1.4.0", exclusions=["*-rc*", "regex:v9.*"]
    )
    pipeline, _ = spec.pipeline_from_flags(parse_update("--tag-filter", "semver:^1", "--include-prereleases"))
    assert pipeline.source.tag_filter.include_prereleases is True
    assert spec.describe_tag_filter(pipeline.source.tag_filter) == "semver:^1 +prereleases"
    described = spec.describe_tag_filter(
        pipeline_pb2.TagFilter(type=pipeline_pb2.TagFilter.ANY, exclusions=["latest", "*-rc*"])
    )
    assert described == "any -latest -*-rc*"


@pytest.mark.parametrize("flags", [("--exclude", "latest"), ("--include-prereleases",)])
def test_tag_filter_parts_need_the_tag_filter(flags: tuple[str, ...]) -> None:
    with pytest.raises(spec.UsageError, match="need --tag-filter"):
        spec.pipeline_from_flags(parse_update(*flags))


def test_negated_boolean_flags_are_still_in_the_mask() -> None:
    _, paths = spec.pipeline_from_flags(parse_update("--no-disabled", "--no-verify-rollout"))
    assert paths == ["disabled", "options.verify_rollout"]


def test_image_flag_sets_registry_and_repository() -> None:
    pipeline, paths = spec.pipeline_from_flags(parse_update("--image", "ghcr.io/team/app"))
    assert (pipeline.source.registry, pipeline.source.repository) == ("ghcr.io", "team/app")
    assert paths == ["source.registry", "source.repository"]
    with pytest.raises(spec.UsageError, match="cannot be combined"):
        spec.pipeline_from_flags(parse_update("--image", "ghcr.io/team/app", "--registry", "x.io"))


def test_no_flags_no_paths() -> None:
    assert spec.pipeline_from_flags(parse_update()) == (pipeline_pb2.Pipeline(), [])


def test_file_paths_skip_output_only_fields_and_keep_atomic_messages(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(
        "name: pipelines/web\n"
        "etag: abc\n"
        "createTime: '2025-01-01T00:00:00Z'\n"
        "source:\n  tagFilter: {type: REGEX, value: '^v'}\n"
        "target: {container: app, workload_kind: DEPLOYMENT}\n"
        "options: {rolloutTimeout: 5m, verifyRollout: false}\n"
    )
    pipeline, paths = spec.load_pipeline_file(str(path))
    assert paths == [
        "source.tag_filter",
        "target.container",
        "target.workload_kind",
        "options.rollout_timeout",
        "options.verify_rollout",
    ]
    assert pipeline.etag == "abc" and pipeline.name == "pipelines/web"
    assert pipeline.options.rollout_timeout.seconds == 300
    assert pipeline.options.HasField("verify_rollout") and not pipeline.options.verify_rollout


def test_file_errors_are_usage_errors(tmp_path: pathlib.Path) -> None:
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("target: {clusterr: x}\n")
    not_a_mapping = tmp_path / "list.yaml"
    not_a_mapping.write_text("- a\n")
    broken = tmp_path / "broken.yaml"
    broken.write_text("a: [\n")
    with pytest.raises(spec.UsageError, match="clusterr"):
        spec.load_pipeline_file(str(unknown))
    with pytest.raises(spec.UsageError, match="expected a mapping"):
        spec.load_pipeline_file(str(not_a_mapping))
    with pytest.raises(spec.UsageError, match="not valid YAML or JSON"):
        spec.load_pipeline_file(str(broken))


def test_stdin_and_request_shaped_files() -> None:
    pipeline, paths = spec.load_pipeline_file("-", '{"pipeline": {"displayName": "x"}}')
    assert pipeline.display_name == "x" and paths == ["display_name"]


def test_merge_paths_dedupes_and_parents_cover_children() -> None:
    assert spec.merge_paths(["target.container", "source"], ["target.container", "source.registry", "disabled"]) == [
        "target.container",
        "source",
        "disabled",
    ]


def test_copy_paths_copies_only_named_fields_and_clears_absent_optionals() -> None:
    target = pipeline_pb2.Pipeline(display_name="keep", description="old")
    target.options.verify_rollout = True
    source = pipeline_pb2.Pipeline(description="new", display_name="ignored")
    spec.copy_paths(source, target, ["description", "options.verify_rollout"])
    assert target.description == "new" and target.display_name == "keep"
    assert not target.options.HasField("verify_rollout")


# ---------------------------------------------------------------- errors and addresses


class FakeRpcError(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode, details: str, status: status_pb2.Status | None = None) -> None:
        self._code, self._details, self._status = code, details, status

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details

    def trailing_metadata(self) -> tuple[tuple[str, bytes], ...]:
        if self._status is None:
            return ()
        return (("grpc-status-details-bin", self._status.SerializeToString()),)


def test_format_call_error_with_field_violations() -> None:
    bad_request = error_details_pb2.BadRequest(
        field_violations=[
            error_details_pb2.BadRequest.FieldViolation(field="pipeline.source.registry", description="is required")
        ]
    )
    packed = any_pb2.Any()
    packed.Pack(bad_request)
    status = status_pb2.Status(
        code=3, message="invalid request: pipeline.source.registry: is required", details=[packed]
    )
    error = CallError(CONFIG, "h:1", FakeRpcError(grpc.StatusCode.INVALID_ARGUMENT, status.message, status))
    # The message repeats the violation: it is printed once, on its own line.
    assert Failure.from_call(error).text() == (
        "error: INVALID_ARGUMENT: invalid request: 1 field violation\n  pipeline.source.registry: is required"
    )
    assert exit_code_for(error.code) == 1


def test_format_call_error_keeps_one_line_and_names_unreachable_services() -> None:
    error = CallError(DEPLOYER, "10.0.0.1:50053", FakeRpcError(grpc.StatusCode.UNAVAILABLE, "connect failed\nretry"))
    assert Failure.from_call(error).text() == (
        "error: UNAVAILABLE: cannot reach the deployer service at 10.0.0.1:50053 "
        "(set --deployer-addr or CONVEYOR_DEPLOYER_ADDR): connect failed retry"
    )


def test_an_unavailable_status_sent_by_the_service_is_not_reported_as_unreachable() -> None:
    status = status_pb2.Status(code=14, message="registry r.example.com cannot be used right now")
    error = CallError(CONFIG, "h:1", FakeRpcError(grpc.StatusCode.UNAVAILABLE, status.message, status))
    assert error.answered
    assert Failure.from_call(error).text() == "error: UNAVAILABLE: registry r.example.com cannot be used right now"
    assert exit_code_for(error.code) == 4


@pytest.mark.parametrize(
    ("code", "exit_code"),
    [
        (grpc.StatusCode.NOT_FOUND, 3),
        (grpc.StatusCode.UNAVAILABLE, 4),
        (grpc.StatusCode.DEADLINE_EXCEEDED, 4),
        (grpc.StatusCode.ABORTED, 5),
        (grpc.StatusCode.ALREADY_EXISTS, 5),
        (grpc.StatusCode.FAILED_PRECONDITION, 1),
        (grpc.StatusCode.INTERNAL, 1),
    ],
)
def test_exit_codes(code: grpc.StatusCode, exit_code: int) -> None:
    assert exit_code_for(code) == exit_code


def test_addresses_flag_then_env_then_default() -> None:
    assert resolve_address(CONFIG, "a:1", {"CONVEYOR_CONFIG_ADDR": "b:2"}) == "a:1"
    assert resolve_address(CONFIG, None, {"CONVEYOR_CONFIG_ADDR": "b:2"}) == "b:2"
    assert resolve_address(CONFIG, None, {"CONVEYOR_CONFIG_ADDR": " "}) == "127.0.0.1:50051"


def test_common_options_work_before_and_after_the_command() -> None:
    parser = ctl_main.build_parser()
    before = parser.parse_args(["-o", "json", "--config-addr", "x:1", "runs", "list"])
    after = parser.parse_args(["runs", "list", "-o", "yaml", "--config-addr", "y:2"])
    neither = parser.parse_args(["runs", "list"])
    assert (before.output, before.config_addr) == ("json", "x:1")
    assert (after.output, after.config_addr) == ("yaml", "y:2")
    assert (neither.output, neither.config_addr) == (None, None)


def test_bad_timeout_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert ctl_main.run(["--timeout", "soon", "targets", "clusters"], environ={}) == 2
    assert capsys.readouterr().err == "error: --timeout 'soon': expected a duration such as 10s or 1m\n"
