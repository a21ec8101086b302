"""OpenTelemetry tracing across the services: one trace per push, from the webhook to the persisted run.

    webhook (trigger) -> publish conveyor.registry.pushed -> process (matcher) -> match -> request run
      -> publish conveyor.deploy.requested -> process (deployer) -> deploy -> patch, verify
      -> publish conveyor.runs.events -> process (config) -> persist

Context crosses processes as W3C trace context (`traceparent`, `tracestate`): in NATS message headers
(`conveyor.bus.publish` injects it, the consumers extract it) and in gRPC metadata (the client
interceptors of `conveyor.tracing.rpc` inject it, the server's interceptor extracts it). Spans of a
run carry `conveyor.run` (the full resource name `pipelines/{pipeline}/runs/{run}`) and
`conveyor.pipeline`.

Off by default (`CONVEYOR_TRACING=off`): nothing is configured, `span()` hands back one shared
non-recording span without touching the SDK, `inject` adds no header and `extract` reads none.
`conveyor.tracing.setup.configure` turns it on. This module needs only the OpenTelemetry API, so
use cases may use it; the gRPC interceptors (`rpc`) and the SDK set-up (`setup`) live beside it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, MutableMapping
from contextlib import AbstractContextManager
from typing import Any

from opentelemetry import context as otel_context, trace
from opentelemetry.context import Context
from opentelemetry.propagators.textmap import TextMapPropagator
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.types import AttributeValue

__all__ = [
    "Context",
    "Span",
    "SpanKind",
    "attached",
    "consuming",
    "current",
    "enabled",
    "extract",
    "fail",
    "inject",
    "publishing",
    "run_attributes",
    "span",
    "start_span",
]

RUN_ATTRIBUTE = "conveyor.run"
PIPELINE_ATTRIBUTE = "conveyor.pipeline"

Attributes = Mapping[str, AttributeValue]

# W3C trace context only: what every OpenTelemetry SDK and collector speaks by default.
PROPAGATOR: TextMapPropagator = TraceContextTextMapPropagator()


class _Active:
    # Set by `setup.configure`, cleared by `setup.shutdown`; None means tracing is off.
    tracer: Tracer | None = None


_OFF: AbstractContextManager[Span] = contextlib.nullcontext(trace.INVALID_SPAN)
_NOTHING: AbstractContextManager[None] = contextlib.nullcontext()


def enabled() -> bool:
    return _Active.tracer is not None


def install(tracer: Tracer | None) -> None:
    """The tracer spans come from (None: off). Called by `setup`; tests may install their own."""
    _Active.tracer = tracer


def span(
    name: str,
    *,
    kind: SpanKind = SpanKind.INTERNAL,
    attributes: Attributes | None = None,
    parent: Context | None = None,
) -> AbstractContextManager[Span]:
    """A span current inside the block: a child of `parent`, else of the current span.

    An exception leaving the block is recorded on the span and marks it failed.
    """
    tracer = _Active.tracer
    if tracer is None:
        return _OFF
    return tracer.start_as_current_span(name, context=parent, kind=kind, attributes=attributes)


def start_span(name: str, *, kind: SpanKind, attributes: Attributes | None = None) -> Span:
    """A span that is not made current, ended by the caller (e.g. when a gRPC call completes)."""
    tracer = _Active.tracer
    if tracer is None:
        return trace.INVALID_SPAN
    return tracer.start_span(name, kind=kind, attributes=attributes)


def run_attributes(run: str) -> dict[str, AttributeValue]:
    """`conveyor.run` (the full name) and `conveyor.pipeline` (its id) of `pipelines/{p}/runs/{r}`."""
    parts = run.split("/")
    attributes: dict[str, AttributeValue] = {RUN_ATTRIBUTE: run}
    if len(parts) >= 2 and parts[0] == "pipelines" and parts[1]:
        attributes[PIPELINE_ATTRIBUTE] = parts[1]
    return attributes


def fail(current_span: Span, description: str) -> None:
    """Mark a span failed without an exception (e.g. a message handed back for redelivery)."""
    current_span.set_status(Status(StatusCode.ERROR, description))


# --- propagation ---------------------------------------------------------------------------------


def inject(carrier: MutableMapping[str, str], of: Span | None = None) -> None:
    """Add the `traceparent` (and `tracestate`) of span `of` (default: the current one) to outgoing
    headers or metadata."""
    if _Active.tracer is not None:
        PROPAGATOR.inject(carrier, context=None if of is None else trace.set_span_in_context(of))


def extract(carrier: Mapping[str, str] | None) -> Context | None:
    """The remote parent carried by incoming headers; None when off or when they carry none."""
    if _Active.tracer is None or not carrier:
        return None
    return PROPAGATOR.extract(carrier)


def current() -> Context | None:
    """The current context, to carry work across a queue or into a task created elsewhere."""
    return otel_context.get_current() if _Active.tracer is not None else None


def attached(saved: Context | None) -> AbstractContextManager[None]:
    """Make a context from `current()` current again inside the block (tasks created there inherit it)."""
    if saved is None:
        return _NOTHING
    return _attach(saved)


@contextlib.contextmanager
def _attach(saved: Context) -> Iterator[None]:
    token = otel_context.attach(saved)
    try:
        yield
    finally:
        otel_context.detach(token)


# --- messaging (the NATS side) -------------------------------------------------------------------


def start_consuming(subject: str, headers: Mapping[str, str] | None, consumer: str) -> Span:
    """Like `consuming`, but not made current and ended by the caller (`trace.use_span(span, end_on_exit=True)`):
    for a batch handled at once, where each message's span must exist while the whole batch is handled."""
    tracer = _Active.tracer
    if tracer is None:
        return trace.INVALID_SPAN
    return tracer.start_span(
        f"process {subject}",
        context=extract(headers),
        kind=SpanKind.CONSUMER,
        attributes={
            "messaging.system": "nats",
            "messaging.operation.type": "process",
            "messaging.destination.name": subject,
            "messaging.consumer.group.name": consumer,
        },
    )


