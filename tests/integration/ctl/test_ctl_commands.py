"""conveyorctl as a real process (its console script) against in-process fake services."""

from __future__ import annotations

import asyncio
import json
import pathlib

import yaml

from conveyor.errors import Unavailable
from conveyor.v1 import event_service_pb2, pipeline_pb2, run_pb2
from tests.integration.ctl.ctl_fakes import FakeConveyor, sample_event
from tests.integration.ctl.ctl_process import (
    CREATE_FLAGS,
    add_run,
    assert_one_line_error,
    create_web,
    ctl,
    ctl_env,
)
from tests.support.procs import console_script

Target = pipeline_pb2.Target
Decision = event_service_pb2.MatchDecision


# ---------------------------------------------------------------- pipelines


async def test_create_from_flags_sends_the_pipeline_and_prints_its_name(fakes: FakeConveyor) -> None:
    result = await create_web(fakes, "--pin-digest", "--rollback-on-failure", "--rollout-timeout", "5m")

    assert result.stdout.strip() == "pipelines/web created"
    (request,) = fakes.state.sent("CreatePipeline")
    assert request.pipeline_id == "web"
    assert request.request_id  # an idempotency key is always sent
    sent = request.pipeline
    assert sent.display_name == "web"  # defaults to the id
    assert (sent.source.registry, sent.source.repository) == ("registry.example.com", "team/web")
    assert sent.source.tag_filter == pipeline_pb2.TagFilter(type=pipeline_pb2.TagFilter.REGEX, value=r"^v\d+")
    assert sent.target == Target(
        platform=Target.KUBERNETES,
        region="local",
        cluster="sandbox",
        namespace="demo",
        workload_kind=Target.DEPLOYMENT,
        workload="web",
        container="app",
    )
    assert sent.options.pin_digest and sent.options.rollback_on_failure
    assert sent.options.rollout_timeout.seconds == 300
    assert not sent.options.HasField("verify_rollout")


async def test_create_from_a_yaml_file_with_flags_overriding(fakes: FakeConveyor, tmp_path: pathlib.Path) -> None:
    spec_file = tmp_path / "web.yaml"
    spec_file.write_text(
        yaml.safe_dump(
            {
                "name": "pipelines/web",
                "displayName": "Web shop",
                "source": {"registry": "registry.example.com", "repository": "team/web"},
                "target": {
                    "platform": "KUBERNETES",
                    "cluster": "sandbox",
                    "namespace": "demo",
                    "workloadKind": "DEPLOYMENT",
                    "workload": "web",
                    "container": "app",
                },
                "options": {"rolloutTimeout": "2m"},
            }
        )
    )
    result = await ctl(fakes, "pipelines", "create", "-f", str(spec_file), "--namespace", "prod", "-o", "json")

    assert result.code == 0, result.stderr
    created = json.loads(result.stdout)
    assert created["name"] == "pipelines/web"
    assert created["displayName"] == "Web shop"
    assert created["target"]["namespace"] == "prod"
    assert created["options"]["rolloutTimeout"] == "120s"
    # Stable shape: fields at their zero value are still present.
    assert created["disabled"] is False and created["options"]["pinDigest"] is False


async def test_create_from_stdin_json(fakes: FakeConveyor) -> None:
    body = {
        "displayName": "API",
        "source": {"registry": "ghcr.io", "repository": "team/api", "tagFilter": {"type": "EXACT", "value": "prod"}},
        "target": {
            "cluster": "sandbox",
            "namespace": "demo",
            "workloadKind": "STATEFULSET",
            "workload": "db",
            "container": "db",
        },
    }
    result = await ctl(fakes, "pipelines", "create", "api", "-f", "-", "-o", "name", stdin=json.dumps(body))

    assert result.code == 0, result.stderr
    assert result.stdout == "pipelines/api\n"
    stored = fakes.state.pipelines["pipelines/api"]
    assert stored.source.tag_filter.value == "prod"
    # The file names no platform or region: the cluster's, as the deployer declares them.
    assert (stored.target.platform, stored.target.region) == (Target.KUBERNETES, "local")


