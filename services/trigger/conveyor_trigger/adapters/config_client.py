"""The config service's PipelineService, read over gRPC (the pipeline cache's source)."""

from __future__ import annotations

import grpc

from conveyor.errors import Unavailable
from conveyor.v1 import pipeline_pb2, pipeline_service_pb2, pipeline_service_pb2_grpc

PAGE_SIZE = 1000


class GrpcPipelineSource:
    def __init__(self, address: str, *, timeout: float = 15.0) -> None:
        self.address = address
        self.timeout = timeout
        self.channel = grpc.aio.insecure_channel(address)
        self.stub = pipeline_service_pb2_grpc.PipelineServiceStub(self.channel)

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

    async def close(self) -> None:
        await self.channel.close()
