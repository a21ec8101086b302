"""The shared server bootstrap: error mapping with details, health, reflection, shutdown."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf import empty_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_status import rpc_status

from conveyor.errors import Aborted, FieldViolation, InvalidArgument, NotFound, field_violations
from conveyor.server import GrpcServer
from conveyor.v1 import run_pb2, run_service_pb2, run_service_pb2_grpc


class ExplodingRunService(run_service_pb2_grpc.RunServiceServicer):
    async def GetRun(self, request, context):  # noqa: N802 - gRPC method name
        if request.name == "missing":
            raise NotFound(f"run {request.name!r} not found")
        if request.name == "stale":
            raise Aborted("etag is stale")
        if request.name == "crash":
            raise RuntimeError("secret internal detail")
        raise InvalidArgument.from_violations([FieldViolation("name", "must be a run name")])

    async def DeleteRun(self, request, context):  # noqa: N802
        return empty_pb2.Empty()

    async def TailRunLogs(self, request, context):  # noqa: N802
        yield run_pb2.RunLogEntry(message="first")
        raise NotFound("run vanished")


@pytest.fixture
async def server():
    srv = GrpcServer("127.0.0.1:0", [run_service_pb2.DESCRIPTOR.services_by_name["RunService"].full_name])
    srv.add(run_service_pb2_grpc.add_RunServiceServicer_to_server, ExplodingRunService())
    await srv.start()
    yield srv
    await srv.stop(0)


async def test_errors_map_to_codes_with_details(server: GrpcServer) -> None:
    async with grpc.aio.insecure_channel(server.bound_address) as channel:
        stub = run_service_pb2_grpc.RunServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await stub.GetRun(run_service_pb2.GetRunRequest(name="bad"))
        assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert field_violations(error.value) == [FieldViolation("name", "must be a run name")]
        status = rpc_status.from_call(error.value)
        assert status is not None and len(status.details) == 2

        for name, code in (("missing", grpc.StatusCode.NOT_FOUND), ("stale", grpc.StatusCode.ABORTED)):
            with pytest.raises(grpc.aio.AioRpcError) as error:
                await stub.GetRun(run_service_pb2.GetRunRequest(name=name))
            assert error.value.code() == code

        with pytest.raises(grpc.aio.AioRpcError) as error:
            await stub.GetRun(run_service_pb2.GetRunRequest(name="crash"))
        assert error.value.code() == grpc.StatusCode.INTERNAL
        assert "secret internal detail" not in (error.value.details() or "")


async def test_stream_error_after_items(server: GrpcServer) -> None:
    async with grpc.aio.insecure_channel(server.bound_address) as channel:
        stub = run_service_pb2_grpc.RunServiceStub(channel)
        call = stub.TailRunLogs(run_service_pb2.TailRunLogsRequest(name="x"))
        received = []
        with pytest.raises(grpc.aio.AioRpcError) as error:
            async for entry in call:
                received.append(entry.message)
        assert received == ["first"]
        assert error.value.code() == grpc.StatusCode.NOT_FOUND


async def test_health_and_reflection(server: GrpcServer) -> None:
    async with grpc.aio.insecure_channel(server.bound_address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        reply = await health.Check(health_pb2.HealthCheckRequest(service="conveyor.v1.RunService"))
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
        reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
        responses = reflection.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
        names = [s.name async for r in responses for s in r.list_services_response.service]
        assert "conveyor.v1.RunService" in names
        assert "grpc.health.v1.Health" in names
        await server.set_serving(False)
        reply = await health.Check(health_pb2.HealthCheckRequest(service=""))
        assert reply.status == health_pb2.HealthCheckResponse.NOT_SERVING