async def test_invalid_request_prints_one_line_and_the_field_violations(fakes: FakeConveyor) -> None:
    result = await ctl(fakes, "pipelines", "create", "broken", "--registry", "r.example.com")

    assert_one_line_error(result, 1, "error: INVALID_ARGUMENT: invalid request: ")
    lines = result.stderr.splitlines()
    assert "  pipeline.source.repository: is required" in lines
    assert "  pipeline.target.workload_kind: is required" in lines


async def test_not_found_is_one_line_with_exit_code_3(fakes: FakeConveyor) -> None:
    result = await ctl(fakes, "pipelines", "get", "x")

    assert_one_line_error(result, 3, 'error: NOT_FOUND: pipeline "pipelines/x" not found')
    assert result.stderr.count("\n") == 1


async def test_already_exists_is_a_conflict(fakes: FakeConveyor) -> None:
    await create_web(fakes)
    result = await ctl(fakes, "pipelines", "create", "web", *CREATE_FLAGS)

    assert_one_line_error(result, 5, 'error: ALREADY_EXISTS: pipeline "pipelines/web" already exists')


async def test_unreachable_service_names_it_and_exits_4(fakes: FakeConveyor) -> None:
    env = ctl_env(fakes, CONVEYOR_DEPLOYER_ADDR="127.0.0.1:1")
    result = await ctl(fakes, "targets", "clusters", env=env)

    assert_one_line_error(
        result, 4, "error: UNAVAILABLE: cannot reach the deployer service at 127.0.0.1:1 (set --deployer-addr"
    )


async def test_usage_errors_exit_2_without_calling_anything(fakes: FakeConveyor) -> None:
    bad_filter = await ctl(fakes, "pipelines", "create", "web", "--tag-filter", "v1")
    bad_name = await ctl(fakes, "pipelines", "get", "Not_A_Name")
    missing_file = await ctl(fakes, "pipelines", "create", "-f", "/nonexistent.yaml")

    assert_one_line_error(bad_filter, 2, "error: argument --tag-filter: invalid tag filter 'v1'")
    assert_one_line_error(bad_name, 2, "error: 'Not_A_Name' is not a pipeline name")
    assert_one_line_error(missing_file, 2, "error: cannot read /nonexistent.yaml")
    assert fakes.state.requests == []


async def test_list_and_get_in_every_format(fakes: FakeConveyor) -> None:
    await create_web(fakes)
    await ctl(fakes, "pipelines", "create", "api", *CREATE_FLAGS, "--repository", "team/api", "--disabled")

    table = await ctl(fakes, "pipelines", "list")
    as_json = await ctl(fakes, "pipelines", "list", "-o", "json")
    as_yaml = await ctl(fakes, "-o", "yaml", "pipelines", "list")
    names = await ctl(fakes, "pipelines", "list", "-o", "name")
    detail = await ctl(fakes, "pipelines", "get", "pipelines/web")

    header, *rows = table.stdout.splitlines()
    assert header.split() == ["NAME", "SOURCE", "TAGS", "TARGET", "CONTAINER", "STATE", "UPDATED"]
    assert rows[0].split()[:6] == [
        "api",
        "registry.example.com/team/api",
        r"regex:^v\d+",
        "sandbox/demo/deployment/web",
        "app",
        "DISABLED",
    ]
    assert rows[1].split()[0] == "web" and "ENABLED" in rows[1] and rows[1].endswith("just now")
    assert header.index("SOURCE") == rows[0].index("registry.example.com")  # aligned columns
    assert "\x1b[" not in table.stdout  # not a terminal: no colour
    assert [p["name"] for p in json.loads(as_json.stdout)["pipelines"]] == ["pipelines/api", "pipelines/web"]
    assert yaml.safe_load(as_yaml.stdout) == json.loads(as_json.stdout)
    assert names.stdout.split() == ["pipelines/api", "pipelines/web"]
    assert "Tag filter:" in detail.stdout and r"regex:^v\d+" in detail.stdout
    assert "Workload:" in detail.stdout and "deployment/web" in detail.stdout


