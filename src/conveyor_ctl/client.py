"""gRPC connections of conveyorctl: one lazily-opened channel per service, errors labelled.

A failed call raises `CallError`, which knows which service (and address) it was talking
to, so the one-line error can say "cannot reach the config service at ..." instead of a
bare UNAVAILABLE.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf import json_format
from google.protobuf.message import Message
from grpc_status import rpc_status

from conveyor import errors
from conveyor.v1 import (
    event_service_pb2_grpc,
    pipeline_service_pb2_grpc,
    run_service_pb2_grpc,
    target_service_pb2_grpc,
)


@dataclass(frozen=True)
class Endpoint:
    """A service conveyorctl talks to: its label, address flag and env var, and default address."""

    label: str
    flag: str
    env: str
    default: str


CONFIG = Endpoint("config", "--config-addr", "CONVEYOR_CONFIG_ADDR", "127.0.0.1:50051")
TRIGGER = Endpoint("trigger", "--trigger-addr", "CONVEYOR_TRIGGER_ADDR", "127.0.0.1:50052")
DEPLOYER = Endpoint("deployer", "--deployer-addr", "CONVEYOR_DEPLOYER_ADDR", "127.0.0.1:50053")
ENDPOINTS = (CONFIG, TRIGGER, DEPLOYER)


def resolve_address(endpoint: Endpoint, flag_value: str | None, environ: Mapping[str, str]) -> str:
    """Flag, else environment, else the default."""
    if flag_value:
        return flag_value
    from_env = environ.get(endpoint.env, "").strip()
    return from_env or endpoint.default


class CallError(Exception):
    """A gRPC call failed; carries the status and which service it was."""

    def __init__(self, endpoint: Endpoint, address: str, error: grpc.RpcError) -> None:
        super().__init__(str(error))
        self.endpoint = endpoint
        self.address = address
        self.error = error
        self.code: grpc.StatusCode = error.code() if hasattr(error, "code") else grpc.StatusCode.UNKNOWN
        self.details: str = (error.details() if hasattr(error, "details") else "") or ""

    @property
    def answered(self) -> bool:
        """Whether the service itself returned this status (with details), rather than gRPC failing to reach it."""
        try:
            metadata = self.error.trailing_metadata() or ()
        except Exception:
            return False
        return any(key == "grpc-status-details-bin" for key, _ in metadata)

    def violations(self) -> list[errors.FieldViolation]:
        try:
            return errors.field_violations(self.error)
        except Exception:  # malformed details must not hide the error itself
            return []

    def status_details(self) -> list[dict[str, Any]]:
        """The google.rpc.Status details (BadRequest, ErrorInfo, ...) in their JSON shape, `@type` first."""
        try:
            status = rpc_status.from_call(self.error)
            # Through JSON text: MessageToDict gives an Any as an OrderedDict, which YAML cannot dump safely.
            return [json.loads(json_format.MessageToJson(detail)) for detail in status.details] if status else []
        except Exception:  # malformed details must not hide the error itself
            return []


class ServiceClient:
    """Calls one service's RPCs with a deadline; wraps failures in CallError."""

    def __init__(self, endpoint: Endpoint, address: str, stub_factory: Callable[[grpc.Channel], Any], timeout: float):
        self.endpoint = endpoint
        self.address = address
        self.timeout = timeout
        self._stub_factory = stub_factory
        self._channel: grpc.Channel | None = None
        self._stub: Any = None

    def _get_stub(self) -> Any:
        if self._stub is None:
            self._channel = grpc.insecure_channel(self.address)
            self._stub = self._stub_factory(self._channel)
        return self._stub

    def call(self, method: str, request: Message) -> Any:
        try:
            return getattr(self._get_stub(), method)(request, timeout=self.timeout)
        except grpc.RpcError as exc:
            raise CallError(self.endpoint, self.address, exc) from None

    def stream(self, method: str, request: Message, *, deadline: bool = True) -> Iterator[Any]:
        """A server stream; without `deadline` it may run as long as the server keeps it open."""
        call = getattr(self._get_stub(), method)(request, timeout=self.timeout if deadline else None)
        try:
            yield from call
        except grpc.RpcError as exc:
            raise CallError(self.endpoint, self.address, exc) from None
        finally:
            call.cancel()

    def close(self) -> None:
        if self._channel is not None:
            self._channel.close()
            self._channel = None
            self._stub = None


class Clients:
    """The four APIs conveyorctl uses, on three services."""

    def __init__(self, addresses: Mapping[str, str], timeout: float) -> None:
        self.pipelines = ServiceClient(
            CONFIG, addresses[CONFIG.label], pipeline_service_pb2_grpc.PipelineServiceStub, timeout
        )
        self.runs = ServiceClient(CONFIG, addresses[CONFIG.label], run_service_pb2_grpc.RunServiceStub, timeout)
        self.events = ServiceClient(TRIGGER, addresses[TRIGGER.label], event_service_pb2_grpc.EventServiceStub, timeout)
        self.targets = ServiceClient(
            DEPLOYER, addresses[DEPLOYER.label], target_service_pb2_grpc.TargetServiceStub, timeout
        )

    def close(self) -> None:
        for client in (self.pipelines, self.runs, self.events, self.targets):
            client.close()
