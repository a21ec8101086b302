"""A three-node JetStream cluster of real nats-servers on loopback, for the high-availability tests."""

from __future__ import annotations

import json
import pathlib
import time
import urllib.request
from typing import Any

from tests.support.nats_server import NatsServer
from tests.support.net import free_port

CLUSTER_NAME = "conveyor-test"


class NatsCluster:
    """Three JetStream nodes routed to each other, each with its own store directory and fixed ports.

    `start()` returns once a meta leader is elected and every node knows it; `stop`/`kill`/`restart`
    act on one node (by index), keeping its ports and store so it rejoins as itself.
    """

    def __init__(self, root: pathlib.Path, size: int = 3) -> None:
        cluster_ports = [free_port() for _ in range(size)]
        self.monitor_ports = [free_port() for _ in range(size)]
        routes = ",".join(f"nats://127.0.0.1:{port}" for port in cluster_ports)
        self.names = [f"n{index + 1}" for index in range(size)]
        self.nodes = [
            NatsServer(
                root / name,
                extra_args=[
                    "-n",
                    name,
                    "-m",
                    str(self.monitor_ports[index]),
                    "--cluster_name",
                    CLUSTER_NAME,
                    "--cluster",
                    f"nats://127.0.0.1:{cluster_ports[index]}",
                    "--routes",
                    routes,
                ],
            )
            for index, name in enumerate(self.names)
        ]

    @property
    def urls(self) -> list[str]:
        return [node.url for node in self.nodes]

    @property
    def url(self) -> str:
        """Every node, comma-separated, as CONVEYOR_NATS_URL takes them."""
        return ",".join(self.urls)

    def start(self, timeout: float = 30.0) -> None:
        for node in self.nodes:
            node.start()
        self.wait_meta_leader(timeout)

    def close(self) -> None:
        for node in self.nodes:
            node.stop()

    def stop(self, index: int) -> None:
        self.nodes[index].stop()

    def kill(self, index: int) -> None:
        self.nodes[index].kill()

    def restart(self, index: int, timeout: float = 30.0) -> None:
        """Start a stopped or killed node again (or stop and start a running one) and wait until it rejoined."""
        self.nodes[index].restart()
        self.wait_meta_leader(timeout)

    def index_of(self, name: str) -> int:
        return self.names.index(name)

    def jsz(self, index: int) -> dict[str, Any]:
        url = f"http://127.0.0.1:{self.monitor_ports[index]}/jsz"
        with urllib.request.urlopen(url, timeout=1.0) as reply:
            result: dict[str, Any] = json.load(reply)
        return result

    def meta_leader(self, index: int) -> str:
        """The meta leader as node `index` sees it ('' while there is none)."""
        return str(self.jsz(index).get("meta_cluster", {}).get("leader", ""))

    def wait_meta_leader(self, timeout: float = 30.0) -> str:
        """Wait until every running node agrees on one meta leader with a full cluster of peers; returns it."""
        deadline = time.monotonic() + timeout
        seen: object = None
        while time.monotonic() < deadline:
            try:
                running = [i for i, node in enumerate(self.nodes) if node.process is not None]
                leaders = {self.meta_leader(i) for i in running}
                sizes = {self.jsz(i).get("meta_cluster", {}).get("cluster_size", 0) for i in running}
                seen = (leaders, sizes)
                if len(leaders) == 1 and "" not in leaders and sizes == {len(self.nodes)}:
                    return leaders.pop()
            except OSError as exc:  # a node still starting its monitoring listener
                seen = exc
            time.sleep(0.05)
        raise TimeoutError(f"no JetStream meta leader after {timeout}s: {seen}")