async def test_list_pages_through_and_builds_filters(fakes: FakeConveyor) -> None:
    for index in range(5):
        await ctl(fakes, "pipelines", "create", f"p{index}", *CREATE_FLAGS, "--namespace", f"ns{index % 2}")

    limited = await ctl(fakes, "pipelines", "list", "--limit", "3", "-o", "json")
    filtered = await ctl(fakes, "pipelines", "list", "--namespace", "ns1", "-o", "name")
    rest = await ctl(fakes, "pipelines", "list", "--limit", "0", "-o", "name")

    page = json.loads(limited.stdout)
    assert len(page["pipelines"]) == 3 and page["nextPageToken"]
    assert filtered.stdout.split() == ["pipelines/p1", "pipelines/p3"]
    assert fakes.state.sent("ListPipelines")[-2].filter == 'target.namespace = "ns1"'
    assert len(rest.stdout.split()) == 5


async def test_update_sends_exactly_the_given_fields_with_the_current_etag(fakes: FakeConveyor) -> None:
    await create_web(fakes)
    etag = fakes.state.pipelines["pipelines/web"].etag

    result = await ctl(
        fakes, "pipelines", "update", "web", "--tag-filter", "exact:stable", "--no-verify-rollout", "--description", "d"
    )

    assert result.code == 0, result.stderr
    (request,) = fakes.state.sent("UpdatePipeline")
    assert list(request.update_mask.paths) == ["description", "source.tag_filter", "options.verify_rollout"]
    assert request.pipeline.etag == etag  # read-modify-write
    stored = fakes.state.pipelines["pipelines/web"]
    assert stored.source.tag_filter.value == "stable" and stored.options.HasField("verify_rollout")
    assert stored.target.workload == "web"  # untouched


async def test_update_with_a_stale_etag_is_a_conflict(fakes: FakeConveyor) -> None:
    await create_web(fakes)

    result = await ctl(fakes, "pipelines", "update", "web", "--etag", "stale", "--disabled")

    assert_one_line_error(result, 5, 'error: ABORTED: pipeline "pipelines/web" was changed since etag stale')
    assert fakes.state.pipelines["pipelines/web"].disabled is False


async def test_update_from_an_edited_get_output(fakes: FakeConveyor, tmp_path: pathlib.Path) -> None:
    await create_web(fakes)
    got = await ctl(fakes, "pipelines", "get", "web", "-o", "yaml")
    document = yaml.safe_load(got.stdout)
    edited = tmp_path / "web.yaml"
    edited.write_text(yaml.safe_dump({"etag": document["etag"], "target": {"container": "main"}}))

    result = await ctl(fakes, "pipelines", "update", "web", "-f", str(edited), "-o", "json")

    assert result.code == 0, result.stderr
    (request,) = fakes.state.sent("UpdatePipeline")
    assert list(request.update_mask.paths) == ["target.container"]
    assert request.pipeline.etag == document["etag"]
    assert json.loads(result.stdout)["target"]["container"] == "main"


async def test_update_without_fields_is_a_usage_error(fakes: FakeConveyor) -> None:
    await create_web(fakes)
    result = await ctl(fakes, "pipelines", "update", "web")
    assert_one_line_error(result, 2, "error: nothing to update")


async def test_delete_with_and_without_etag(fakes: FakeConveyor) -> None:
    await create_web(fakes)

    stale = await ctl(fakes, "pipelines", "delete", "web", "--etag", "nope", "--yes")
    deleted = await ctl(fakes, "pipelines", "delete", "pipelines/web", "--yes")
    again = await ctl(fakes, "pipelines", "delete", "web", "--yes")

    assert_one_line_error(stale, 5, "error: ABORTED")
    assert deleted.code == 0 and deleted.stdout.strip() == "pipelines/web deleted"
    assert_one_line_error(again, 3, 'error: NOT_FOUND: pipeline "pipelines/web" not found')


