"""The deploy use case with a fake API: conflicts, RBAC, flaky API servers, deadlines, rollback edge cases."""

from __future__ import annotations

from typing import Any

from conveyor.retry import RetryPolicy
from conveyor.v1 import run_pb2
from conveyor_deployer.domain.workloads import DeployRecord, RecordState, record_annotation
from conveyor_deployer.usecases.deploy import DeployRunner
from tests.unit.deployer.fakes import (
    CLUSTER,
    REF,
    FakeClock,
    FakeWorkloadApi,
    MemorySink,
    api_error,
    deployment,
    request,
    rolled_out,
)

State = run_pb2.Run


def runner(api: FakeWorkloadApi, sink: MemorySink, clock: FakeClock, attempts: int = 4) -> DeployRunner:
    return DeployRunner(
        api,
        sink,
        [CLUSTER],
        retry=RetryPolicy(initial=0.5, maximum=3.0, jitter=0.0, max_attempts=attempts),
        conflict_retries=3,
        poll_interval=1.0,
        sleep=clock.sleep,
        monotonic=clock.monotonic,
    )


def complete_on_patch(workload: dict[str, Any]) -> None:
    workload["status"] = rolled_out(workload["metadata"]["generation"])


async def test_a_409_conflict_is_retried_after_re_reading() -> None:
    api, sink, clock = FakeWorkloadApi(deployment()), MemorySink(), FakeClock()
    api.failures["patch_workload"] = [
        api_error(409, "patch", 'Operation cannot be fulfilled on deployments.apps "web": the object has been modified')
    ]
    api.after_patch = complete_on_patch

    result = await runner(api, sink, clock).run(request(), 1)

    assert result.state == State.SUCCEEDED, result.error
    assert api.calls.count("patch_workload") == 2 and len(api.patches) == 1
    assert api.calls.count("get_workload") >= 2  # re-read before the second patch
    assert any("changed since it was read" in line and "re-reading" in line for line in sink.lines())


async def test_a_concurrent_change_fails_the_resource_version_test_and_is_recomputed() -> None:
    api, sink, clock = FakeWorkloadApi(deployment()), MemorySink(), FakeClock()
    original_get = api.get_workload
    reads = 0

    async def get_then_someone_writes(ref: Any) -> dict[str, Any]:
        nonlocal reads
        result = await original_get(ref)
        reads += 1
        if reads == 1:
            api.touch()  # another writer bumps resourceVersion after our first read
        return result

    api.get_workload = get_then_someone_writes  # type: ignore[method-assign]
    api.after_patch = complete_on_patch

    result = await runner(api, sink, clock).run(request(), 1)

    assert result.state == State.SUCCEEDED, result.error
    assert len(api.patches) == 1
    applied = api.patches[0]
    assert applied[0] == {"op": "test", "path": "/metadata/resourceVersion", "value": "11"}


async def test_a_workload_that_keeps_changing_fails_after_the_conflict_retries() -> None:
    api, sink, clock = FakeWorkloadApi(deployment()), MemorySink(), FakeClock()
    api.failures["patch_workload"] = [api_error(409, "patch") for _ in range(10)]

    result = await runner(api, sink, clock).run(request(), 1)

    assert result.state == State.FAILED
    assert "kept changing" in result.error and "4 conflicting attempts" in result.error


async def test_a_403_names_the_verb_resource_and_namespace() -> None:
    api, sink, clock = FakeWorkloadApi(deployment()), MemorySink(), FakeClock()
    api.failures["patch_workload"] = [
        api_error(403, "patch", 'deployments.apps "web" is forbidden: User "system:serviceaccount:ci:deployer" cannot')
    ]

    result = await runner(api, sink, clock).run(request(), 1)

    assert result.state == State.FAILED
    assert result.error.startswith(
        "RBAC: the deployer is not allowed to patch deployments.apps in namespace demo in cluster c1 (403 Forbidden"
    )
    assert 'Grant its user or service account the "patch" verb on "deployments.apps"' in result.error
    assert api.calls.count("patch_workload") == 1  # not retried


async def test_5xx_and_timeouts_are_retried_with_growing_backoff() -> None:
    api, sink, clock = FakeWorkloadApi(deployment()), MemorySink(), FakeClock()
    api.failures["get_workload"] = [
        api_error(503, message="etcdserver: leader changed"),
        api_error(None, message="timed out"),
    ]
    api.after_patch = complete_on_patch

    result = await runner(api, sink, clock).run(request(), 1)

    assert result.state == State.SUCCEEDED, result.error
    assert clock.sleeps[:2] == [0.5, 1.0]
    warnings = [line for line in sink.lines() if "retrying in" in line]
    assert len(warnings) == 2 and "(503: etcdserver: leader changed)" in warnings[0]
    assert "cannot reach the API of cluster c1" in warnings[1]


