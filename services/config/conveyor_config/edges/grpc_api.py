"""Thin gRPC servicers: request -> use case -> response. Errors are mapped by the shared interceptor."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
from google.protobuf import empty_pb2

from conveyor.v1 import (
    pipeline_pb2,
    pipeline_service_pb2,
    pipeline_service_pb2_grpc,
    run_pb2,
    run_service_pb2,
    run_service_pb2_grpc,
)
from conveyor_config.usecases.pipelines import PipelineUseCases
from conveyor_config.usecases.runs import RunUseCases

PIPELINE_SERVICE = pipeline_service_pb2.DESCRIPTOR.services_by_name["PipelineService"].full_name
RUN_SERVICE = run_service_pb2.DESCRIPTOR.services_by_name["RunService"].full_name


class PipelineServicer(pipeline_service_pb2_grpc.PipelineServiceServicer):
    def __init__(self, pipelines: PipelineUseCases, runs: RunUseCases) -> None:
        self.pipelines = pipelines
        self.runs = runs

    async def CreatePipeline(  # noqa: N802 - gRPC method name
        self, request: pipeline_service_pb2.CreatePipelineRequest, context: grpc.aio.ServicerContext
    ) -> pipeline_pb2.Pipeline:
        return await self.pipelines.create(
            request.pipeline,
            pipeline_id=request.pipeline_id,
            request_id=request.request_id,
            validate_only=request.validate_only,
        )

    async def GetPipeline(  # noqa: N802
        self, request: pipeline_service_pb2.GetPipelineRequest, context: grpc.aio.ServicerContext
    ) -> pipeline_pb2.Pipeline:
        return await self.pipelines.get(request.name)

    async def ListPipelines(  # noqa: N802
        self, request: pipeline_service_pb2.ListPipelinesRequest, context: grpc.aio.ServicerContext
    ) -> pipeline_service_pb2.ListPipelinesResponse:
        page, next_token, total = await self.pipelines.list(
            page_size=request.page_size, page_token=request.page_token, filter=request.filter
        )
        return pipeline_service_pb2.ListPipelinesResponse(pipelines=page, next_page_token=next_token, total_size=total)

    async def UpdatePipeline(  # noqa: N802
        self, request: pipeline_service_pb2.UpdatePipelineRequest, context: grpc.aio.ServicerContext
    ) -> pipeline_pb2.Pipeline:
        return await self.pipelines.update(
            request.pipeline, list(request.update_mask.paths), validate_only=request.validate_only
        )

    async def DeletePipeline(  # noqa: N802
        self, request: pipeline_service_pb2.DeletePipelineRequest, context: grpc.aio.ServicerContext
    ) -> empty_pb2.Empty:
        await self.pipelines.delete(request.name, request.etag)
        return empty_pb2.Empty()

    async def StartPipeline(  # noqa: N802
        self, request: pipeline_service_pb2.StartPipelineRequest, context: grpc.aio.ServicerContext
    ) -> run_pb2.Run:
        return await self.runs.start(
            request.name,
            tag=request.tag,
            digest=request.digest,
            request_id=request.request_id,
            allow_unverified=request.allow_unverified,
        )


class RunServicer(run_service_pb2_grpc.RunServiceServicer):
    def __init__(self, runs: RunUseCases) -> None:
        self.runs = runs

    async def GetRun(  # noqa: N802
        self, request: run_service_pb2.GetRunRequest, context: grpc.aio.ServicerContext
    ) -> run_pb2.Run:
        return await self.runs.get(request.name)

    async def ListRuns(  # noqa: N802
        self, request: run_service_pb2.ListRunsRequest, context: grpc.aio.ServicerContext
    ) -> run_service_pb2.ListRunsResponse:
        page, next_token = await self.runs.list(
            parent=request.parent, page_size=request.page_size, page_token=request.page_token, filter=request.filter
        )
        return run_service_pb2.ListRunsResponse(runs=page, next_page_token=next_token)

    async def DeleteRun(  # noqa: N802
        self, request: run_service_pb2.DeleteRunRequest, context: grpc.aio.ServicerContext
    ) -> empty_pb2.Empty:
        await self.runs.delete(request.name)
        return empty_pb2.Empty()

    async def TailRunLogs(  # noqa: N802
        self, request: run_service_pb2.TailRunLogsRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[run_pb2.RunLogEntry]:
        async for entry in self.runs.tail(request.name, follow=request.follow):
            yield entry
