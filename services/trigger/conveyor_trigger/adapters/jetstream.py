"""JetStream adapters: durable publishing, the pushes KV bucket, and the matcher's pull consumer."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable

from google.protobuf.message import Message
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from conveyor import bus, metrics as shared_metrics
from conveyor.errors import Unavailable
from conveyor.names import new_id
from conveyor_trigger.domain import ids
from conveyor_trigger.usecases.ports import PushRecord

log = logging.getLogger(__name__)


class JetStreamPublisher:
    """`conveyor.bus.publish`, refusing fast (Unavailable) while NATS is disconnected instead of
    letting the client buffer the message and the caller wait for a timeout."""

    def __init__(self, nc: NATS, js: JetStreamContext, *, timeout: float = 5.0) -> None:
        self.nc = nc
        self.js = js
        self.timeout = timeout

    def connected(self) -> bool:
        return bool(self.nc.is_connected)

    async def publish(self, subject: str, message: Message, msg_id: str) -> bool:
        if not self.nc.is_connected:
            raise Unavailable("not connected to NATS")
        return await bus.publish(self.js, subject, message, msg_id, timeout=self.timeout)


def _encode(record: PushRecord) -> bytes:
    return json.dumps(
        {
            "push_key": record.push_key,
            "push_id": record.push_id,
            "time_ms": record.time_ms,
            "first_event_id": record.first_event_id,
            "deployed": record.deployed,
        },
        separators=(",", ":"),
    ).encode()


def _decode(data: bytes, revision: int) -> PushRecord:
    raw = json.loads(data)
    return PushRecord(
        push_key=raw["push_key"],
        push_id=raw["push_id"],
        time_ms=int(raw["time_ms"]),
        first_event_id=raw.get("first_event_id", ""),
        deployed=dict(raw.get("deployed") or {}),
        revision=revision,
    )


class KvPushRegistry:
    """Push records in the `conveyor_pushes` KV bucket (entries expire after the dedupe window)."""

    def __init__(self, kv: KeyValue) -> None:
        self.kv = kv

    @classmethod
    async def open(cls, js: JetStreamContext, *, ttl: float, replicas: int = 1) -> KvPushRegistry:
        return cls(await bus.ensure_pushes_bucket(js, ttl, replicas=replicas))

    async def claim(self, push_key: str, event_id: str, time_ms: int) -> PushRecord:
        key = ids.kv_key(push_key)
        for _ in range(5):
            record = PushRecord(push_key=push_key, push_id=new_id(), time_ms=time_ms, first_event_id=event_id)
            try:
                record.revision = await self.kv.create(key, _encode(record))
                return record
            except KeyWrongLastSequenceError:
                pass  # another event of this push was first
            try:
                entry = await self.kv.get(key)
            except KeyNotFoundError:
                continue  # expired between the two calls: try to create again
            assert entry.value is not None and entry.revision is not None
            return _decode(entry.value, entry.revision)
        raise Unavailable(f"could not claim push {push_key} in the pushes bucket")

    async def mark_deployed(self, record: PushRecord, deployed: dict[str, str]) -> None:
        key = ids.kv_key(record.push_key)
        current = record
        for _ in range(10):
            merged = PushRecord(
                push_key=current.push_key,
                push_id=current.push_id,
                time_ms=current.time_ms,
                first_event_id=current.first_event_id,
                deployed={**current.deployed, **{k: v for k, v in deployed.items() if k not in current.deployed}},
            )
            try:
                if current.revision:
                    await self.kv.update(key, _encode(merged), last=current.revision)
                else:
                    await self.kv.create(key, _encode(merged))
                return
            except KeyWrongLastSequenceError:
                pass  # a concurrent writer: merge with what it wrote
            try:
                entry = await self.kv.get(key)
                assert entry.value is not None and entry.revision is not None
                current = _decode(entry.value, entry.revision)
            except KeyNotFoundError:
                current = PushRecord(
                    push_key=record.push_key,
                    push_id=record.push_id,
                    time_ms=record.time_ms,
                    first_event_id=record.first_event_id,
                    deployed=dict(record.deployed),
                )
        raise Unavailable(f"could not record the runs of push {record.push_key} (too much contention)")


class RegistryEventsConsumer:
    """The I/O side of matching: the durable pull consumer on the registry events stream, feeding
    each message to `handle` (the edge) and settling it by the outcome. Matching starts only after
    the first pipeline load (`ready`). A failure raises: the app runs this under `bus.consume_forever`,
    which restarts it."""

    def __init__(
        self,
        js: JetStreamContext,
        handle: Callable[[Msg], Awaitable[bus.Outcome]],
        *,
        ack_wait: float = 30.0,
        batch: int = 50,
        max_deliver: int = bus.DEFAULT_MAX_DELIVER,
    ) -> None:
        self.js = js
        self.handle = handle
        self.spec = bus.ConsumerSpec(
            stream=bus.REGISTRY_EVENTS_STREAM,
            subject=bus.IMAGE_PUSHED_SUBJECT,
            durable=bus.TRIGGER_MATCHER_DURABLE,
            ack_wait=ack_wait,
            max_deliver=max_deliver,
            batch=batch,
        )

    def _count(self, outcome: bus.Outcome) -> None:
        shared_metrics.BUS_MESSAGES.labels(consumer=self.spec.durable, outcome=outcome.value).inc()

    async def run(self, stop: asyncio.Event, ready: asyncio.Event) -> None:
        """Wait for `ready` (pipelines loaded), then consume until `stop`; raises when the consumer fails."""
        if not ready.is_set():
            log.info("matcher waiting for the first pipeline load")
            waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(ready.wait())]
            try:
                await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiter in waiters:
                    waiter.cancel()
        if stop.is_set():
            return
        log.info("matcher consuming", extra={"durable": self.spec.durable})
        await bus.pull_loop(self.js, self.spec, self.handle, stop, on_outcome=self._count)
