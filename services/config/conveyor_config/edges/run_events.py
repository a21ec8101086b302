"""The JetStream durable consumer that persists RunEvents (from the trigger and the deployer)."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from google.protobuf.message import DecodeError
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from conveyor import bus, metrics as shared_metrics
from conveyor.errors import InvalidArgument
from conveyor.v1 import bus_pb2
from conveyor_config import metrics
from conveyor_config.usecases.runs import RunUseCases

log = logging.getLogger(__name__)

RUN_EVENTS_CONSUMER = bus.ConsumerSpec(
    stream=bus.RUN_EVENTS_STREAM,
    subject=bus.RUN_EVENTS_SUBJECT,
    durable=bus.CONFIG_RUN_EVENTS_DURABLE,
)


class RunEventConsumer:
    def __init__(self, runs: RunUseCases, spec: bus.ConsumerSpec = RUN_EVENTS_CONSUMER) -> None:
        self.runs = runs
        self.spec = spec
        self._idle = asyncio.Event()
        self._idle.set()

    async def handle(self, msg: Msg) -> bus.Outcome:
        """ACK once stored (or known duplicate / dropped); TERM what can never be stored.

        Database errors propagate: `pull_loop` naks the message and it comes back later.
        """
        self._idle.clear()
        try:
            return await self._handle(msg)
        finally:
            self._idle.set()

    async def _handle(self, msg: Msg) -> bus.Outcome:
        try:
            event = bus.decode(bus_pb2.RunEvent, msg.data)
        except DecodeError as exc:
            return self._malformed("undecodable", f"not a RunEvent: {exc}")
        fallback_id = (msg.headers or {}).get(bus.MSG_ID_HEADER, "")
        try:
            outcome = await self.runs.record_event(event, fallback_id)
        except InvalidArgument as exc:
            return self._malformed("invalid", exc.message)
        metrics.RUN_EVENTS.labels(outcome=outcome.value).inc()
        return bus.Outcome.ACK

    def _malformed(self, reason: str, detail: str) -> bus.Outcome:
        metrics.RUN_EVENTS.labels(outcome="malformed").inc()
        shared_metrics.BAD_INPUT.labels(source="run_events", reason=reason).inc()
        log.warning("malformed RunEvent dropped", extra={"reason": reason, "error": detail})
        return bus.Outcome.TERM

    def _count(self, outcome: bus.Outcome) -> None:
        shared_metrics.BUS_MESSAGES.labels(consumer=self.spec.durable, outcome=outcome.value).inc()

    async def run(self, js: JetStreamContext, stop: asyncio.Event, *, retry_delay: float = 1.0) -> None:
        """Consume until `stop` is set; survives NATS outages (the consumer is re-bound)."""
        while not stop.is_set():
            try:
                await bus.pull_loop(js, self.spec, self.handle, stop, on_outcome=self._count)
            except Exception as exc:
                log.warning("run event consumer interrupted; restarting", extra={"error": str(exc)})
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), retry_delay)

    async def finish(self, task: asyncio.Task[None], timeout: float) -> None:
        """After `stop` is set: let the message in hand be stored, then end the loop without
        waiting for an idle fetch to time out. An unacked message is redelivered and deduplicated."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), timeout)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
