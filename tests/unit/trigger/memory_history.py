"""An in-memory EventHistory for use-case tests (the service's is the JetStream stream, adapters.event_history)."""

from __future__ import annotations

import datetime as dt
from collections import OrderedDict
from collections.abc import Iterable

from conveyor.v1 import bus_pb2, event_service_pb2
from conveyor_trigger.domain.history import HistoryQuery


class MemoryHistory:
    def __init__(self) -> None:
        # event id -> event; insertion order = arrival order; handled again = moved to the end.
        self._events: OrderedDict[str, event_service_pb2.RegistryEvent] = OrderedDict()

    def __len__(self) -> int:
        return len(self._events)

    async def record(
        self,
        push: bus_pb2.ImagePushed,
        decisions: Iterable[event_service_pb2.MatchDecision],
        receive_time: dt.datetime,
    ) -> None:
        event = event_service_pb2.RegistryEvent(push=push, decisions=list(decisions))
        event.receive_time.FromDatetime(receive_time)
        self._events.pop(push.event_id, None)
        self._events[push.event_id] = event

    async def list(self, request: event_service_pb2.ListEventsRequest) -> event_service_pb2.ListEventsResponse:
        """Newest first, filtered; no paging (the adapter's paging is tested against a real NATS)."""
        query = HistoryQuery.of(request)
        return event_service_pb2.ListEventsResponse(
            events=[event for event in reversed(self._events.values()) if query.selects(event)]
        )
