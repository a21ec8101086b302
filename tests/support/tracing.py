"""Collecting spans in tests: an in-process tracer, an OTLP/HTTP receiver, and trace-shape checks.

- `memory_tracer()`: installs an SDK tracer whose finished spans land in memory (one process).
- `OtlpReceiver`: a real OTLP/HTTP endpoint (`POST /v1/traces`, protobuf) on loopback, for services
  running as separate processes with `CONVEYOR_TRACING=otlp`.
- `Span` is the one shape both give (ids in hex), and `tree_problems` says what keeps a set of spans
  from being one connected trace.
"""

from __future__ import annotations

import contextlib
import gzip
import http.server
import threading
import time
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from conveyor import tracing


@dataclass(frozen=True)
class Span:
    trace_id: str
    span_id: str
    parent_id: str
    name: str
    kind: str
    service: str
    attributes: dict[str, Any] = field(default_factory=dict)
    status: str = "UNSET"


def from_sdk(span: ReadableSpan) -> Span:
    context = span.get_span_context()
    assert context is not None
    return Span(
        trace_id=f"{context.trace_id:032x}",
        span_id=f"{context.span_id:016x}",
        parent_id=f"{span.parent.span_id:016x}" if span.parent else "",
        name=span.name,
        kind=span.kind.name,
        service=str(span.resource.attributes.get(SERVICE_NAME, "")),
        attributes=dict(span.attributes or {}),
        status=span.status.status_code.name,
    )


class MemorySpans:
    def __init__(self, exporter: InMemorySpanExporter) -> None:
        self.exporter = exporter

    def spans(self) -> list[Span]:
        return [from_sdk(span) for span in self.exporter.get_finished_spans()]

    def named(self, name: str) -> list[Span]:
        return [span for span in self.spans() if span.name == name]


@contextlib.contextmanager
def memory_tracer(service: str = "test") -> Iterator[MemorySpans]:
    """Tracing on in this process, every finished span kept in memory; off again afterwards."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: service}), shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.install(provider.get_tracer("test"))
    try:
        yield MemorySpans(exporter)
    finally:
        tracing.install(None)
        provider.shutdown()


def _value(value: common_pb2.AnyValue) -> Any:
    which = value.WhichOneof("value")
    if which == "array_value":
        return [_value(item) for item in value.array_value.values]
    return getattr(value, which) if which else None


_KINDS = {1: "INTERNAL", 2: "SERVER", 3: "CLIENT", 4: "PRODUCER", 5: "CONSUMER"}
_STATUS = {0: "UNSET", 1: "OK", 2: "ERROR"}


def decode_export(body: bytes) -> list[Span]:
    """The spans of one OTLP ExportTraceServiceRequest (protobuf)."""
    request = trace_service_pb2.ExportTraceServiceRequest()
    request.ParseFromString(body)
    spans = []
    for resource_spans in request.resource_spans:
        resource = {item.key: _value(item.value) for item in resource_spans.resource.attributes}
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                spans.append(
                    Span(
                        trace_id=span.trace_id.hex(),
                        span_id=span.span_id.hex(),
                        parent_id=span.parent_span_id.hex(),
                        name=span.name,
                        kind=_KINDS.get(span.kind, str(span.kind)),
                        service=str(resource.get(SERVICE_NAME, "")),
                        attributes={item.key: _value(item.value) for item in span.attributes},
                        status=_STATUS.get(span.status.code, str(span.status.code)),
                    )
                )
    return spans


class OtlpReceiver:
    """`POST /v1/traces` (OTLP/HTTP, protobuf, optionally gzip) on 127.0.0.1; keeps every span received."""

    def __init__(self) -> None:
        self._spans: list[Span] = []
        self._lock = threading.Lock()
        self.requests = 0
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                encoding = (self.headers.get("Content-Encoding") or "").lower()
                if encoding == "gzip":
                    body = gzip.decompress(body)
                elif encoding == "deflate":
                    body = zlib.decompress(body)
                if self.path != "/v1/traces":
                    self.send_error(404)
                    return
                spans = decode_export(body)
                with receiver._lock:
                    receiver._spans.extend(spans)
                    receiver.requests += 1
                answer = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self.server.serve_forever, name="otlp-receiver", daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1/traces"

    def spans(self) -> list[Span]:
        with self._lock:
            return list(self._spans)

    def __enter__(self) -> OtlpReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(5)


def tree_problems(spans: Iterable[Span]) -> list[str]:
    """Why `spans` are not one connected trace: other trace ids, parents never seen, not one root."""
    spans = list(spans)
    if not spans:
        return ["no spans"]
    problems = []
    traces = {span.trace_id for span in spans}
    if len(traces) != 1:
        problems.append(f"{len(traces)} trace ids: {sorted(traces)}")
    ids = {span.span_id for span in spans}
    for span in spans:
        if span.parent_id and span.parent_id not in ids:
            problems.append(f"{span.service} {span.name!r} has a parent {span.parent_id} that is not in the trace")
    roots = [f"{span.service} {span.name!r}" for span in spans if not span.parent_id]
    if len(roots) != 1:
        problems.append(f"{len(roots)} roots: {roots}")
    return problems


def ancestors(span: Span, spans: Iterable[Span]) -> list[Span]:
    """`span`'s parent, grandparent, ... up to the root (as far as `spans` hold them)."""
    by_id = {item.span_id: item for item in spans}
    chain = []
    current = by_id.get(span.parent_id)
    while current is not None:
        chain.append(current)
        current = by_id.get(current.parent_id)
    return chain


def wait_for_spans(receiver: OtlpReceiver, names: set[str], timeout: float = 30.0) -> list[Span]:
    """Every span received once spans of each of `names` have arrived (AssertionError after `timeout`)."""
    deadline = time.monotonic() + timeout
    while True:
        spans = receiver.spans()
        missing = names - {span.name for span in spans}
        if not missing:
            return spans
        if time.monotonic() > deadline:
            raise AssertionError(
                f"no span named {sorted(missing)} within {timeout:g}s; got {sorted({s.name for s in spans})}"
            )
        time.sleep(0.1)
