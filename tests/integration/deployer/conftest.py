"""Fixtures for the deployer against the sandbox Kubernetes API (served over HTTP)."""

from __future__ import annotations

import datetime as dt
import pathlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import pytest
from nats.js import JetStreamContext

from conveyor import bus
from conveyor.retry import RetryPolicy
from conveyor.v1 import bus_pb2, run_pb2
from conveyor_deployer.adapters.clusters import load_clusters
from conveyor_deployer.adapters.kube import KubeWorkloadApi
from conveyor_deployer.usecases.deploy import DeployRunner, RunResult
from conveyor_deployer.usecases.requests import parse_deploy_request
from conveyor_sandbox import SandboxCluster
from tests.support.kube import KubeClient, sandbox_cluster

TERMINAL = {run_pb2.Run.SUCCEEDED, run_pb2.Run.FAILED, run_pb2.Run.SUPERSEDED}


async def stored_run_events(js: JetStreamContext) -> list[bus_pb2.RunEvent]:
    info = await js.stream_info(bus.RUN_EVENTS_STREAM)
    events: list[bus_pb2.RunEvent] = []
    if info.state.messages == 0:
        return events
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        raw = await js.get_msg(bus.RUN_EVENTS_STREAM, seq)
        events.append(bus.decode(bus_pb2.RunEvent, raw.data))
    return events


def terminal_states(events: list[bus_pb2.RunEvent], run: str) -> list[int]:
    return [e.state for e in events if e.run == run and e.state in TERMINAL]


class RecordingSink:
    """Stores run events like JetStream does: in order, a repeated event id is dropped."""

    def __init__(self) -> None:
        self.events: list[bus_pb2.RunEvent] = []

    async def publish(self, event: bus_pb2.RunEvent) -> bool:
        if any(e.event_id == event.event_id for e in self.events):
            return False
        self.events.append(event)
        return True

    def messages(self, run: str | None = None) -> list[str]:
        return [
            f"{entry.step}: {entry.message}"
            for event in self.events
            if run is None or event.run == run
            for entry in event.log_entries
        ]

    def terminal(self, run: str) -> list[bus_pb2.RunEvent]:
        terminal_states = {run_pb2.Run.SUCCEEDED, run_pb2.Run.FAILED, run_pb2.Run.SUPERSEDED}
        return [e for e in self.events if e.run == run and e.state in terminal_states]


@dataclass
class Stack:
    sandbox: SandboxCluster
    kubeconfig: pathlib.Path
    kube: KubeClient
    api: KubeWorkloadApi
    sink: RecordingSink
    runner: DeployRunner

    async def deploy(self, message: bus_pb2.DeployRequested, attempt: int = 1) -> RunResult:
        request = parse_deploy_request(message, default_rollout_timeout=30.0, now=dt.datetime.now(dt.UTC))
        return await self.runner.run(request, attempt)


@pytest.fixture
async def sandbox(tmp_path: pathlib.Path) -> AsyncIterator[tuple[SandboxCluster, pathlib.Path]]:
    async with sandbox_cluster(tmp_path) as started:
        yield started


@pytest.fixture
def kube(sandbox: tuple[SandboxCluster, pathlib.Path]) -> Iterator[KubeClient]:
    client = KubeClient(sandbox[1])
    yield client
    client.close()


@pytest.fixture
def stack(sandbox: tuple[SandboxCluster, pathlib.Path], kube: KubeClient) -> Iterator[Stack]:
    cluster_sandbox, kubeconfig = sandbox
    clusters = load_clusters(None, {"KUBECONFIG": str(kubeconfig)})
    api = KubeWorkloadApi.from_clusters(clusters, concurrency=4, timeout=5.0)
    sink = RecordingSink()
    runner = DeployRunner(
        api,
        sink,
        [c.name for c in clusters],
        retry=RetryPolicy(initial=0.01, maximum=0.05, jitter=0.5, max_attempts=3),
        poll_interval=0.05,
    )
    yield Stack(cluster_sandbox, kubeconfig, kube, api, sink, runner)
    api.close()
