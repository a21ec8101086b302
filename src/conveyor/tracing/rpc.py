"""Trace context in gRPC metadata: client interceptors inject `traceparent`, the server's interceptor extracts it.

A service attaches `client_interceptors()` to the channels it opens to its siblings
(`grpc.aio.insecure_channel(address, interceptors=client_interceptors())`); `GrpcServer` installs
`ServerTracingInterceptor` when tracing is on. Both are absent while tracing is off.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractContextManager
from typing import Any

import grpc

from conveyor import tracing
from conveyor.tracing import Span, SpanKind

# Health checks and reflection (probes, grpcurl) would drown the traces that matter.
UNTRACED_PREFIX = "/grpc."


def _rpc_attributes(method: str) -> dict[str, str]:
    """`/conveyor.v1.RunService/GetRun` -> rpc.service / rpc.method (OpenTelemetry's RPC conventions)."""
    service, _, name = method.lstrip("/").partition("/")
    return {"rpc.system": "grpc", "rpc.service": service, "rpc.method": name}


def _status_code(code: grpc.StatusCode | None) -> int:
    return int(code.value[0]) if code is not None else 0


async def _finish(span: Span, call: Any) -> None:
    """End a client span with its call's status (the call is done: `code()` does not wait)."""
    try:
        code = await call.code()
    except Exception:  # cancelled before it started: no status to read
        code = grpc.StatusCode.CANCELLED
    span.set_attribute("rpc.grpc.status_code", _status_code(code))
    if code is not grpc.StatusCode.OK:
        tracing.fail(span, code.name if code is not None else "UNKNOWN")
    span.end()


# The tasks ending client spans, held until done (the loop keeps only weak references).
_finishing: set[asyncio.Task[None]] = set()


def _end_when_done(span: Span, call: Any) -> None:
    def done(finished: Any) -> None:
        task = asyncio.get_running_loop().create_task(_finish(span, finished))
        _finishing.add(task)
        task.add_done_callback(_finishing.discard)

    call.add_done_callback(done)


class _ClientTracing:
    """A CLIENT span per call, ended when the call is; its context travels in the call's metadata."""

    async def _intercept(
        self, continuation: Callable[..., Awaitable[Any]], details: grpc.aio.ClientCallDetails, request: Any
    ) -> Any:
        method = details.method.decode() if isinstance(details.method, bytes) else details.method
        span = tracing.start_span(method.lstrip("/"), kind=SpanKind.CLIENT, attributes=_rpc_attributes(method))
        carrier: dict[str, str] = {}
        tracing.inject(carrier, of=span)
        traced = grpc.aio.ClientCallDetails(
            details.method,
            details.timeout,
            [*(details.metadata or ()), *carrier.items()],
            details.credentials,
            details.wait_for_ready,
        )
        try:
            call = await continuation(traced, request)
        except BaseException as exc:
            span.record_exception(exc)
            tracing.fail(span, type(exc).__name__)
            span.end()
            raise
        _end_when_done(span, call)
        return call


class _UnaryUnary(_ClientTracing, grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[misc]  # grpc: no stubs
    async def intercept_unary_unary(
        self, continuation: Callable[..., Awaitable[Any]], client_call_details: grpc.aio.ClientCallDetails, request: Any
    ) -> Any:
        return await self._intercept(continuation, client_call_details, request)


class _UnaryStream(_ClientTracing, grpc.aio.UnaryStreamClientInterceptor):  # type: ignore[misc]  # grpc: no stubs
    async def intercept_unary_stream(
        self, continuation: Callable[..., Awaitable[Any]], client_call_details: grpc.aio.ClientCallDetails, request: Any
    ) -> Any:
        return await self._intercept(continuation, client_call_details, request)


def client_interceptors() -> list[grpc.aio.ClientInterceptor]:
    """For `grpc.aio.insecure_channel(..., interceptors=...)`: none while tracing is off."""
    if not tracing.enabled():
        return []
    return [_UnaryUnary(), _UnaryStream()]


def server_interceptors() -> list[grpc.aio.ServerInterceptor]:
    """For `grpc.aio.server(interceptors=...)`, outermost first: none while tracing is off."""
    return [ServerTracingInterceptor()] if tracing.enabled() else []


class ServerTracingInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]  # grpc has no stubs here
    """A SERVER span per RPC, the child of the caller's span when its metadata carries `traceparent`."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        method: str = handler_call_details.method
        if handler is None or method.startswith(UNTRACED_PREFIX):
            return handler
        metadata = {
            key: value for key, value in (handler_call_details.invocation_metadata or ()) if isinstance(value, str)
        }
        name = method.lstrip("/")
        attributes = _rpc_attributes(method)

        def served() -> AbstractContextManager[Span]:
            return tracing.span(name, kind=SpanKind.SERVER, attributes=attributes, parent=tracing.extract(metadata))

        if handler.unary_unary is not None:
            inner_uu = handler.unary_unary

            async def unary_unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
                with served() as span:
                    try:
                        return await inner_uu(request, context)
                    finally:
                        _server_status(span, context)

            return grpc.unary_unary_rpc_method_handler(
                unary_unary,
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream is not None:
            inner_us = handler.unary_stream

            async def unary_stream(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
                with served() as span:
                    try:
                        async for item in inner_us(request, context):
                            yield item
                    finally:
                        _server_status(span, context)

            return grpc.unary_stream_rpc_method_handler(
                unary_stream,
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return handler


def _server_status(span: Span, context: grpc.aio.ServicerContext) -> None:
    code = context.code()  # None until the handler sets one (or aborts): OK
    span.set_attribute("rpc.grpc.status_code", _status_code(code))
    if code is not None and code is not grpc.StatusCode.OK:
        tracing.fail(span, code.name)
