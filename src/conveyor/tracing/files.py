"""The `file` trace exporter: spans appended to a file, one JSON object per line.

Several processes may share the file: each batch is appended by one `write` on an O_APPEND
descriptor, so lines never interleave. The fields are OTLP's names, flattened (ids in hex,
attributes as a plain object), for `jq` and for tests.
"""

from __future__ import annotations

import json
import logging
import os
import pathlib
from collections.abc import Sequence
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

log = logging.getLogger(__name__)


def span_record(span: ReadableSpan) -> dict[str, Any]:
    """One finished span as the file holds it."""
    context = span.get_span_context()
    parent = span.parent
    return {
        "traceId": f"{context.trace_id:032x}" if context else "",
        "spanId": f"{context.span_id:016x}" if context else "",
        "parentSpanId": f"{parent.span_id:016x}" if parent else "",
        "name": span.name,
        "kind": span.kind.name,
        "service": span.resource.attributes.get("service.name", ""),
        "startTimeUnixNano": span.start_time,
        "endTimeUnixNano": span.end_time,
        "status": span.status.status_code.name,
        "statusMessage": span.status.description or "",
        "attributes": {key: _plain(value) for key, value in (span.attributes or {}).items()},
        "events": [
            {"name": event.name, "attributes": {k: _plain(v) for k, v in (event.attributes or {}).items()}}
            for event in span.events
        ],
    }


def _plain(value: object) -> object:
    return list(value) if isinstance(value, tuple) else value


class JsonLinesExporter(SpanExporter):
    def __init__(self, path: pathlib.Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._fd: int | None = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if self._fd is None:
            return SpanExportResult.FAILURE
        data = "".join(json.dumps(span_record(s), default=str, separators=(",", ":")) + "\n" for s in spans).encode()
        try:
            while data:  # a regular file takes it in one write; a short one (disk full) is finished
                data = data[os.write(self._fd, data) :]
        except OSError as exc:
            log.warning("could not write spans", extra={"path": str(self.path), "error": str(exc)})
            return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
