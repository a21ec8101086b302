"""The HTTP edge: registry webhooks in, JSON answers out.

`POST /webhooks/{format}`:
- 200 `{"stored": [...], "duplicates": [...], "ignored": [...]}` only once every push of the
  delivery is stored in JetStream (ignored events, e.g. pulls, are listed, not errors);
- 401 missing/wrong credentials (nothing is read further, nothing published);
- 413 body over the limit; 400 malformed JSON, unknown shape, or a push whose registry
  host or repository cannot be determined (the message says what is missing);
- 404 unknown format; 503 (with Retry-After) when the bus cannot store the events, so
  the registry retries.
Every rejection is counted by format and reason. Any exception in a handler becomes a
counted 500 with no detail; the server keeps serving.

`GET /healthz`: 200 while serving and connected to NATS, else 503. `GET /metrics`: Prometheus.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Callable

from aiohttp import web
from aiohttp.typedefs import Handler
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from conveyor import refs, tracing
from conveyor.errors import Unavailable
from conveyor_trigger import metrics
from conveyor_trigger.domain.formats import FORMATS, PayloadError, UnknownFormat, WebhookRequest
from conveyor_trigger.domain.webhook_auth import Authenticator, Unauthorized
from conveyor_trigger.usecases.ingest import ingest_webhook
from conveyor_trigger.usecases.ports import DigestResolver, EventPublisher

log = logging.getLogger(__name__)

CHUNK = 64 * 1024
# A client trickling its body must not hold a connection (and memory) forever.
BODY_TIMEOUT = 30.0
WEBHOOK_ROUTE = "/webhooks/{format}"
WEBHOOK_SPAN = f"POST {WEBHOOK_ROUTE}"


class WebhookReceiver:
    def __init__(
        self,
        *,
        authenticator: Authenticator,
        publisher: EventPublisher,
        max_body: int,
        bus_connected: Callable[[], bool],
        resolver: DigestResolver | None = None,
        digest_timeout: float = 10.0,
    ) -> None:
        self.authenticator = authenticator
        self.publisher = publisher
        self.resolver = resolver
        self.digest_timeout = digest_timeout
        self.max_body = max_body
        self.bus_connected = bus_connected
        self.serving = True

    def app(self) -> web.Application:
        app = web.Application(client_max_size=self.max_body, middlewares=[self._never_crash])
        app.router.add_post(WEBHOOK_ROUTE, self.webhook)
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/metrics", self.metrics)
        return app

    @web.middleware
    async def _never_crash(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except web.HTTPException:
            raise
        except Exception:
            log.exception("webhook handler failed", extra={"path": request.path})
            metrics.WEBHOOK_REJECTED.labels(format=_format_label(request), reason="internal").inc()
            return _error(500, "internal", "internal error; see the trigger's log")

    async def healthz(self, _request: web.Request) -> web.Response:
        if not self.serving:
            return web.json_response({"status": "stopping"}, status=503)
        if not self.bus_connected():
            return web.json_response({"status": "degraded", "nats": "disconnected"}, status=503)
        return web.json_response({"status": "ok"})

    async def metrics(self, _request: web.Request) -> web.Response:
        response = web.Response(body=generate_latest())
        response.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return response

    async def webhook(self, request: web.Request) -> web.Response:
        format_name = request.match_info["format"]
        label = _format_label(request)
        # The root of a push's trace (or the child of a caller that sent `traceparent`).
        with tracing.span(
            WEBHOOK_SPAN,
            kind=tracing.SpanKind.SERVER,
            parent=tracing.extract(request.headers),
            attributes={"http.request.method": "POST", "http.route": WEBHOOK_ROUTE, "conveyor.webhook.format": label},
        ) as span:
            response = await self._webhook(request, format_name, label)
            span.set_attribute("http.response.status_code", response.status)
            if response.status >= 500:
                tracing.fail(span, response.reason or str(response.status))
        metrics.WEBHOOK_REQUESTS.labels(format=label, code=str(response.status)).inc()
        return response

    async def _webhook(self, request: web.Request, format_name: str, label: str) -> web.Response:
        def reject(status: int, reason: str, message: str, **headers: str) -> web.Response:
            metrics.WEBHOOK_REJECTED.labels(format=label, reason=reason).inc()
            log.info(
                "webhook rejected",
                extra={"format": label, "status": status, "reason": reason, "error": message, "peer": request.remote},
            )
            return _error(status, reason, message, headers)

        if format_name not in FORMATS:
            return reject(404, "unknown_format", str(UnknownFormat(format_name)))
        if not self.serving:
            return reject(503, "stopping", "the trigger is shutting down; retry", **{"Retry-After": "5"})

        if request.content_length is not None and request.content_length > self.max_body:
            return reject(413, "too_large", f"the body is larger than the {self.max_body} byte limit")
        body = bytearray()
        try:
            async with asyncio.timeout(BODY_TIMEOUT):
                async for chunk in request.content.iter_chunked(CHUNK):
                    body += chunk
                    if len(body) > self.max_body:
                        return reject(413, "too_large", f"the body is larger than the {self.max_body} byte limit")
        except TimeoutError:
            return reject(408, "body_timeout", f"the request body did not arrive within {BODY_TIMEOUT:g}s")
        except Exception as exc:  # client went away, broken chunked/compressed encoding
            return reject(400, "unreadable_body", f"the request body could not be read: {exc}")

        headers = {name.lower(): value for name, value in request.headers.items()}
        query = {name: value for name, value in request.query.items()}
        try:
            source = self.authenticator.authenticate(format_name, headers, query, bytes(body))
        except Unauthorized as exc:
            return reject(401, "unauthorized", str(exc), **{"WWW-Authenticate": 'Bearer realm="conveyor-webhooks"'})

        default_registry = source.registry
        if query.get("registry"):
            default_registry = refs.normalize_registry(query["registry"])
            if not refs.is_valid_registry(default_registry):
                return reject(400, "bad_query", f"registry={query['registry']!r} is not a registry host[:port]")

        webhook_request = WebhookRequest(
            body=bytes(body),
            headers=headers,
            query=query,
            default_registry=default_registry,
            origin=source.origin,
            received_at=dt.datetime.now(dt.UTC),
        )
        try:
            # Parses first (a bad payload is a 400 even while the bus is down), then stores.
            result = await ingest_webhook(
                format_name,
                webhook_request,
                self.publisher,
                resolver=self.resolver,
                digest_timeout=self.digest_timeout,
            )
        except PayloadError as exc:
            return reject(400, exc.reason, exc.message)
        except Unavailable as exc:
            return reject(503, "bus_unavailable", exc.message, **{"Retry-After": "5"})

        for outcome, items in (
            ("stored", result.stored),
            ("duplicate", result.duplicates),
            ("ignored", result.ignored),
        ):
            if items:
                metrics.WEBHOOK_EVENTS.labels(format=label, outcome=outcome).inc(len(items))
        log.info(
            "webhook accepted",
            extra={
                "format": label,
                "source": source.name,
                "stored": len(result.stored),
                "duplicates": len(result.duplicates),
                "ignored": len(result.ignored),
                "event_ids": ",".join(result.stored + result.duplicates)[:2000],
            },
        )
        return web.json_response(
            {"stored": result.stored, "duplicates": result.duplicates, "ignored": result.ignored}, status=200
        )


def _format_label(request: web.Request) -> str:
    # Unknown formats share one label so a scanner cannot blow up metric cardinality.
    name = request.match_info.get("format", "")
    return name if name in FORMATS else "unknown"


def _error(status: int, reason: str, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": message, "reason": reason}, status=status, headers=headers or None)
