"""Two deployer replicas sharing the durable consumer, kept apart per workload by the KV leases.

A burst over several workloads through two in-process `DeployerApp`s, and a SIGKILL of the real
process running a rollout: its run resumes on the other replica without a second PATCH.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import pathlib
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from nats.aio.client import Client as NATS

from conveyor import bus
from conveyor.lifecycle import ShutdownPlan
from conveyor.v1 import bus_pb2, run_pb2
from conveyor_deployer.adapters.leases import BUCKET, lease_key
from conveyor_deployer.app import DeployerApp
from conveyor_deployer.edges.consumer import CONSUMER
from conveyor_deployer.settings import DeployerSettings
from conveyor_deployer.usecases.deploy import RunResult
from conveyor_deployer.usecases.ports import Fence
from conveyor_deployer.usecases.requests import DeployRequest
from tests.integration.deployer.conftest import TERMINAL, Stack, stored_run_events, terminal_states
from tests.support.kube import deploy_requested, image_of, patch_bodies
from tests.support.nats_server import NatsServer
from tests.support.net import eventually, free_port
from tests.support.procs import ServiceProcess, console_script

State = run_pb2.Run
NAMESPACES = ["demo", "team-a", "team-b", "team-c"]
IMAGES = 5


def patched_images(bodies: list[Any]) -> list[str]:
    return [
        op["value"]
        for body in bodies
        for op in body
        if op.get("op") == "replace" and str(op.get("path", "")).endswith("/image")
    ]


class Counting:
    """The runner of one replica, counting the runs it carried out."""

    def __init__(self, runner: Any, runs: list[str]) -> None:
        self.runner = runner
        self.runs = runs

    async def run(self, request: DeployRequest, attempt: int, fence: Fence | None = None) -> RunResult:
        self.runs.append(request.run)
        return await self.runner.run(request, attempt, fence=fence)

    async def supersede(self, request: DeployRequest, attempt: int, newer: DeployRequest) -> RunResult:
        return await self.runner.supersede(request, attempt, newer)


@pytest.fixture
async def replicas(stack: Stack, nats_server: NatsServer) -> AsyncIterator[Callable[[], Any]]:
    apps: list[DeployerApp] = []

    async def start() -> DeployerApp:
        settings = DeployerSettings.from_env(
            {
                "CONVEYOR_DEPLOYER_ADDR": "127.0.0.1:0",
                "CONVEYOR_NATS_URL": nats_server.url,
                "CONVEYOR_DEPLOYER_ACK_WAIT": "3s",
                "CONVEYOR_DEPLOYER_LEASE_TTL": "3s",
                "CONVEYOR_DEPLOYER_POLL_INTERVAL": "50ms",
                # The consumer's ack-pending limit is shared: small, so that both replicas get requests.
                "CONVEYOR_DEPLOYER_MAX_HELD_REQUESTS": "6",
            }
        )
        app = DeployerApp(settings, {"KUBECONFIG": str(stack.kubeconfig)}, shutdown_plan=ShutdownPlan(total=2.0))
        apps.append(app)
        await app.start()
        return app

    yield start
    for app in apps:
        await app.stop()


async def test_a_burst_over_two_replicas_keeps_every_workload_in_order(
    stack: Stack, nc: NATS, replicas: Callable[[], Any]
) -> None:
    for namespace in NAMESPACES[1:]:
        await stack.sandbox.seed_samples(namespace)
    js = nc.jetstream()
    await bus.ensure_streams(js)
    first, second = await replicas(), await replicas()
    runs_by_replica: list[list[str]] = [[], []]
    for app, runs in zip((first, second), runs_by_replica, strict=True):
        app.dispatcher.executor = Counting(app.dispatcher.executor, runs)
    base = dt.datetime.now(dt.UTC)
    messages: dict[str, list[bus_pb2.DeployRequested]] = {ns: [] for ns in NAMESPACES}
    for step in range(IMAGES):  # interleaved across workloads, oldest first
        for index, namespace in enumerate(NAMESPACES):
            message = deploy_requested(
                pipeline=f"web-{namespace}",
                namespace=namespace,
                image=f"registry.example.com/demo/web:{namespace}-{step}",
                requested_at=base + dt.timedelta(milliseconds=10 * (step * len(NAMESPACES) + index)),
            )
            messages[namespace].append(message)
            await bus.publish(js, bus.DEPLOY_REQUESTED_SUBJECT, message, message.run)
    every_run = [m.run for batch in messages.values() for m in batch]

    async def all_terminal() -> list[bus_pb2.RunEvent]:
        events = await stored_run_events(js)
        assert all(terminal_states(events, run) for run in every_run), [
            run for run in every_run if not terminal_states(events, run)
        ]
        return events

    events = await eventually(all_terminal, 60)

    assert all(len(terminal_states(events, run)) == 1 for run in every_run)
    assert runs_by_replica[0] and runs_by_replica[1], runs_by_replica  # both replicas carried out runs
    for namespace, batch in messages.items():
        newest = batch[-1].image
        assert image_of(await stack.kube.get("Deployment", namespace, "web"), "app") == newest
        applied = patched_images(patch_bodies(stack.sandbox, "Deployment", namespace, "web"))
        assert len(applied) == len(set(applied)), applied  # no image applied twice
        order = [m.image for m in batch]
        assert [order.index(image) for image in applied] == sorted(order.index(image) for image in applied)
        assert applied[-1] == newest
        # Per workload, runs never overlap: each one's first RUNNING event to its terminal event.
        spans = []
        for message in batch:
            times = [e.time.ToDatetime() for e in events if e.run == message.run and e.state == State.RUNNING]
            end = [e.time.ToDatetime() for e in events if e.run == message.run and e.state in TERMINAL]
            if times:
                spans.append((min(times), end[0]))
        spans.sort()
        assert all(earlier[1] <= later[0] for earlier, later in itertools.pairwise(spans)), spans

    async def acked() -> None:
        info = await js.consumer_info(bus.DEPLOY_REQUESTS_STREAM, CONSUMER)
        assert info.num_ack_pending == 0 and info.num_pending == 0

    await eventually(acked, 10)
    leases = await js.key_value(BUCKET)
    assert [key async for key in _live_keys(leases)] == []  # every lease released


async def _live_keys(kv: Any) -> AsyncIterator[str]:
    try:
        keys = await kv.keys()
    except Exception:  # nats-py raises NoKeysError on an empty bucket
        return
    for key in keys:
        yield key


@pytest.fixture
def processes() -> Iterator[list[ServiceProcess]]:
    started: list[ServiceProcess] = []
    yield started
    for process in started:
        process.kill()


async def test_sigkill_mid_rollout_the_other_replica_resumes_within_15s_without_a_second_patch(
    tmp_path: pathlib.Path, stack: Stack, nats_server: NatsServer, nc: NATS, processes: list[ServiceProcess]
) -> None:
    stack.sandbox.auto_rollout = False
    js = nc.jetstream()
    await bus.ensure_streams(js)
    by_pid: dict[int, tuple[ServiceProcess, str]] = {}
    for name in ("deployer-r1", "deployer-r2"):
        address = f"127.0.0.1:{free_port()}"
        env = {
            "CONVEYOR_DEPLOYER_ADDR": address,
            "CONVEYOR_NATS_URL": nats_server.url,
            "KUBECONFIG": str(stack.kubeconfig),
            "CONVEYOR_DEPLOYER_POLL_INTERVAL": "100ms",
            "CONVEYOR_DEPLOYER_SHUTDOWN_GRACE": "1s",
            # ack wait and lease TTL at their defaults (10 s): the takeover measured is production's
        }
        process = ServiceProcess(name, [console_script("conveyor-deployer")], env, tmp_path / "logs")
        processes.append(process)
        await asyncio.to_thread(process.start().wait_ready, address)
        assert process.process is not None
        by_pid[process.process.pid] = (process, address)
    message = deploy_requested(image="registry.example.com/demo/web:7.0.0")
    run_id = message.run.rsplit("/", 1)[-1]
    await bus.publish(js, bus.DEPLOY_REQUESTED_SUBJECT, message, message.run)
    leases = await js.key_value(BUCKET)

    async def following_rollout() -> int:
        log = [entry.message for e in await stored_run_events(js) if e.run == message.run for entry in e.log_entries]
        assert any(line.startswith("Waiting for deployment") for line in log), log
        holder = (await leases.get(lease_key("sandbox/demo/Deployment/web"))).value.decode()
        return int(holder.split("/")[1])

    holder_pid = await eventually(following_rollout, 20)
    victim, _ = by_pid[holder_pid]
    survivor = next(process for pid, (process, _) in by_pid.items() if pid != holder_pid)
    victim.kill()  # SIGKILL mid-rollout: no terminal event, no ack, the lease left to expire
    killed_at = time.monotonic()
    assert len(patch_bodies(stack.sandbox, "Deployment", "demo", "web")) == 1

    async def resumed() -> None:
        events = await stored_run_events(js)
        assert any(e.event_id.startswith(f"{run_id}:deployer:2:") for e in events), survivor.output()[-2000:]

    await eventually(resumed, 30, interval=0.1)
    takeover = time.monotonic() - killed_at
    print(f"\ndeployer takeover after SIGKILL: {takeover:.1f}s")
    assert takeover < 15.0
    await stack.kube.complete_rollout("Deployment", "demo", "web")

    async def finished() -> list[bus_pb2.RunEvent]:
        events = await stored_run_events(js)
        assert terminal_states(events, message.run), survivor.output()[-2000:]
        return events

    events = await eventually(finished, 20)
    assert terminal_states(events, message.run) == [State.SUCCEEDED]
    assert len(patch_bodies(stack.sandbox, "Deployment", "demo", "web")) == 1  # no second PATCH
    second_log = [entry.message for e in events if ":deployer:2:" in e.event_id for entry in e.log_entries]
    assert any("this run's patch was applied before" in line for line in second_log), second_log
    assert image_of(await stack.kube.get("Deployment", "demo", "web"), "app") == "registry.example.com/demo/web:7.0.0"
    assert await asyncio.to_thread(survivor.terminate) == 0
