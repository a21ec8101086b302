"""The registry events and their match decisions behind EventService.ListEvents, in a JetStream stream.

One RegistryEvent per handled push in the history stream (`subjects.EVENT_HISTORY_STREAM`), on a subject of its own
(`conveyor.trigger.history.<hash of the event id>`) with one message per subject kept: an event
handled again (a redelivery) replaces its entry. Limits retention (the newest `capacity` events, none
older than `max_age`) bounds it. Being a stream, it survives a restart and every replica answers the
same; ListEvents reads it newest first by stream sequence, filtering while it scans (bounded by the
stream's size), and its page tokens (`conveyor.aip`, bound to the filter) hold the sequence after
which the next page starts, so they stay valid while new events arrive and on any replica.
An entry that cannot be decoded or holds an out-of-range value is skipped, never served.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import logging
from collections.abc import Iterable

from nats.errors import Error as NatsError
from nats.js import api as js_api
from nats.js.client import JetStreamContext
from nats.js.errors import BadRequestError, NotFoundError

from conveyor import messages, subjects
from conveyor.aip.page_tokens import PageTokenCodec, fingerprint
from conveyor.aip.paging import page_size
from conveyor.errors import Unavailable
from conveyor.v1 import bus_pb2, event_service_pb2
from conveyor_trigger.domain.history import HistoryQuery

log = logging.getLogger(__name__)

# Stream messages read at once while scanning (one request each, concurrently).
_READ_AHEAD = 32


def history_subject(event_id: str) -> str:
    """Subject tokens cannot hold every character of an event id: its hash stands for it."""
    return f"{subjects.EVENT_HISTORY_SUBJECT_PREFIX}.{hashlib.sha256(event_id.encode()).hexdigest()[:40]}"


class JetStreamEventHistory:
    def __init__(self, js: JetStreamContext, *, codec: PageTokenCodec, timeout: float = 5.0) -> None:
        self.js = js
        self.codec = codec
        self.timeout = timeout

    @classmethod
    async def open(
        cls,
        js: JetStreamContext,
        *,
        codec: PageTokenCodec,
        capacity: int,
        max_age: float,
        replicas: int = 1,
        timeout: float = 5.0,
    ) -> JetStreamEventHistory:
        """Create (or update to these limits) the history stream; idempotent, safe for every replica."""
        config = js_api.StreamConfig(
            name=subjects.EVENT_HISTORY_STREAM,
            subjects=[subjects.EVENT_HISTORY_SUBJECTS],
            storage=js_api.StorageType.FILE,
            retention=js_api.RetentionPolicy.LIMITS,
            discard=js_api.DiscardPolicy.OLD,
            max_msgs=capacity,
            max_msgs_per_subject=1,
            max_age=max_age,
            num_replicas=replicas,
        )
        try:
            await js.add_stream(config)
        except BadRequestError:
            # Never scaled down by a replica started with a smaller setting (as conveyor.bus does).
            info = await js.stream_info(subjects.EVENT_HISTORY_STREAM)
            config.num_replicas = max(replicas, info.config.num_replicas or 1)
            await js.update_stream(config)
        return cls(js, codec=codec, timeout=timeout)

    async def record(
        self,
        push: bus_pb2.ImagePushed,
        decisions: Iterable[event_service_pb2.MatchDecision],
        receive_time: dt.datetime,
    ) -> None:
        event = event_service_pb2.RegistryEvent(push=push, decisions=list(decisions))
        event.receive_time.FromDatetime(receive_time)
        await self.js.publish(history_subject(push.event_id), event.SerializeToString(), timeout=self.timeout)

    async def list(self, request: event_service_pb2.ListEventsRequest) -> event_service_pb2.ListEventsResponse:
        size = page_size(request.page_size)
        query = HistoryQuery.of(request)
        bound_to = fingerprint(*query.fingerprint_parts())
        before = self.codec.decode(request.page_token, bound_to, (int,))[0] if request.page_token else None
        try:
            state = (await self.js.stream_info(subjects.EVENT_HISTORY_STREAM)).state
            sequence = state.last_seq if before is None else min(before - 1, state.last_seq)
            page: list[event_service_pb2.RegistryEvent] = []
            last_sequence = 0
            while sequence >= max(state.first_seq, 1):
                batch = range(sequence, max(sequence - _READ_AHEAD, state.first_seq - 1, 0), -1)
                events = await asyncio.gather(*(self._read(s) for s in batch))
                for at, event in zip(batch, events, strict=True):
                    if event is None or not query.selects(event):
                        continue
                    if len(page) == size:
                        token = self.codec.encode([last_sequence], bound_to)
                        return event_service_pb2.ListEventsResponse(events=page, next_page_token=token)
                    page.append(event)
                    last_sequence = at
                sequence = batch[-1] - 1
        except (NatsError, TimeoutError) as exc:
            raise Unavailable(f"the event history cannot be read ({exc or type(exc).__name__}); retry") from exc
        return event_service_pb2.ListEventsResponse(events=page)

    async def _read(self, sequence: int) -> event_service_pb2.RegistryEvent | None:
        try:
            stored = await self.js.get_msg(subjects.EVENT_HISTORY_STREAM, seq=sequence)
        except NotFoundError:
            return None  # replaced by a newer entry of the same event, or aged out meanwhile
        event = event_service_pb2.RegistryEvent()
        try:
            event.ParseFromString(stored.data or b"")
        except Exception:
            log.warning("skipped an undecodable event history entry", extra={"stream_seq": sequence})
            return None
        violations = messages.validate_fields(event)
        if violations:
            log.warning(
                "skipped an event history entry with invalid values",
                extra={"stream_seq": sequence, "error": messages.describe(violations)},
            )
            return None
        return event
