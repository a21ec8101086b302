"""conveyorctl habits a kubectl user expects, as a real process against the fake services.

-n everywhere, platform/region from the cluster, follow exit codes, errors as objects under
-o json|yaml, and a confirmed `pipelines delete`.
"""

from __future__ import annotations

import asyncio
import json
import os
import pathlib

import yaml

from conveyor.v1 import pipeline_pb2, run_pb2, target_service_pb2
from tests.integration.ctl.ctl_fakes import FakeConveyor
from tests.integration.ctl.ctl_process import (
    CREATE_FLAGS,
    Result,
    add_run,
    assert_one_line_error,
    create_web,
    ctl,
    ctl_env,
)
from tests.support.procs import console_script

Target = pipeline_pb2.Target
Run = run_pb2.Run


def without(flags: list[str], *names: str) -> list[str]:
    """CREATE_FLAGS minus the given flags and their values."""
    out: list[str] = []
    skip = False
    for word in flags:
        if skip:
            skip = False
        elif word in names:
            skip = True
        else:
            out.append(word)
    return out


# ---------------------------------------------------------------- -n


async def test_n_is_the_namespace_for_pipelines_too(fakes: FakeConveyor) -> None:
    created = await ctl(fakes, "pipelines", "create", "web", *without(CREATE_FLAGS, "--namespace"), "-n", "shop")
    updated = await ctl(fakes, "pipelines", "update", "web", "-n", "shop2")
    listed = await ctl(fakes, "pipelines", "list", "-n", "shop2", "-o", "name")

    assert created.code == 0, created.stderr
    assert fakes.state.sent("CreatePipeline")[0].pipeline.target.namespace == "shop"
    assert updated.code == 0, updated.stderr
    assert list(fakes.state.sent("UpdatePipeline")[0].update_mask.paths) == ["target.namespace"]
    assert listed.stdout.split() == ["pipelines/web"]
    assert fakes.state.sent("ListPipelines")[0].filter == 'target.namespace = "shop2"'


# ---------------------------------------------------------------- platform and region from the cluster


async def test_platform_and_region_default_to_the_clusters(fakes: FakeConveyor) -> None:
    result = await ctl(fakes, "pipelines", "create", "web", *without(CREATE_FLAGS, "--platform", "--region"))

    assert result.code == 0, result.stderr
    assert "warning" not in result.stderr
    sent = fakes.state.sent("CreatePipeline")[0].pipeline.target
    assert (sent.platform, sent.region) == (Target.KUBERNETES, "local")


async def test_a_platform_or_region_the_cluster_does_not_have_is_refused(fakes: FakeConveyor) -> None:
    flags = without(CREATE_FLAGS, "--platform", "--region")
    platform = await ctl(fakes, "pipelines", "create", "web", *flags, "--platform", "eks")
    region = await ctl(fakes, "pipelines", "create", "web", *flags, "--region", "eu-west-1", "--validate-only")

    assert_one_line_error(
        platform,
        2,
        "error: platform EKS does not match cluster 'sandbox', which the deployer declares KUBERNETES "
        "(leave --platform out to use it)",
    )
    assert_one_line_error(
        region,
        2,
        "error: region eu-west-1 does not match cluster 'sandbox', which the deployer declares local "
        "(leave --region out to use it)",
    )
    assert fakes.state.sent("CreatePipeline") == []


async def test_update_checks_against_the_current_cluster_and_defaults_from_a_new_one(fakes: FakeConveyor) -> None:
    await create_web(fakes)
    fakes.state.clusters.append(target_service_pb2.Cluster(name="prod", platform=Target.EKS, region="eu-west-1"))

    refused = await ctl(fakes, "pipelines", "update", "web", "--region", "eu-west-1")
    moved = await ctl(fakes, "pipelines", "update", "web", "--cluster", "prod")

    assert_one_line_error(refused, 2, "error: region eu-west-1 does not match cluster 'sandbox'")
    assert moved.code == 0, moved.stderr
    (request,) = fakes.state.sent("UpdatePipeline")
    assert list(request.update_mask.paths) == ["target.cluster", "target.platform", "target.region"]
    stored = fakes.state.pipelines["pipelines/web"].target
    assert (stored.cluster, stored.platform, stored.region) == ("prod", Target.EKS, "eu-west-1")


