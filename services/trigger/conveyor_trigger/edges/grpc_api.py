"""The gRPC edge: conveyor.v1.EventService (errors are mapped by conveyor.errors' interceptor)."""

from __future__ import annotations

from collections.abc import Callable

import grpc

from conveyor.aip.page_tokens import PageTokenCodec
from conveyor.v1 import event_service_pb2, event_service_pb2_grpc
from conveyor_trigger.domain.matching import PipelineIndex
from conveyor_trigger.usecases.ports import DigestResolver, EventHistory, TagLister
from conveyor_trigger.usecases.tags import list_tags

SERVICE_NAME = event_service_pb2.DESCRIPTOR.services_by_name["EventService"].full_name


class EventService(event_service_pb2_grpc.EventServiceServicer):
    def __init__(
        self,
        *,
        events_log: EventHistory,
        index: Callable[[], PipelineIndex],
        cache_loaded: Callable[[], bool],
        lister: TagLister | None,
        resolver: DigestResolver | None,
        codec: PageTokenCodec,
    ) -> None:
        self.events_log = events_log
        self.index = index
        self.cache_loaded = cache_loaded
        self.lister = lister
        self.resolver = resolver
        self.codec = codec

    async def ListEvents(  # noqa: N802 (gRPC method name)
        self, request: event_service_pb2.ListEventsRequest, context: grpc.aio.ServicerContext
    ) -> event_service_pb2.ListEventsResponse:
        return await self.events_log.list(request)

    async def ListTags(  # noqa: N802
        self, request: event_service_pb2.ListTagsRequest, context: grpc.aio.ServicerContext
    ) -> event_service_pb2.ListTagsResponse:
        return await list_tags(
            request,
            index=self.index,
            cache_loaded=self.cache_loaded,
            lister=self.lister,
            resolver=self.resolver,
            codec=self.codec,
        )