async def test_an_api_server_that_stays_down_fails_the_run_after_the_retries() -> None:
    api, sink, clock = FakeWorkloadApi(deployment()), MemorySink(), FakeClock()
    api.failures["get_workload"] = [api_error(500, message="internal error") for _ in range(10)]

    result = await runner(api, sink, clock, attempts=3).run(request(), 1)

    assert result.state == State.FAILED
    assert result.error == (
        "the API of cluster c1 failed to get deployments.apps 'web' in namespace demo of cluster c1 (500: internal "
        "error); gave up after 3 attempts"
    )
    assert clock.sleeps == [0.5, 1.0]
    assert api.patches == []


async def test_a_rollout_past_its_progress_deadline_fails_and_rolls_back() -> None:
    api, sink, clock = FakeWorkloadApi(deployment()), MemorySink(), FakeClock()

    def stall(workload: dict[str, Any]) -> None:
        if workload["spec"]["template"]["spec"]["containers"][0]["image"] == "r.io/team/web:2":
            workload["status"] = {
                "observedGeneration": workload["metadata"]["generation"],
                "updatedReplicas": 1,
                "conditions": [
                    {
                        "type": "Progressing",
                        "status": "False",
                        "reason": "ProgressDeadlineExceeded",
                        "message": 'ReplicaSet "web-2" has timed out progressing.',
                    }
                ],
            }

    api.after_patch = stall

    result = await runner(api, sink, clock).run(request(rollback=True), 1)

    assert result.state == State.FAILED
    assert "deployment 'web' exceeded its progress deadline" in result.error
    assert result.error.endswith("; rolled back container 'app' to r.io/team/web:1")
    assert api.objects[REF]["spec"]["template"]["spec"]["containers"][0]["image"] == "r.io/team/web:1"
    assert [op["value"] for p in api.patches for op in p if op["op"] == "replace"] == [
        "r.io/team/web:2",
        "r.io/team/web:1",
    ]


async def test_a_rollout_that_does_not_finish_times_out() -> None:
    api, sink, clock = FakeWorkloadApi(deployment()), MemorySink(), FakeClock()

    result = await runner(api, sink, clock).run(request(timeout=5.0), 1)

    assert result.state == State.FAILED
    assert result.error == (
        "the rollout did not complete within 5s (rollout_timeout): Waiting for deployment spec update to be observed..."
    )
    assert sum(clock.sleeps) == 5.0


async def test_rollback_is_skipped_when_someone_else_changed_the_container_meanwhile() -> None:
    api, sink, clock = FakeWorkloadApi(deployment()), MemorySink(), FakeClock()

    def someone_else_deploys(workload: dict[str, Any]) -> None:
        workload["spec"]["template"]["spec"]["containers"][0]["image"] = "r.io/team/web:hotfix"

    api.after_patch = someone_else_deploys

    result = await runner(api, sink, clock).run(request(rollback=True, timeout=2.0), 1)

    assert result.state == State.FAILED
    assert result.error.endswith("not rolled back (container 'app' was changed to r.io/team/web:hotfix meanwhile)")
    assert len(api.patches) == 1


async def test_a_redelivered_run_that_was_rolled_back_is_not_deployed_again() -> None:
    workload = deployment("r.io/team/web:1")
    req = request()
    record = DeployRecord(req.run, req.requested_at, "r.io/team/web:1", "r.io/team/web:2", RecordState.ROLLED_BACK)
    workload["metadata"]["annotations"] = {record_annotation("app"): record.to_json()}
    api, sink, clock = FakeWorkloadApi(workload), MemorySink(), FakeClock()

    result = await runner(api, sink, clock).run(req, 2)

    assert result.state == State.FAILED
    assert "failed earlier and container 'app' was rolled back to r.io/team/web:1" in result.error
    assert api.patches == []


async def test_forbidden_pod_listing_degrades_to_status_only_verification() -> None:
    api, sink, clock = FakeWorkloadApi(deployment()), MemorySink(), FakeClock()
    api.failures["list_pods"] = [api_error(403, "list", "pods is forbidden")]
    patched: list[int] = []

    def complete_later(workload: dict[str, Any]) -> None:
        patched.append(workload["metadata"]["generation"])

    api.after_patch = complete_later
    original_sleep = clock.sleep

    async def sleep_then_complete(seconds: float) -> None:
        await original_sleep(seconds)
        api.objects[REF]["status"] = rolled_out(patched[-1])

    clock.sleep = sleep_then_complete  # type: ignore[method-assign]
    run = runner(api, sink, clock)
    run.sleep = clock.sleep

    result = await run.run(request(), 1)

    assert result.state == State.SUCCEEDED, result.error
    assert any("not allowed to list" in line and "only seen as a rollout timeout" in line for line in sink.lines())
    assert api.calls.count("list_pods") == 1  # not asked again
