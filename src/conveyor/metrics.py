"""Prometheus metrics shared by the services, and the /metrics endpoint."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, start_http_server

from conveyor.settings import parse_address

RPC_ERRORS = Counter("conveyor_rpc_errors_total", "gRPC calls that failed, by method and code", ["method", "code"])
BUS_MESSAGES = Counter(
    "conveyor_bus_messages_total", "Bus messages handled, by consumer and outcome", ["consumer", "outcome"]
)
BAD_INPUT = Counter("conveyor_bad_input_total", "Rejected input, by source and reason", ["source", "reason"])
# Counted once per message, by the replica that stored it (conveyor.dead_letters).
DEAD_LETTERS = Counter(
    "conveyor_dead_letters_total",
    "Messages moved to the CONVEYOR_DEAD_LETTERS stream, by consumer and reason "
    "(undecodable, invalid, failed, delivery_limit)",
    ["consumer", "reason"],
)
STEP_SECONDS = Histogram("conveyor_step_seconds", "Duration of pipeline steps", ["step"])
# Set from JetStream consumer info every CONSUMER_LAG_INTERVAL seconds (conveyor.bus.track_consumer_lag).
CONSUMER_PENDING = Gauge(
    "conveyor_bus_consumer_pending",
    "Messages in the stream not yet delivered to the durable consumer (JetStream num_pending), by consumer",
    ["consumer"],
)
CONSUMER_ACK_PENDING = Gauge(
    "conveyor_bus_consumer_ack_pending",
    "Messages delivered to the durable consumer and not yet acknowledged (num_ack_pending), by consumer",
    ["consumer"],
)
CONSUMER_LAG_INTERVAL = 15.0


def count_rpc_error(method: str, code: str) -> None:
    RPC_ERRORS.labels(method=method, code=code).inc()


def serve_metrics(address: str | None) -> None:
    """Expose /metrics on `address` (HOST:PORT) in a daemon thread; no-op when unset."""
    if address:
        host, port = parse_address(address)
        start_http_server(port, addr=host)