async def test_start_prints_the_run_and_tags_lists_the_repository(fakes: FakeConveyor) -> None:
    await create_web(fakes)
    fakes.state.tags["pipelines/web"] = [
        event_service_pb2.ImageTag(tag="v2", digest="sha256:" + "1" * 64),
        event_service_pb2.ImageTag(tag="v1", digest="sha256:" + "2" * 64),
    ]

    started = await ctl(fakes, "pipelines", "start", "web", "--tag", "v2", "--digest", "sha256:" + "1" * 64)
    as_json = await ctl(fakes, "pipelines", "start", "web", "--tag", "v1", "-o", "json")
    tags = await ctl(fakes, "pipelines", "tags", "web", "--digests")
    plain_tags = await ctl(fakes, "pipelines", "tags", "web", "-o", "json")

    assert started.code == 0, started.stderr
    assert started.stdout.startswith("pipelines/web/runs/") and "QUEUED" in started.stdout
    assert "runs logs -f pipelines/web/runs/" in started.stderr
    first, second = fakes.state.sent("StartPipeline")
    assert (first.tag, first.digest) == ("v2", "sha256:" + "1" * 64)
    assert first.request_id and first.request_id != second.request_id
    assert json.loads(as_json.stdout)["state"] == "QUEUED"
    assert tags.stdout.split() == ["TAG", "DIGEST", "v2", "sha256:" + "1" * 64, "v1", "sha256:" + "2" * 64]
    assert fakes.state.sent("ListTags")[0].include_digests is True
    assert [t["tag"] for t in json.loads(plain_tags.stdout)["tags"]] == ["v2", "v1"]


async def test_a_service_reporting_its_own_dependency_down_is_not_called_unreachable(fakes: FakeConveyor) -> None:
    await create_web(fakes)
    fakes.state.tags_error = Unavailable("registry registry.example.com cannot be used right now: connection refused")

    result = await ctl(fakes, "pipelines", "tags", "web")

    assert_one_line_error(
        result, 4, "error: UNAVAILABLE: registry registry.example.com cannot be used right now: connection refused"
    )
    assert "cannot reach the trigger" not in result.stderr


# ---------------------------------------------------------------- runs


async def test_runs_list_get_delete(fakes: FakeConveyor) -> None:
    await create_web(fakes)
    failed = add_run(fakes, "01aaaaaaaaaaaaaaaaaaaaaaaa", run_pb2.Run.FAILED)
    running = add_run(fakes, "01bbbbbbbbbbbbbbbbbbbbbbbb", run_pb2.Run.RUNNING, tag="v2")

    table = await ctl(fakes, "runs", "list")
    only_failed = await ctl(fakes, "runs", "list", "web", "--state", "failed", "-o", "name")
    both = await ctl(fakes, "runs", "list", "--state", "failed,running", "-o", "name")
    detail = await ctl(fakes, "runs", "get", "web/01aaaaaaaaaaaaaaaaaaaaaaaa")
    as_yaml = await ctl(fakes, "runs", "get", running, "-o", "yaml")
    refused = await ctl(fakes, "runs", "delete", running)
    deleted = await ctl(fakes, "runs", "delete", "web/runs/01aaaaaaaaaaaaaaaaaaaaaaaa")

    header, *rows = table.stdout.splitlines()
    assert header.split() == ["NAME", "STATE", "TRIGGER", "TAG", "CREATED", "DURATION"]
    assert [row.split()[:4] for row in rows] == [[running, "RUNNING", "PUSH", "v2"], [failed, "FAILED", "PUSH", "v1"]]
    assert fakes.state.sent("ListRuns")[0].parent == "pipelines/-"
    assert only_failed.stdout.split() == [failed]
    assert fakes.state.sent("ListRuns")[1].filter == "state = FAILED"
    assert both.stdout.split() == [running, failed]
    assert fakes.state.sent("ListRuns")[2].filter == "state = FAILED OR state = RUNNING"
    assert "Error:" in detail.stdout and "image cannot be pulled" in detail.stdout
    assert yaml.safe_load(as_yaml.stdout)["state"] == "RUNNING"
    assert_one_line_error(refused, 1, "error: FAILED_PRECONDITION: run")
    assert deleted.code == 0 and failed not in fakes.state.runs


