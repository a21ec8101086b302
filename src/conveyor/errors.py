"""Errors the use cases raise, and their one mapping to gRPC status codes.

Use cases raise these plain exceptions (no gRPC in the domain). `ErrorMappingInterceptor`
turns them into a gRPC status with `google.rpc` details (BadRequest field
violations, ErrorInfo); anything else becomes INTERNAL and is logged with its traceback.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

log = logging.getLogger(__name__)

ERROR_DOMAIN = "conveyor.dev"


@dataclass(frozen=True)
class FieldViolation:
    field: str
    description: str


class ConveyorError(Exception):
    """Base of the errors with a defined gRPC mapping."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL
    reason: str = "INTERNAL"

    def __init__(self, message: str, *, reason: str | None = None, metadata: dict[str, str] | None = None):
        super().__init__(message)
        self.message = message
        if reason:
            self.reason = reason
        self.metadata = metadata or {}


class InvalidArgument(ConveyorError):
    code = grpc.StatusCode.INVALID_ARGUMENT
    reason = "INVALID_ARGUMENT"

    def __init__(self, message: str, violations: list[FieldViolation] | None = None, **kw: Any):
        super().__init__(message, **kw)
        self.violations = violations or []

    @classmethod
    def from_violations(cls, violations: list[FieldViolation]) -> InvalidArgument:
        summary = "; ".join(f"{v.field}: {v.description}" for v in violations)
        return cls(f"invalid request: {summary}", violations)


class NotFound(ConveyorError):
    code = grpc.StatusCode.NOT_FOUND
    reason = "NOT_FOUND"


class AlreadyExists(ConveyorError):
    code = grpc.StatusCode.ALREADY_EXISTS
    reason = "ALREADY_EXISTS"


class Aborted(ConveyorError):
    """Optimistic concurrency failure (stale etag); the client should re-read and retry."""

    code = grpc.StatusCode.ABORTED
    reason = "STALE_ETAG"


class FailedPrecondition(ConveyorError):
    code = grpc.StatusCode.FAILED_PRECONDITION
    reason = "FAILED_PRECONDITION"


class Unavailable(ConveyorError):
    code = grpc.StatusCode.UNAVAILABLE
    reason = "UNAVAILABLE"


class PermissionDenied(ConveyorError):
    code = grpc.StatusCode.PERMISSION_DENIED
    reason = "PERMISSION_DENIED"


def to_status(error: ConveyorError) -> status_pb2.Status:
    details: list[any_pb2.Any] = []
    info = error_details_pb2.ErrorInfo(reason=error.reason, domain=ERROR_DOMAIN, metadata=error.metadata)
    packed = any_pb2.Any()
    packed.Pack(info)
    details.append(packed)
    if isinstance(error, InvalidArgument) and error.violations:
        bad_request = error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(field=v.field, description=v.description)
                for v in error.violations
            ]
        )
        packed = any_pb2.Any()
        packed.Pack(bad_request)
        details.append(packed)
    return status_pb2.Status(code=error.code.value[0], message=error.message, details=details)


def internal_status(message: str = "internal error; see the server log") -> status_pb2.Status:
    return status_pb2.Status(code=code_pb2.INTERNAL, message=message)


def field_violations(error: grpc.aio.AioRpcError | grpc.RpcError) -> list[FieldViolation]:
    """Client side: the BadRequest field violations carried by a failed call."""
    status = rpc_status.from_call(error)
    out: list[FieldViolation] = []
    if status is None:
        return out
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad_request = error_details_pb2.BadRequest()
            detail.Unpack(bad_request)
            out.extend(FieldViolation(v.field, v.description) for v in bad_request.field_violations)
    return out


async def _abort(context: grpc.aio.ServicerContext, exc: BaseException, method: str) -> None:
    if isinstance(exc, ConveyorError):
        status = to_status(exc)
        log.info("rpc failed", extra={"method": method, "code": exc.code.name, "error": exc.message})
    else:
        log.exception("rpc crashed", extra={"method": method}, exc_info=exc)
        status = internal_status()
    await context.abort_with_status(rpc_status.to_status(status))


class ErrorMappingInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]  # grpc has no stubs here
    """Maps ConveyorError (and unexpected exceptions) to gRPC statuses for every RPC."""

    def __init__(self, on_error: Callable[[str, str], None] | None = None) -> None:
        self._on_error = on_error

    def _count(self, method: str, exc: BaseException) -> None:
        if self._on_error is not None:
            code = exc.code.name if isinstance(exc, ConveyorError) else "INTERNAL"
            self._on_error(method, code)

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        method = handler_call_details.method
        interceptor = self

        if handler.unary_unary is not None:
            inner_uu = handler.unary_unary

            async def unary_unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
                try:
                    return await inner_uu(request, context)
                except (ConveyorError, Exception) as exc:
                    if _is_abort(exc):
                        raise
                    interceptor._count(method, exc)
                    await _abort(context, exc, method)

            return grpc.unary_unary_rpc_method_handler(
                unary_unary,
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream is not None:
            inner_us = handler.unary_stream

            async def unary_stream(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
                try:
                    async for item in inner_us(request, context):
                        yield item
                except (ConveyorError, Exception) as exc:
                    if _is_abort(exc):
                        raise
                    interceptor._count(method, exc)
                    await _abort(context, exc, method)

            return grpc.unary_stream_rpc_method_handler(
                unary_stream,
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return handler


def _is_abort(exc: BaseException) -> bool:
    # context.abort() raises an internal AbortError that must propagate untouched.
    return type(exc).__name__ in {"AbortError", "UsageError"} or isinstance(exc, grpc.aio.AbortError)
