"""The deploy use case against the sandbox API over HTTP, through the official Kubernetes client."""

from __future__ import annotations

import asyncio
import copy
import datetime as dt

import pytest

from conveyor.v1 import run_pb2
from tests.integration.deployer.conftest import Stack
from tests.support.kube import deploy_requested, image_of, patch_bodies
from tests.support.net import eventually

State = run_pb2.Run


async def wait_patched(stack: Stack) -> None:
    async def patched() -> None:
        assert patch_bodies(stack.sandbox, "Deployment", "demo", "web")

    await eventually(patched, 10)


def _without_change(obj: dict, container: str) -> dict:
    """The object minus what a deploy may change: the container's image, our annotations, bookkeeping."""
    result = copy.deepcopy(obj)
    result.pop("status", None)
    meta = result["metadata"]
    for field in ("resourceVersion", "generation"):
        meta.pop(field, None)
    annotations = meta.get("annotations", {})
    annotations.pop("kubernetes.io/change-cause", None)
    annotations.pop(f"deploy.conveyor.dev/{container}", None)
    spec = result["spec"]["template"]["spec"]
    for item in [*spec.get("containers", []), *spec.get("initContainers", [])]:
        if item["name"] == container:
            item["image"] = "<changed>"
    return result


@pytest.mark.parametrize(
    ("kind", "workload", "container"),
    [("Deployment", "web", "app"), ("StatefulSet", "db", "db"), ("DaemonSet", "agent", "agent")],
)
async def test_each_kind_is_patched_and_its_rollout_followed_to_success(
    stack: Stack, kind: str, workload: str, container: str
) -> None:
    before = stack.sandbox.get(kind, "demo", workload)
    assert before is not None
    image = f"registry.example.com/demo/{workload}:9.9.9"
    message = deploy_requested(kind=kind, workload=workload, container=container, image=image)

    result = await stack.deploy(message)

    assert result.state == State.SUCCEEDED, result.error
    assert result.previous_image == image_of(before, container)
    after = await stack.kube.get(kind, "demo", workload)
    assert image_of(after, container) == image
    assert after["status"]["observedGeneration"] == after["metadata"]["generation"] == 2
    assert len(patch_bodies(stack.sandbox, kind, "demo", workload)) == 1
    log = stack.sink.messages(message.run)
    assert any("successfully rolled out" in line or "roll out complete" in line for line in log), log
    terminal = stack.sink.terminal(message.run)
    assert [e.event_id for e in terminal] == [f"{message.run.rsplit('/', 1)[-1]}:deployer:result"]
    assert terminal[0].previous_image == image_of(before, container)


async def test_only_the_named_container_changes_in_a_two_container_workload(stack: Stack) -> None:
    before = await stack.kube.get("Deployment", "demo", "web")
    message = deploy_requested(container="app", image="registry.example.com/demo/web:2.0.0")

    result = await stack.deploy(message)

    assert result.state == State.SUCCEEDED, result.error
    after = await stack.kube.get("Deployment", "demo", "web")
    assert image_of(after, "app") == "registry.example.com/demo/web:2.0.0"
    assert image_of(after, "log-shipper") == image_of(before, "log-shipper")
    assert image_of(after, "migrate") == image_of(before, "migrate")
    # Everything else -- other containers' fields, labels, the user's annotations, the spec -- is untouched.
    assert _without_change(after, "app") == _without_change(before, "app")
    assert after["metadata"]["annotations"]["team"] == "demo"
    assert "registry.example.com/demo/web:2.0.0" in after["metadata"]["annotations"]["kubernetes.io/change-cause"]
    # The patch names only the container's image, pinned by test ops on index, name and image.
    [ops] = patch_bodies(stack.sandbox, "Deployment", "demo", "web")
    assert {"op": "test", "path": "/spec/template/spec/containers/0/name", "value": "app"} in ops
    assert {
        "op": "test",
        "path": "/spec/template/spec/containers/0/image",
        "value": "registry.example.com/demo/web:1.0.0",
    } in ops
    assert {op["path"] for op in ops if op["op"] != "test"} == {
        "/spec/template/spec/containers/0/image",
        "/metadata/annotations/kubernetes.io~1change-cause",
        "/metadata/annotations/deploy.conveyor.dev~1app",
    }


async def test_an_init_container_can_be_the_target(stack: Stack) -> None:
    before = await stack.kube.get("Deployment", "demo", "web")
    message = deploy_requested(container="migrate", image="registry.example.com/demo/web-migrate:2.0.0")

    result = await stack.deploy(message)

    assert result.state == State.SUCCEEDED, result.error
    after = await stack.kube.get("Deployment", "demo", "web")
    assert (
        after["spec"]["template"]["spec"]["initContainers"][0]["image"] == "registry.example.com/demo/web-migrate:2.0.0"
    )
    assert [c["image"] for c in after["spec"]["template"]["spec"]["containers"]] == [
        c["image"] for c in before["spec"]["template"]["spec"]["containers"]
    ]
    [ops] = patch_bodies(stack.sandbox, "Deployment", "demo", "web")
    assert {"op": "test", "path": "/spec/template/spec/initContainers/0/name", "value": "migrate"} in ops