async def test_logs_print_the_log_and_json_lines(fakes: FakeConveyor) -> None:
    await create_web(fakes)
    name = add_run(fakes, "01cccccccccccccccccccccccc", run_pb2.Run.SUCCEEDED)
    await fakes.state.append_log(name, "patch", "set app to registry.example.com/team/web:v1")

    text = await ctl(fakes, "runs", "logs", name)
    as_json = await ctl(fakes, "runs", "logs", name, "-o", "json")

    lines = text.stdout.splitlines()
    assert len(lines) == 2
    assert lines[1].split()[2:4] == ["INFO", "patch"] and lines[1].endswith("web:v1")
    assert [json.loads(line)["step"] for line in as_json.stdout.splitlines()] == ["resolve-target", "patch"]


async def test_logs_follow_streams_entries_as_they_arrive_until_the_run_ends(fakes: FakeConveyor) -> None:
    await create_web(fakes)
    name = add_run(fakes, "01dddddddddddddddddddddddd", run_pb2.Run.RUNNING)
    process = await asyncio.create_subprocess_exec(
        console_script("conveyorctl"),
        "runs",
        "logs",
        "-f",
        name,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=ctl_env(fakes),
    )
    assert process.stdout is not None and process.stderr is not None
    try:
        first = await asyncio.wait_for(process.stdout.readline(), 30)
        assert b"resolve-target" in first

        await fakes.state.append_log(name, "rollout", "1 of 2 replicas updated")
        second = await asyncio.wait_for(process.stdout.readline(), 30)
        assert b"1 of 2 replicas updated" in second
        assert process.returncode is None  # still following: the run has not ended

        await fakes.state.append_log(name, "result", "rollout complete", state=run_pb2.Run.SUCCEEDED)
        third = await asyncio.wait_for(process.stdout.readline(), 30)
        assert b"rollout complete" in third
        code = await asyncio.wait_for(process.wait(), 30)
        stderr = (await process.stderr.read()).decode()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert code == 0
    assert stderr.strip() == f"{name} SUCCEEDED"


async def test_start_follow_exits_6_when_the_run_fails(fakes: FakeConveyor) -> None:
    await create_web(fakes)

    async def fail_the_run() -> None:
        async with fakes.state.changed:
            await fakes.state.changed.wait_for(lambda: bool(fakes.state.runs))
        (name,) = fakes.state.runs
        await asyncio.sleep(0.3)
        fakes.state.runs[name].error = "the cluster cannot pull the image"
        await fakes.state.append_log(name, "rollout", "ErrImagePull", state=run_pb2.Run.FAILED)

    failing = asyncio.create_task(fail_the_run())
    result = await ctl(fakes, "pipelines", "start", "web", "--tag", "v9", "--follow")
    await failing

    assert result.code == 6, result.stderr
    assert "started by hand" in result.stdout and "ErrImagePull" in result.stdout
    assert "FAILED: the cluster cannot pull the image" in result.stderr


# ---------------------------------------------------------------- events and targets


async def test_events_list_shows_each_decision(fakes: FakeConveyor) -> None:
    fakes.state.events = [
        sample_event(
            "registry.example.com",
            "team/web",
            "dev-1",
            [
                Decision(
                    pipeline="pipelines/web",
                    outcome=Decision.TAG_MISMATCH,
                    reason=r'tag "dev-1" does not match regex ^v\d+$',
                )
            ],
        ),
        sample_event(
            "registry.example.com",
            "team/web",
            "v3",
            [
                Decision(
                    pipeline="pipelines/web",
                    outcome=Decision.MATCHED,
                    run="pipelines/web/runs/01eeeeeeeeeeeeeeeeeeeeeeee",
                ),
                Decision(pipeline="pipelines/api", outcome=Decision.PIPELINE_DISABLED, reason="pipeline is disabled"),
            ],
        ),
        sample_event(
            "other.example.com",
            "x/y",
            "latest",
            [Decision(outcome=Decision.NO_PIPELINE, reason="no pipeline watches other.example.com/x/y")],
        ),
    ]

    table = await ctl(fakes, "events", "list")
    filtered = await ctl(fakes, "events", "list", "--repository", "team/web", "-o", "json")

    header, *rows = table.stdout.splitlines()
    assert header.split() == ["RECEIVED", "IMAGE", "DIGEST", "PIPELINE", "OUTCOME", "DETAIL"]
    assert len(rows) == 4
    assert "3m ago" in rows[0] and "registry.example.com/team/web:dev-1" in rows[0]
    assert "TAG_MISMATCH" in rows[0] and 'tag "dev-1" does not match regex' in rows[0]
    assert "MATCHED" in rows[1] and "pipelines/web/runs/01eeeeeeeeeeeeeeeeeeeeeeee" in rows[1]
    assert rows[2].lstrip().startswith("api") and "PIPELINE_DISABLED" in rows[2]  # same event, no repeat
    assert "NO_PIPELINE" in rows[3] and rows[3].split()[4] == "-"
    decoded = json.loads(filtered.stdout)
    assert len(decoded["events"]) == 2 and decoded["events"][0]["decisions"][0]["outcome"] == "TAG_MISMATCH"
    assert fakes.state.sent("ListEvents")[1].repository == "team/web"


