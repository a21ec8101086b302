"""The JetStream durable consumer that persists RunEvents (from the trigger and the deployer)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, NoReturn

from google.protobuf.message import DecodeError
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from conveyor import bus, dead_letters, metrics as shared_metrics
from conveyor.v1 import bus_pb2
from conveyor_config import metrics
from conveyor_config.domain.run_events import check_run_event
from conveyor_config.usecases.runs import RunUseCases

if TYPE_CHECKING:
    from opentelemetry.context import Context

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

    async def handle_batch(self, messages: list[Msg]) -> list[bus.Outcome | Exception]:
        """The fetched batch: each message checked alone, then all valid events stored in one transaction."""
        self._idle.clear()
        try:
            results: list[bus.Outcome | Exception] = []
            valid: list[tuple[int, bus_pb2.RunEvent, str, Context | None]] = []
            for msg in messages:
                try:
                    event, event_id = self._checked(msg)
                except bus.Unprocessable as exc:
                    results.append(exc)
                    continue
                valid.append((len(results), event, event_id, bus.batch_trace(msg)))
                results.append(bus.Outcome.ACK)
            if valid:
                outcomes = await self.runs.record_events(
                    [(event, event_id, trace) for _, event, event_id, trace in valid]
                )
                for (index, _, _, _), outcome in zip(valid, outcomes, strict=True):
                    if isinstance(outcome, Exception):
                        results[index] = outcome
                    else:
                        metrics.RUN_EVENTS.labels(outcome=outcome.value).inc()
            return results
        finally:
            self._idle.set()

    async def _handle(self, msg: Msg) -> bus.Outcome:
        event, event_id = self._checked(msg)
        outcome = await self.runs.record_event(event, event_id)
        metrics.RUN_EVENTS.labels(outcome=outcome.value).inc()
        return bus.Outcome.ACK

    def _checked(self, msg: Msg) -> tuple[bus_pb2.RunEvent, str]:
        """The event and its id; raises `bus.Unprocessable` (counted, logged) for what can never be stored."""
        try:
            event = bus.decode(bus_pb2.RunEvent, msg.data)
        except DecodeError as exc:
            self._malformed("undecodable", f"not a RunEvent: {exc}")
        event_id = event.event_id or (msg.headers or {}).get(bus.MSG_ID_HEADER, "")
        # Before storage: what fails here would fail there on every redelivery, or be stored wrong.
        if problems := check_run_event(event, event_id):
            detail = "; ".join(f"{p.violation.field}: {p.violation.description}" for p in problems)
            self._malformed(problems[0].reason, detail)
        return event, event_id

    def _malformed(self, reason: str, detail: str) -> NoReturn:
        metrics.RUN_EVENTS.labels(outcome="malformed").inc()
        shared_metrics.BAD_INPUT.labels(source="run_events", reason=reason).inc()
        log.warning("malformed RunEvent dead-lettered", extra={"reason": reason, "error": detail})
        # TERM, with why, in the dead letter (whose reasons are a closed set: the detail names this one).
        dead = dead_letters.UNDECODABLE if reason == dead_letters.UNDECODABLE else dead_letters.INVALID
        raise bus.Unprocessable(detail if dead == reason else f"{reason}: {detail}", reason=dead)

    def _count(self, outcome: bus.Outcome) -> None:
        shared_metrics.BUS_MESSAGES.labels(consumer=self.spec.durable, outcome=outcome.value).inc()

    async def consume(self, js: JetStreamContext, stop: asyncio.Event) -> None:
        """Consume until `stop` is set. A crash (the consumer cannot be bound) propagates:
        app.py runs this under `bus.consume_forever`, which restarts it and reports health."""
        await bus.pull_loop(js, self.spec, self.handle, stop, on_outcome=self._count, handle_batch=self.handle_batch)

    async def finish(self, task: asyncio.Task[None], timeout: float) -> None:
        """After `stop` is set: let the message in hand be stored, then end the loop without
        waiting for an idle fetch to time out. An unacked message is redelivered and deduplicated."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), timeout)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