def context_of(of: Span) -> Context | None:
    """A context whose current span is `of` (None when tracing is off), e.g. as the parent of later spans."""
    if _Active.tracer is None:
        return None
    return trace.set_span_in_context(of)


def message_attributes(message: Any) -> dict[str, AttributeValue]:
    """The run attributes of a bus message that names one (DeployRequested, RunEvent)."""
    descriptor = getattr(message, "DESCRIPTOR", None)
    if descriptor is None or "run" not in descriptor.fields_by_name:
        return {}
    run = getattr(message, "run", "")
    return run_attributes(run) if isinstance(run, str) and run else {}


def publishing(subject: str, msg_id: str, attributes: Attributes | None = None) -> AbstractContextManager[Span]:
    """The PRODUCER span of one publish; `inject` inside it so consumers continue from it."""
    if _Active.tracer is None:
        return _OFF
    return span(
        f"publish {subject}",
        kind=SpanKind.PRODUCER,
        attributes={
            "messaging.system": "nats",
            "messaging.operation.type": "send",
            "messaging.destination.name": subject,
            "messaging.message.id": msg_id,
            **(attributes or {}),
        },
    )


def consuming(subject: str, headers: Mapping[str, str] | None, consumer: str) -> AbstractContextManager[Span]:
    """The CONSUMER span handling one delivered message: a child of the publish that stored it."""
    if _Active.tracer is None:
        return _OFF
    return span(
        f"process {subject}",
        kind=SpanKind.CONSUMER,
        parent=extract(headers),
        attributes={
            "messaging.system": "nats",
            "messaging.operation.type": "process",
            "messaging.destination.name": subject,
            "messaging.consumer.group.name": consumer,
        },
    )
