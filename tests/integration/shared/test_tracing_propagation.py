"""Trace context across a real nats-server (message headers) and a real gRPC server (metadata)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import grpc
import pytest
from google.protobuf import empty_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from conveyor import bus, tracing
from conveyor.errors import NotFound
from conveyor.server import GrpcServer
from conveyor.tracing.rpc import client_interceptors
from conveyor.v1 import bus_pb2, run_pb2, run_service_pb2, run_service_pb2_grpc
from tests.support.tracing import MemorySpans, memory_tracer, tree_problems

RUN = "pipelines/web/runs/01J0000000000000000000000A"


@pytest.fixture
def spans() -> Iterator[MemorySpans]:
    with memory_tracer("conveyor-test") as memory:
        yield memory


async def test_a_consumer_continues_the_trace_of_the_publish(nc: NATS, spans: MemorySpans) -> None:
    js = nc.jetstream()
    await bus.ensure_streams(js)
    seen: list[tuple[dict[str, str], str]] = []
    stop = asyncio.Event()

    async def handle(msg: Msg) -> bus.Outcome:
        with tracing.span("handle") as span:
            seen.append((dict(msg.headers or {}), f"{span.get_span_context().trace_id:032x}"))
        stop.set()
        return bus.Outcome.ACK

    with tracing.span("caller") as caller:
        assert await bus.publish(js, bus.DEPLOY_REQUESTED_SUBJECT, bus_pb2.DeployRequested(run=RUN), RUN)
    spec = bus.ConsumerSpec(bus.DEPLOY_REQUESTS_STREAM, bus.DEPLOY_REQUESTED_SUBJECT, "tracing-test")
    await asyncio.wait_for(bus.pull_loop(js, spec, handle, stop), 20)

    [(headers, trace_id)] = seen
    assert trace_id == f"{caller.get_span_context().trace_id:032x}"
    assert headers["traceparent"].startswith(f"00-{trace_id}-")
    assert headers[bus.MSG_ID_HEADER] == RUN
    by_name = {span.name: span for span in spans.spans()}
    publish = by_name["publish conveyor.deploy.requested"]
    process = by_name["process conveyor.deploy.requested"]
    assert (publish.kind, process.kind) == ("PRODUCER", "CONSUMER")
    assert publish.attributes["conveyor.run"] == RUN and publish.attributes["conveyor.duplicate"] is False
    assert process.parent_id == publish.span_id and by_name["handle"].parent_id == process.span_id
    assert process.attributes["conveyor.outcome"] == "ack"
    assert tree_problems(by_name.values()) == []


async def test_a_failing_handler_marks_the_consumer_span(nc: NATS, spans: MemorySpans) -> None:
    js = nc.jetstream()
    await bus.ensure_streams(js)
    stop = asyncio.Event()

    async def handle(msg: Msg) -> bus.Outcome:
        stop.set()
        raise RuntimeError("database down")

    await bus.publish(js, bus.RUN_EVENTS_SUBJECT, bus_pb2.RunEvent(run=RUN, event_id="e1"), "e1")
    spec = bus.ConsumerSpec(bus.RUN_EVENTS_STREAM, bus.RUN_EVENTS_SUBJECT, "tracing-fail")
    await asyncio.wait_for(bus.pull_loop(js, spec, handle, stop), 20)
    [process] = spans.named("process conveyor.runs.events")
    assert process.status == "ERROR" and process.attributes["conveyor.outcome"] == "nak"


class RunService(run_service_pb2_grpc.RunServiceServicer):
    async def GetRun(self, request, context):  # noqa: N802 - gRPC method name
        with tracing.span("servicer"):
            if request.name == "missing":
                raise NotFound("no such run")
            return run_pb2.Run(name=request.name)

    async def DeleteRun(self, request, context):  # noqa: N802
        return empty_pb2.Empty()

    async def TailRunLogs(self, request, context):  # noqa: N802
        yield run_pb2.RunLogEntry(message="first")


async def test_grpc_metadata_carries_the_trace_to_the_server(spans: MemorySpans) -> None:
    server = GrpcServer("127.0.0.1:0", [run_service_pb2.DESCRIPTOR.services_by_name["RunService"].full_name])
    server.add(run_service_pb2_grpc.add_RunServiceServicer_to_server, RunService())
    await server.start()
    try:
        async with grpc.aio.insecure_channel(server.bound_address, interceptors=client_interceptors()) as channel:
            stub = run_service_pb2_grpc.RunServiceStub(channel)
            with tracing.span("caller"):
                assert (await stub.GetRun(run_service_pb2.GetRunRequest(name=RUN))).name == RUN
                with pytest.raises(grpc.aio.AioRpcError):
                    await stub.GetRun(run_service_pb2.GetRunRequest(name="missing"))
                assert [entry.message async for entry in stub.TailRunLogs(run_service_pb2.TailRunLogsRequest())] == [
                    "first"
                ]
        async with grpc.aio.insecure_channel(server.bound_address) as plain:  # as a probe calls it
            await health_pb2_grpc.HealthStub(plain).Check(health_pb2.HealthCheckRequest())
    finally:
        await server.stop(0)

    all_spans = spans.spans()
    get = "conveyor.v1.RunService/GetRun"
    clients = [span for span in all_spans if span.name == get and span.kind == "CLIENT"]
    servers = [span for span in all_spans if span.name == get and span.kind == "SERVER"]
    assert len(clients) == len(servers) == 2
    # Each server span is the child of its client span; the servicer's span is the server span's child.
    assert sorted(s.parent_id for s in servers) == sorted(c.span_id for c in clients)
    servicer_parents = {span.parent_id for span in all_spans if span.name == "servicer"}
    assert servicer_parents == {span.span_id for span in servers}
    failed = [span for span in servers if span.status == "ERROR"]
    assert [span.attributes["rpc.grpc.status_code"] for span in failed] == [grpc.StatusCode.NOT_FOUND.value[0]]
    assert [span.status for span in clients].count("ERROR") == 1
    tail = [span for span in all_spans if span.name == "conveyor.v1.RunService/TailRunLogs"]
    assert {span.kind for span in tail} == {"CLIENT", "SERVER"}
    # Health checks (probes) are not traced; everything else is one trace under "caller".
    assert not [span for span in all_spans if "Health" in span.name]
    assert tree_problems(all_spans) == []
    assert servers[0].attributes["rpc.service"] == "conveyor.v1.RunService"
