"""`python -m conveyor.healthcheck HOST:PORT [--service NAME] [--timeout SECONDS]`.

A container health check for the services (docker-compose `healthcheck`, or an exec probe):
asks the standard gRPC health service and exits 0 when it answers SERVING, 1 otherwise,
with one line saying what it saw. No extra binary (grpc_health_probe) is needed in the image.
"""

from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("GRPC_VERBOSITY", "NONE")  # one line of our own instead of gRPC core logs

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def check(address: str, service: str = "", timeout: float = 3.0) -> tuple[bool, str]:
    """(serving, what was seen)."""
    with grpc.insecure_channel(address) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=timeout
            )
        except grpc.RpcError as exc:
            code = exc.code().name if hasattr(exc, "code") else "UNKNOWN"
            return False, f"{address}: {code}"
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    return reply.status == health_pb2.HealthCheckResponse.SERVING, f"{address}: {status}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m conveyor.healthcheck", description=__doc__.split("\n\n")[1])
    parser.add_argument("address", metavar="HOST:PORT")
    parser.add_argument("--service", default="", help="service name to check (default: the whole server)")
    parser.add_argument("--timeout", type=float, default=3.0, help="seconds (default 3)")
    args = parser.parse_args(argv)
    serving, seen = check(args.address, args.service, args.timeout)
    print(seen, file=sys.stdout if serving else sys.stderr)
    sys.exit(0 if serving else 1)


if __name__ == "__main__":
    main()
