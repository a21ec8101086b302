"""The config service's PipelineService, read over gRPC (the pipeline cache's source).

The channel and the generated stub are made by `app.py` (only edges and the composition root
import `*_pb2_grpc`); this adapter pages through ListPipelines and maps failures to Unavailable.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Protocol

import grpc

from conveyor.errors import Unavailable
from conveyor.v1 import pipeline_pb2, pipeline_service_pb2

PAGE_SIZE = 1000


class PipelineServiceStub(Protocol):
    """The part of the generated `PipelineServiceStub` this adapter calls."""

    def ListPipelines(  # noqa: N802 (gRPC method name)
        self, request: pipeline_service_pb2.ListPipelinesRequest, *, timeout: float | None = None
    ) -> Awaitable[pipeline_service_pb2.ListPipelinesResponse]: ...


class GrpcPipelineSource:
    def __init__(self, stub: PipelineServiceStub, *, address: str, timeout: float = 15.0) -> None:
        self.stub = stub
        # For error messages only: the stub's channel is already bound to it.
        self.address = address
        self.timeout = timeout

    async def list_pipelines(self) -> list[pipeline_pb2.Pipeline]:
        pipelines: list[pipeline_pb2.Pipeline] = []
        token = ""
        seen_tokens: set[str] = set()
        while True:
            try:
                reply = await self.stub.ListPipelines(
                    pipeline_service_pb2.ListPipelinesRequest(page_size=PAGE_SIZE, page_token=token),
                    timeout=self.timeout,
                )
            except grpc.aio.AioRpcError as exc:
                raise Unavailable(f"config service at {self.address}: {exc.code().name}: {exc.details()}") from None
            pipelines.extend(reply.pipelines)
            token = reply.next_page_token
            if not token:
                return pipelines
            if token in seen_tokens:
                raise Unavailable(f"config service at {self.address} repeated a page token")
            seen_tokens.add(token)