async def test_events_list_filters_by_tag_and_decision(fakes: FakeConveyor) -> None:
    both = await ctl(fakes, "events", "list", "--tag", "v1", "--decision", "tag_mismatch")
    neither = await ctl(fakes, "events", "list")
    bad = await ctl(fakes, "events", "list", "--decision", "maybe")

    assert both.code == 0 and neither.code == 0, (both.stderr, neither.stderr)
    sent, unfiltered = fakes.state.sent("ListEvents")
    assert (sent.tag, sent.decision) == ("v1", Decision.TAG_MISMATCH)
    assert (unfiltered.tag, unfiltered.decision) == ("", Decision.OUTCOME_UNSPECIFIED)
    assert bad.code == 2 and "unknown decision 'maybe'" in bad.stderr and "tag-mismatch" in bad.stderr
    assert len(fakes.state.sent("ListEvents")) == 2


async def test_start_allow_unverified_is_sent_only_when_asked(fakes: FakeConveyor) -> None:
    await create_web(fakes)

    default = await ctl(fakes, "pipelines", "start", "web", "--tag", "v1")
    allowed = await ctl(fakes, "pipelines", "start", "web", "--tag", "v1", "--allow-unverified")

    assert default.code == 0 and allowed.code == 0, (default.stderr, allowed.stderr)
    assert [r.allow_unverified for r in fakes.state.sent("StartPipeline")] == [False, True]


async def test_targets_commands(fakes: FakeConveyor) -> None:
    clusters = await ctl(fakes, "targets", "clusters")
    namespaces = await ctl(fakes, "targets", "namespaces", "-o", "json")
    workloads = await ctl(fakes, "targets", "workloads", "--cluster", "sandbox", "-n", "demo")
    only_sts = await ctl(fakes, "targets", "workloads", "-n", "demo", "--kind", "sts", "-o", "name")
    containers = await ctl(fakes, "targets", "containers", "web", "-n", "demo")
    missing = await ctl(fakes, "targets", "containers", "nope", "-n", "demo", "--kind", "daemonset")

    assert clusters.stdout.splitlines()[1].split() == ["sandbox", "KUBERNETES", "local", "SANDBOX"]
    assert json.loads(namespaces.stdout) == {"namespaces": ["demo"]}
    assert fakes.state.sent("ListNamespaces")[0].cluster == "sandbox"  # the only cluster, by default
    assert [row.split()[:2] for row in workloads.stdout.splitlines()[1:]] == [
        ["deployment", "web"],
        ["statefulset", "db"],
    ]
    assert only_sts.stdout.split() == ["statefulset/db"]
    assert containers.stdout.splitlines()[1:] == [
        "app         container   registry.example.com/team/web:v1",
        "sidecar     container   envoy:1.30",
        "migrate     init        registry.example.com/team/mig:v1",
    ]
    assert_one_line_error(missing, 3, 'error: NOT_FOUND: daemonset "demo/nope" not found in cluster "sandbox"')
