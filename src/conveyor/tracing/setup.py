"""Turning tracing on from the settings: the OpenTelemetry SDK, a batching processor and an exporter.

`configure(service, settings.common.tracing)` once at start-up (each service's main does, next to
the logging set-up); nothing of the SDK is imported while `CONVEYOR_TRACING=off`. Spans are batched
(`OTEL_BSP_SCHEDULE_DELAY` and the other standard `OTEL_BSP_*` variables apply) and flushed when the
process exits; an export gives up after `EXPORT_TIMEOUT`, so a collector that is down delays the exit
that long at most. The resource's `service.name` is `service` unless `OTEL_SERVICE_NAME` says otherwise;
`OTEL_RESOURCE_ATTRIBUTES` adds to it, as in any OpenTelemetry SDK.

Exporters: `otlp` sends OTLP/HTTP protobuf to `CONVEYOR_OTLP_ENDPOINT` (a collector, Jaeger, Tempo...);
`file` appends one JSON object per span to `CONVEYOR_TRACING_FILE`, several processes sharing one
file safely (each batch is one append).
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
from typing import TYPE_CHECKING

from conveyor import tracing
from conveyor.settings import TracingSettings

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter

log = logging.getLogger(__name__)

EXPORT_TIMEOUT = 3.0


class _Installed:
    provider: TracerProvider | None = None
    lock = threading.Lock()


def configure(service: str, settings: TracingSettings) -> bool:
    """Install the tracer `settings` ask for; False (and nothing installed) when tracing is off."""
    if settings.exporter == "off":
        return False
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    exporter = _exporter(settings)
    # The standard variable wins, as in any OpenTelemetry SDK (Resource.create alone would prefer ours).
    name = os.environ.get("OTEL_SERVICE_NAME", "").strip() or service
    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: name}), shutdown_on_exit=False)
    provider.add_span_processor(BatchSpanProcessor(exporter))
    with _Installed.lock:
        previous, _Installed.provider = _Installed.provider, provider
    if previous is not None:
        previous.shutdown()
    else:
        atexit.register(shutdown)
    tracing.install(provider.get_tracer("conveyor"))
    target = settings.otlp_endpoint if settings.exporter == "otlp" else str(settings.file)
    log.info("tracing on", extra={"exporter": settings.exporter, "target": target})
    return True


def shutdown() -> None:
    """Flush the spans still batched and turn tracing off (again at exit: a no-op)."""
    with _Installed.lock:
        provider, _Installed.provider = _Installed.provider, None
    tracing.install(None)
    if provider is not None:
        provider.shutdown()


def _exporter(settings: TracingSettings) -> SpanExporter:
    if settings.exporter == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        # Each export (retries included) gives up after this: a collector that is down delays the
        # process's exit flush this long at most, not the SDK's 10 s. The standard variables still win.
        overridden = any(
            os.environ.get(name) for name in ("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "OTEL_EXPORTER_OTLP_TIMEOUT")
        )
        return OTLPSpanExporter(endpoint=settings.otlp_endpoint, timeout=None if overridden else EXPORT_TIMEOUT)
    if settings.exporter == "file":
        from conveyor.tracing.files import JsonLinesExporter

        return JsonLinesExporter(settings.file)
    raise ValueError(f"unknown trace exporter {settings.exporter!r}")
