"""The most recent registry events and their match decisions, in memory, for EventService.ListEvents.

Bounded (oldest dropped first), newest first, filterable by registry/repository, paginated
with `conveyor.aip` page tokens (signed, bound to the filter) that stay valid while new events
arrive: a token holds the position after which the next page starts. An event handled again
(redelivery) replaces its entry. It is the answer to "why did my push not deploy?", not an
archive: it does not survive a restart.
"""

from __future__ import annotations

import datetime as dt
from collections import OrderedDict
from collections.abc import Iterable

from conveyor import refs
from conveyor.aip.page_tokens import PageTokenCodec, fingerprint
from conveyor.aip.paging import page_size
from conveyor.v1 import bus_pb2, event_service_pb2


class EventsLog:
    def __init__(self, capacity: int = 1000, *, codec: PageTokenCodec | None = None) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        # The app passes its codec; alone (tests), the log signs with a key of its own.
        self.codec = codec if codec is not None else PageTokenCodec.ephemeral()
        self._sequence = 0
        # event id -> (sequence, event); insertion order = arrival order.
        self._events: OrderedDict[str, tuple[int, event_service_pb2.RegistryEvent]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._events)

    def record(
        self,
        push: bus_pb2.ImagePushed,
        decisions: Iterable[event_service_pb2.MatchDecision],
        receive_time: dt.datetime,
    ) -> None:
        event = event_service_pb2.RegistryEvent(push=push, decisions=list(decisions))
        event.receive_time.FromDatetime(receive_time)
        self._events.pop(push.event_id, None)
        self._sequence += 1
        self._events[push.event_id] = (self._sequence, event)
        while len(self._events) > self.capacity:
            self._events.popitem(last=False)

    def list(self, request: event_service_pb2.ListEventsRequest) -> event_service_pb2.ListEventsResponse:
        size = page_size(request.page_size)
        wanted = refs.normalize_repo(request.registry, request.repository)
        query = fingerprint("events", wanted.registry, wanted.repository)
        before = self.codec.decode(request.page_token, query, (int,))[0] if request.page_token else None

        page: list[event_service_pb2.RegistryEvent] = []
        last_sequence = 0
        for sequence, event in reversed(self._events.values()):
            if before is not None and sequence >= before:
                continue
            if not _selected(event.push, wanted, request.repository):
                continue
            if len(page) == size:
                token = self.codec.encode([last_sequence], query)
                return event_service_pb2.ListEventsResponse(events=page, next_page_token=token)
            page.append(event)
            last_sequence = sequence
        return event_service_pb2.ListEventsResponse(events=page)


def _selected(push: bus_pb2.ImagePushed, wanted: refs.Repo, repository: str) -> bool:
    if wanted.registry and push.registry != wanted.registry:
        return False
    if not wanted.repository:
        return True
    if wanted.registry:
        return push.repository == wanted.repository
    # No registry asked for: whether `nginx` means `library/nginx` depends on each event's host.
    return push.repository == refs.normalize_repo(push.registry, repository).repository