async def test_an_undeclared_cluster_or_an_unreachable_deployer_leaves_the_values_to_config(
    fakes: FakeConveyor,
) -> None:
    unknown = await ctl(fakes, "pipelines", "create", "a", *CREATE_FLAGS, "--cluster", "elsewhere", "--platform", "eks")
    env = ctl_env(fakes, CONVEYOR_DEPLOYER_ADDR="127.0.0.1:1")
    unchecked = await ctl(fakes, "pipelines", "create", "b", *CREATE_FLAGS, "--platform", "eks", env=env)

    assert unknown.code == 0, unknown.stderr
    assert fakes.state.pipelines["pipelines/a"].target.platform == Target.EKS
    assert unchecked.code == 0, unchecked.stderr
    assert unchecked.stderr.startswith(
        "warning: platform and region not checked against the deployer: "
        "cannot reach the deployer service at 127.0.0.1:1"
    )
    assert fakes.state.pipelines["pipelines/b"].target.platform == Target.EKS


# ---------------------------------------------------------------- runs logs -f


async def test_logs_follow_exits_6_unless_the_run_succeeded(fakes: FakeConveyor) -> None:
    await create_web(fakes)
    failed = add_run(fakes, "01aaaaaaaaaaaaaaaaaaaaaaaa", Run.FAILED)
    cancelled = add_run(fakes, "01bbbbbbbbbbbbbbbbbbbbbbbb", Run.CANCELLED)
    succeeded = add_run(fakes, "01cccccccccccccccccccccccc", Run.SUCCEEDED)

    followed_failed = await ctl(fakes, "runs", "logs", "-f", failed)
    followed_cancelled = await ctl(fakes, "runs", "logs", "--follow", cancelled, "-o", "json")
    followed_succeeded = await ctl(fakes, "runs", "logs", "-f", succeeded)
    printed_failed = await ctl(fakes, "runs", "logs", failed)

    assert followed_failed.code == 6, followed_failed.stderr
    assert "resolve-target" in followed_failed.stdout
    assert followed_failed.stderr.strip() == f"{failed} FAILED: image cannot be pulled"
    assert followed_cancelled.code == 6
    assert json.loads(followed_cancelled.stdout)["step"] == "resolve-target"
    assert followed_succeeded.code == 0
    assert printed_failed.code == 0  # without -f it only prints the log


# ---------------------------------------------------------------- errors as objects


async def test_errors_under_json_and_yaml_are_one_object_on_stderr(fakes: FakeConveyor) -> None:
    invalid = await ctl(fakes, "pipelines", "create", "broken", "--registry", "r.example.com", "-o", "json")
    missing = await ctl(fakes, "-o", "yaml", "pipelines", "get", "nope")
    env = ctl_env(fakes, CONVEYOR_CONFIG_ADDR="127.0.0.1:1")
    unreachable = await ctl(fakes, "runs", "list", "-o", "json", "--timeout", "5s", env=env)

    assert (invalid.code, invalid.stdout) == (1, "")
    error = json.loads(invalid.stderr)["error"]
    assert (error["code"], error["exitCode"]) == ("INVALID_ARGUMENT", 1)
    assert error["message"].startswith("invalid request: ") and error["message"].endswith(" field violations")
    (bad_request,) = [d for d in error["details"] if d["@type"].endswith("google.rpc.BadRequest")]
    fields = [v["field"] for v in bad_request["fieldViolations"]]
    assert "pipeline.source.repository" in fields and "pipeline.target.workload_kind" in fields
    assert invalid.stderr.count("pipeline.source.repository") == 1
    assert yaml.safe_load(missing.stderr)["error"] | {"details": None} == {
        "code": "NOT_FOUND",
        "message": 'pipeline "pipelines/nope" not found',
        "exitCode": 3,
        "details": None,
    }
    assert missing.code == 3 and missing.stdout == ""
    assert unreachable.code == 4
    assert json.loads(unreachable.stderr)["error"]["message"].startswith(
        "cannot reach the config service at 127.0.0.1:1"
    )


async def test_field_violations_are_printed_once(fakes: FakeConveyor) -> None:
    result = await ctl(fakes, "pipelines", "create", "broken", "--registry", "r.example.com")

    assert_one_line_error(result, 1, "error: INVALID_ARGUMENT: invalid request: ")
    first, *violations = result.stderr.splitlines()
    assert first == f"error: INVALID_ARGUMENT: invalid request: {len(violations)} field violations"
    assert "  pipeline.source.repository: is required" in violations
    assert result.stderr.count("pipeline.source.repository") == 1


