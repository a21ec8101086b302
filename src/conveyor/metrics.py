"""Prometheus metrics shared by the services, and the /metrics endpoint."""

from __future__ import annotations

from prometheus_client import Counter, Histogram, start_http_server

from conveyor.settings import parse_address

RPC_ERRORS = Counter("conveyor_rpc_errors_total", "gRPC calls that failed, by method and code", ["method", "code"])
BUS_MESSAGES = Counter(
    "conveyor_bus_messages_total", "Bus messages handled, by consumer and outcome", ["consumer", "outcome"]
)
BAD_INPUT = Counter("conveyor_bad_input_total", "Rejected input, by source and reason", ["source", "reason"])
STEP_SECONDS = Histogram("conveyor_step_seconds", "Duration of pipeline steps", ["step"])


def count_rpc_error(method: str, code: str) -> None:
    RPC_ERRORS.labels(method=method, code=code).inc()


def serve_metrics(address: str | None) -> None:
    """Expose /metrics on `address` (HOST:PORT) in a daemon thread; no-op when unset."""
    if address:
        host, port = parse_address(address)
        start_http_server(port, addr=host)