async def test_an_image_already_running_is_not_patched_again(stack: Stack) -> None:
    message = deploy_requested(image="registry.example.com/demo/web:1.0.0")  # what the sample runs

    result = await stack.deploy(message)

    assert result.state == State.SUCCEEDED, result.error
    assert patch_bodies(stack.sandbox, "Deployment", "demo", "web") == []
    assert any("already up to date" in line for line in stack.sink.messages(message.run))


async def test_a_missing_workload_fails_the_run_with_a_clear_error(stack: Stack) -> None:
    result = await stack.deploy(deploy_requested(workload="nope"))

    assert result.state == State.FAILED
    assert "Deployment 'nope' not found in namespace demo of cluster sandbox" in result.error


async def test_a_missing_namespace_is_named_as_such(stack: Stack) -> None:
    result = await stack.deploy(deploy_requested(namespace="elsewhere"))

    assert result.state == State.FAILED
    assert "namespace 'elsewhere' not found in cluster sandbox" in result.error


async def test_a_missing_container_fails_and_lists_the_containers(stack: Stack) -> None:
    result = await stack.deploy(deploy_requested(container="api"))

    assert result.state == State.FAILED
    assert "container 'api' not found in Deployment demo/web" in result.error
    assert "app, log-shipper" in result.error and "migrate" in result.error
    assert patch_bodies(stack.sandbox, "Deployment", "demo", "web") == []


async def test_an_unknown_cluster_fails_and_names_the_configured_ones(stack: Stack) -> None:
    result = await stack.deploy(deploy_requested(cluster="prod"))

    assert result.state == State.FAILED
    assert "cluster 'prod' is not configured" in result.error and "sandbox" in result.error


async def test_rollout_status_written_by_the_test_completes_the_run(stack: Stack) -> None:
    stack.sandbox.auto_rollout = False
    message = deploy_requested(image="registry.example.com/demo/web:3.0.0")
    run = asyncio.create_task(stack.deploy(message))

    await wait_patched(stack)
    await asyncio.sleep(0.2)
    assert not run.done()  # still waiting: nobody reported the rollout
    workload = await stack.kube.get("Deployment", "demo", "web")
    await stack.kube.set_status(
        "Deployment",
        "demo",
        "web",
        {
            "observedGeneration": workload["metadata"]["generation"],
            "replicas": 3,
            "updatedReplicas": 2,
            "readyReplicas": 3,
            "availableReplicas": 3,
        },
    )
    await asyncio.sleep(0.2)
    assert not run.done()  # one old replica still pending termination
    await stack.kube.complete_rollout("Deployment", "demo", "web")
    result = await asyncio.wait_for(run, 10)

    assert result.state == State.SUCCEEDED, result.error
    log = stack.sink.messages(message.run)
    assert "rollout: Waiting for deployment 'web' rollout to finish: 1 old replicas are pending termination..." in log
    assert "rollout: deployment 'web' successfully rolled out" in log


async def test_a_rollout_that_never_completes_fails_at_its_timeout(stack: Stack) -> None:
    stack.sandbox.auto_rollout = False
    message = deploy_requested(image="registry.example.com/demo/web:4.0.0", rollout_timeout=1.0)

    result = await stack.deploy(message)

    assert result.state == State.FAILED
    assert result.error.startswith("the rollout did not complete within 1s (rollout_timeout)")
    assert "Waiting for deployment spec update to be observed" in result.error
    # No rollback was asked for: the new image stays.
    assert image_of(await stack.kube.get("Deployment", "demo", "web"), "app") == "registry.example.com/demo/web:4.0.0"


async def test_an_image_pull_failure_fails_the_run_and_rolls_back(stack: Stack) -> None:
    stack.sandbox.auto_rollout = False
    message = deploy_requested(image="registry.example.com/demo/web:5.0.0", rollback_on_failure=True)
    run = asyncio.create_task(stack.deploy(message))

    await wait_patched(stack)
    workload = await stack.kube.get("Deployment", "demo", "web")
    await stack.kube.create_failing_pod(
        "demo",
        "web-new-1",
        workload,
        reason="ImagePullBackOff",
        message='Back-off pulling image "registry.example.com/demo/web:5.0.0"',
    )
    result = await asyncio.wait_for(run, 10)

    assert result.state == State.FAILED
    assert result.error.startswith(
        "the cluster cannot pull registry.example.com/demo/web:5.0.0: check that cluster sandbox can reach registry "
        "registry.example.com and that its pull secret / registry credentials are configured"
    )
    assert "rolled back container 'app' to registry.example.com/demo/web:1.0.0" in result.error
    assert result.previous_image == "registry.example.com/demo/web:1.0.0"
    after = await stack.kube.get("Deployment", "demo", "web")
    assert image_of(after, "app") == "registry.example.com/demo/web:1.0.0"
    bodies = patch_bodies(stack.sandbox, "Deployment", "demo", "web")
    assert [op["value"] for ops in bodies for op in ops if op["op"] == "replace"] == [
        "registry.example.com/demo/web:5.0.0",
        "registry.example.com/demo/web:1.0.0",
    ]
    log = stack.sink.messages(message.run)
    assert any(line.startswith("rollback: rolled back container 'app'") for line in log), log


