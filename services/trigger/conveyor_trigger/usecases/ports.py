"""The adapters the use cases need, as Protocols (real ones in `adapters`, fakes in tests)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

from google.protobuf.message import Message

from conveyor.v1 import bus_pb2, event_service_pb2, pipeline_pb2


class EventPublisher(Protocol):
    async def publish(self, subject: str, message: Message, msg_id: str) -> bool:
        """Store durably (JetStream ack); True when stored now, False when a duplicate of msg_id."""
        ...


@dataclass
class PushRecord:
    """What the pushes bucket knows about one push (one image in one repository)."""

    push_key: str
    push_id: str
    # Push time shared by every event of the push: the run ids' time component.
    time_ms: int
    first_event_id: str
    # pipeline id -> id of the event that deployed it (runs already requested).
    deployed: dict[str, str] = field(default_factory=dict)
    revision: int = 0


class PushRegistry(Protocol):
    async def claim(self, push_key: str, event_id: str, time_ms: int) -> PushRecord:
        """The push's record, created by this call when it is the first event of the push."""
        ...

    async def mark_deployed(self, record: PushRecord, deployed: dict[str, str]) -> None:
        """Add pipelines (id -> event id) whose runs are now requested; merges with concurrent writers."""
        ...


class DigestResolver(Protocol):
    async def resolve_digest(self, registry: str, repository: str, reference: str) -> str:
        """`sha256:...` of the manifest `reference` (a tag) points to; raises on failure."""
        ...


class TagLister(Protocol):
    async def list_tags(
        self, registry: str, repository: str, *, page_size: int = 100, page_token: str = ""
    ) -> tuple[list[str], str]:
        """(tags, next_page_token) of a repository; raises on failure."""
        ...


class PipelineSource(Protocol):
    async def list_pipelines(self) -> list[pipeline_pb2.Pipeline]:
        """Every pipeline (all pages); raises when the config service cannot be reached."""
        ...


class EventHistory(Protocol):
    """The recent registry events and their match decisions (EventService.ListEvents), shared by every replica."""

    async def record(
        self,
        push: bus_pb2.ImagePushed,
        decisions: Iterable[event_service_pb2.MatchDecision],
        receive_time: dt.datetime,
    ) -> None:
        """Remember one handled event durably; handling the same event id again replaces its entry."""
        ...

    async def list(self, request: event_service_pb2.ListEventsRequest) -> event_service_pb2.ListEventsResponse:
        """Newest first, filtered and paginated as the request asks; InvalidArgument for a bad request."""
        ...