# ---------------------------------------------------------------- pipelines delete


async def ctl_on_a_terminal(fakes: FakeConveyor, *args: str, answer: str) -> Result:
    """conveyorctl with a terminal on stdin: answers its prompt (read from stderr) with `answer`."""
    leader, follower = os.openpty()
    try:
        process = await asyncio.create_subprocess_exec(
            console_script("conveyorctl"),
            *args,
            stdin=follower,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=ctl_env(fakes),
        )
    finally:
        os.close(follower)
    assert process.stderr is not None
    try:
        prompt = await asyncio.wait_for(process.stderr.readuntil(b"[y/N] "), 30)
        os.write(leader, f"{answer}\n".encode())
        out, err = await asyncio.wait_for(process.communicate(), 30)
    finally:
        os.close(leader)
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode is not None
    return Result(process.returncode, out.decode(), (prompt + err).decode())


async def test_delete_without_a_terminal_needs_yes_and_says_what_goes(fakes: FakeConveyor) -> None:
    await create_web(fakes)
    runs = [add_run(fakes, f"01{c * 24}", Run.SUCCEEDED) for c in "ab"]

    refused = await ctl(fakes, "pipelines", "delete", "web")

    assert_one_line_error(
        refused,
        2,
        "error: not deleting pipelines/web and its 2 runs (their history and logs) without confirmation: "
        "stdin is not a terminal; add --yes",
    )
    assert fakes.state.sent("DeletePipeline") == []
    assert "pipelines/web" in fakes.state.pipelines and all(r in fakes.state.runs for r in runs)

    deleted = await ctl(fakes, "pipelines", "delete", "web", "--yes", "-o", "json")

    assert deleted.code == 0, deleted.stderr
    assert json.loads(deleted.stdout) == {"name": "pipelines/web", "deleted": True, "deletedRuns": 2}
    assert fakes.state.runs == {}


async def test_delete_on_a_terminal_asks_first(fakes: FakeConveyor) -> None:
    await create_web(fakes)
    add_run(fakes, "01aaaaaaaaaaaaaaaaaaaaaaaa", Run.FAILED)

    declined = await ctl_on_a_terminal(fakes, "pipelines", "delete", "web", answer="n")
    assert declined.stderr.startswith("Delete pipelines/web and its 1 run (their history and logs)? [y/N] ")
    assert declined.code == 2 and "error: pipelines/web not deleted" in declined.stderr
    assert "pipelines/web" in fakes.state.pipelines and fakes.state.sent("DeletePipeline") == []

    accepted = await ctl_on_a_terminal(fakes, "pipelines", "delete", "web", answer="y")
    assert accepted.code == 0, accepted.stderr
    assert accepted.stdout == "pipelines/web deleted with its 1 run\n"
    assert "pipelines/web" not in fakes.state.pipelines and fakes.state.runs == {}


async def test_delete_of_a_missing_pipeline_fails_before_asking(fakes: FakeConveyor) -> None:
    result = await ctl(fakes, "pipelines", "delete", "nope")

    assert_one_line_error(result, 3, 'error: NOT_FOUND: pipeline "pipelines/nope" not found')
    assert fakes.state.sent("ListRuns") == []


# ---------------------------------------------------------------- completion


async def test_completion_bash_from_the_installed_script_is_valid_bash(
    fakes: FakeConveyor, tmp_path: pathlib.Path
) -> None:
    result = await ctl(fakes, "completion", "bash")
    script = tmp_path / "conveyorctl.bash"
    script.write_text(result.stdout)

    checked = await asyncio.create_subprocess_exec("bash", "-n", str(script), stderr=asyncio.subprocess.PIPE)
    _, syntax_errors = await asyncio.wait_for(checked.communicate(), 30)

    assert result.code == 0 and checked.returncode == 0, syntax_errors
    assert (
        "'conveyorctl pipelines') printf '%s\\n' 'list' 'get' 'create' 'update' 'delete' 'start' 'tags'"
        in result.stdout
    )
    assert fakes.state.requests == []  # completion talks to no service
