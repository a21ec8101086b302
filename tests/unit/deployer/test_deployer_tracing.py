"""The deployer's spans: a run continues the trace its request arrived in, even when it waited in a lane;
deploy has patch and verify children; a failed run marks its span."""

from __future__ import annotations

from conveyor import tracing
from conveyor.retry import RetryPolicy
from conveyor.v1 import run_pb2
from conveyor_deployer.usecases.deploy import DeployRunner, RunResult
from conveyor_deployer.usecases.dispatcher import Dispatcher
from conveyor_deployer.usecases.requests import DeployRequest
from tests.support.net import eventually
from tests.support.tracing import memory_tracer
from tests.unit.deployer.fakes import CLUSTER, FakeClock, FakeWorkloadApi, MemorySink, deployment, request, rolled_out
from tests.unit.deployer.test_deployer_dispatcher import FakeDelivery, GatedExecutor, req, started


class TracedExecutor(GatedExecutor):
    async def run(self, request: DeployRequest, attempt: int) -> RunResult:
        with tracing.span(f"run {request.run_id}"):
            return await super().run(request, attempt)


async def test_a_queued_run_continues_the_trace_of_its_own_request() -> None:
    with memory_tracer() as memory:
        executor = TracedExecutor()
        dispatcher = Dispatcher(executor, max_concurrent=8, heartbeat_interval=60)
        first, second = req("run-a", 1, container="app"), req("run-b", 2, container="sidecar")
        deliveries = [FakeDelivery(), FakeDelivery()]
        with tracing.span("received a"):
            await dispatcher.submit(first, deliveries[0])
        with tracing.span("received b"):  # same workload: it waits behind run-a, in run-a's lane worker
            await dispatcher.submit(second, deliveries[1])
        await started(executor, "run-a")
        executor.gate(first).set()
        await started(executor, "run-b")
        executor.gate(second).set()

        async def settled() -> None:
            assert all(delivery.settled == ["ack"] for delivery in deliveries)

        await eventually(settled, 5)
        spans = {span.name: span for span in memory.spans()}
    assert spans["run run-a"].parent_id == spans["received a"].span_id
    assert spans["run run-b"].parent_id == spans["received b"].span_id
    assert spans["run run-b"].trace_id != spans["run run-a"].trace_id


def runner(api: FakeWorkloadApi, clock: FakeClock) -> DeployRunner:
    return DeployRunner(
        api,
        MemorySink(),
        [CLUSTER],
        retry=RetryPolicy(initial=0.5, maximum=3.0, jitter=0.0, max_attempts=2),
        poll_interval=1.0,
        sleep=clock.sleep,
        monotonic=clock.monotonic,
    )


async def test_deploy_has_patch_and_verify_children_that_name_the_run() -> None:
    api, clock = FakeWorkloadApi(deployment()), FakeClock()
    api.after_patch = lambda workload: workload.update(status=rolled_out(workload["metadata"]["generation"]))
    deploy_request = request()
    with memory_tracer() as memory:
        result = await runner(api, clock).run(deploy_request, 1)
        spans = {span.name: span for span in memory.spans()}
    assert result.state == run_pb2.Run.SUCCEEDED
    assert set(spans) == {"deploy", "patch", "verify"}
    assert spans["patch"].parent_id == spans["verify"].parent_id == spans["deploy"].span_id
    for span in spans.values():
        assert span.attributes["conveyor.run"] == deploy_request.run
        assert span.attributes["conveyor.pipeline"] == "web"
    assert spans["deploy"].attributes["conveyor.state"] == "SUCCEEDED"
    assert spans["patch"].attributes["conveyor.image"] == deploy_request.image


async def test_a_rollout_that_times_out_fails_its_spans() -> None:
    api, clock = FakeWorkloadApi(deployment()), FakeClock()  # patched, never rolled out
    with memory_tracer() as memory:
        result = await runner(api, clock).run(request(timeout=3.0), 1)
        spans = {span.name: span for span in memory.spans()}
    assert result.state == run_pb2.Run.FAILED
    assert (spans["verify"].status, spans["deploy"].status, spans["patch"].status) == ("ERROR", "ERROR", "UNSET")
    assert spans["deploy"].attributes["conveyor.state"] == "FAILED"