async def test_crash_looping_new_pods_fail_with_the_last_termination_reason(stack: Stack) -> None:
    stack.sandbox.auto_rollout = False
    message = deploy_requested(image="registry.example.com/demo/web:6.0.0")
    run = asyncio.create_task(stack.deploy(message))
    await wait_patched(stack)
    workload = await stack.kube.get("Deployment", "demo", "web")
    template = workload["spec"]["template"]
    pod = {"metadata": {"name": "web-new-2", "labels": template["metadata"]["labels"]}, "spec": template["spec"]}
    await stack.kube.create("Pod", "demo", pod)  # no status yet: starting
    await stack.kube.set_status(
        "Pod",
        "demo",
        "web-new-2",
        {
            "containerStatuses": [
                {
                    "name": "app",
                    "image": "registry.example.com/demo/web:6.0.0",
                    "ready": False,
                    "restartCount": 4,
                    "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                    "lastState": {"terminated": {"exitCode": 3, "reason": "Error", "message": "missing DATABASE_URL"}},
                }
            ]
        },
    )
    result = await asyncio.wait_for(run, 10)

    assert result.state == State.FAILED
    assert "keeps crashing (CrashLoopBackOff, 4 restarts): last exit code 3 (Error): missing DATABASE_URL" in (
        result.error
    )


async def test_verification_can_be_turned_off(stack: Stack) -> None:
    stack.sandbox.auto_rollout = False
    result = await stack.deploy(deploy_requested(image="registry.example.com/demo/web:7.0.0", verify_rollout=False))

    assert result.state == State.SUCCEEDED
    assert "not verified" in result.message


async def test_pin_digest_deploys_tag_and_digest(stack: Stack) -> None:
    digest = "sha256:" + "a" * 64
    message = deploy_requested(image="registry.example.com/demo/web:8.0.0", digest=digest, pin_digest=True)

    result = await stack.deploy(message)

    assert result.state == State.SUCCEEDED, result.error
    workload = await stack.kube.get("Deployment", "demo", "web")
    assert image_of(workload, "app") == f"registry.example.com/demo/web:8.0.0@{digest}"


async def test_an_older_request_after_a_newer_one_is_superseded_without_patching(stack: Stack) -> None:
    now = dt.datetime.now(dt.UTC)
    newer = deploy_requested(image="registry.example.com/demo/web:2.0.0", requested_at=now)
    older = deploy_requested(image="registry.example.com/demo/web:1.5.0", requested_at=now - dt.timedelta(minutes=1))

    assert (await stack.deploy(newer)).state == State.SUCCEEDED
    result = await stack.deploy(older)

    assert result.state == State.SUPERSEDED
    assert newer.run in result.message and "not deploying the older image" in result.message
    assert len(patch_bodies(stack.sandbox, "Deployment", "demo", "web")) == 1
    assert image_of(await stack.kube.get("Deployment", "demo", "web"), "app") == "registry.example.com/demo/web:2.0.0"


async def test_a_redelivered_run_continues_verifying_without_patching(stack: Stack) -> None:
    stack.sandbox.auto_rollout = False
    message = deploy_requested(image="registry.example.com/demo/web:2.1.0", rollout_timeout=0.5)
    first = await stack.deploy(message, attempt=1)
    assert first.state == State.FAILED  # timed out: nobody completed the rollout
    # As if the first attempt had been killed before publishing its result: a fresh runner retries.
    stack.sink.events = [e for e in stack.sink.events if not e.event_id.endswith(":result")]
    stack.runner.history = type(stack.runner.history)()
    await stack.kube.complete_rollout("Deployment", "demo", "web")

    second = await stack.deploy(message, attempt=2)

    assert second.state == State.SUCCEEDED, second.error
    assert second.previous_image == "registry.example.com/demo/web:1.0.0"  # from the run's deploy record
    assert len(patch_bodies(stack.sandbox, "Deployment", "demo", "web")) == 1
    assert any("this run's patch was applied before" in line for line in stack.sink.messages(message.run))
