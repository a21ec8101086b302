"""Run a Conveyor service as a real process (its console script) in tests."""

from __future__ import annotations

import os
import pathlib
import signal
import subprocess
import sys
import time
from collections.abc import Mapping

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def console_script(name: str) -> str:
    """Path of a console script (conveyor-config, ...) installed in the running venv."""
    path = pathlib.Path(sys.executable).parent / name
    if not path.exists():
        raise RuntimeError(f"{name} is not installed in {path.parent}: run `make venv`")
    return str(path)


def wait_grpc_serving(address: str, timeout: float = 20.0, service: str = "") -> None:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            with grpc.insecure_channel(address) as channel:
                reply = health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(service=service), timeout=1.0
                )
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
        except grpc.RpcError as exc:
            last = exc
        time.sleep(0.1)
    raise TimeoutError(f"{address} not SERVING after {timeout}s: {last}")


class ServiceProcess:
    """A service process with its output captured to a log file.

    `start()` launches it; `wait_ready()` waits for the gRPC health check to report
    SERVING; `terminate()` sends SIGTERM and waits; `kill()` sends SIGKILL.
    """

    def __init__(self, name: str, args: list[str], env: Mapping[str, str], log_dir: pathlib.Path) -> None:
        self.name = name
        self.args = args
        self.env = {**os.environ, **env}
        self.log_path = log_dir / f"{name}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> ServiceProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(self.args, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        return self

    def wait_ready(self, grpc_address: str, timeout: float = 30.0) -> ServiceProcess:
        try:
            wait_grpc_serving(grpc_address, timeout)
        except TimeoutError as exc:
            raise TimeoutError(f"{self.name} did not become ready; log:\n{self.output()[-4000:]}") from exc
        return self

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    @property
    def returncode(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def terminate(self, timeout: float = 20.0) -> int:
        if self.process is None:
            return 0
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                raise AssertionError(
                    f"{self.name} ignored SIGTERM for {timeout}s; log:\n{self.output()[-4000:]}"
                ) from None
        return self.process.returncode

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
