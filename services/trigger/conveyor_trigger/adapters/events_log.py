"""The most recent registry events and their match decisions, in memory, for EventService.ListEvents.

Bounded (oldest dropped first), newest first, filterable by registry/repository, paginated
with opaque tokens that stay valid while new events arrive (a token is the position after
which the next page starts). An event handled again (redelivery) replaces its entry.
It is the answer to "why did my push not deploy?", not an archive: it does not survive
a restart.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
from collections import OrderedDict
from collections.abc import Iterable

from conveyor import refs
from conveyor.errors import FieldViolation, InvalidArgument
from conveyor.v1 import bus_pb2, event_service_pb2

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000
_TOKEN_PREFIX = "ev1:"


def encode_token(sequence: int) -> str:
    return base64.urlsafe_b64encode(f"{_TOKEN_PREFIX}{sequence}".encode()).decode().rstrip("=")


def decode_token(token: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        if not raw.startswith(_TOKEN_PREFIX):
            raise ValueError
        sequence = int(raw[len(_TOKEN_PREFIX) :])
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise InvalidArgument.from_violations(
            [FieldViolation("page_token", "invalid page token; use the next_page_token of a previous response")]
        ) from None
    return sequence


class EventsLog:
    def __init__(self, capacity: int = 1000) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
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
        if request.page_size < 0:
            raise InvalidArgument.from_violations([FieldViolation("page_size", "must not be negative")])
        page_size = min(request.page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
        before = decode_token(request.page_token) if request.page_token else None
        host_filter = refs.normalize_registry(request.registry) if request.registry.strip() else None
        repository_filter = request.repository.strip().strip("/")

        page: list[event_service_pb2.RegistryEvent] = []
        last_sequence = 0
        for sequence, event in reversed(self._events.values()):
            if before is not None and sequence >= before:
                continue
            if host_filter is not None and event.push.registry != host_filter:
                continue
            if repository_filter and event.push.repository != refs.normalize_repository(
                event.push.registry, repository_filter
            ):
                continue
            if len(page) == page_size:
                return event_service_pb2.ListEventsResponse(events=page, next_page_token=encode_token(last_sequence))
            page.append(event)
            last_sequence = sequence
        return event_service_pb2.ListEventsResponse(events=page)
