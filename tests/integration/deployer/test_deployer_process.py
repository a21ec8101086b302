"""The real `conveyor-deployer` process: killed mid-rollout, stopped with SIGTERM, bad settings."""

from __future__ import annotations

import asyncio
import pathlib
import subprocess
from collections.abc import Iterator

import pytest
from nats.aio.client import Client as NATS

from conveyor import bus
from conveyor.v1 import run_pb2
from conveyor_deployer.edges.consumer import CONSUMER
from tests.integration.deployer.conftest import Stack, stored_run_events, terminal_states
from tests.support.kube import deploy_requested, image_of, patch_bodies
from tests.support.nats_server import NatsServer
from tests.support.net import eventually, free_port
from tests.support.procs import ServiceProcess, console_script

State = run_pb2.Run


@pytest.fixture
def processes() -> Iterator[list[ServiceProcess]]:
    """Every deployer a test starts; killed at the end whatever happened."""
    started: list[ServiceProcess] = []
    yield started
    for process in started:
        process.kill()


def deployer_process(
    tmp_path: pathlib.Path, stack: Stack, nats_server: NatsServer, address: str, name: str
) -> ServiceProcess:
    env = {
        "CONVEYOR_DEPLOYER_ADDR": address,
        "CONVEYOR_NATS_URL": nats_server.url,
        "KUBECONFIG": str(stack.kubeconfig),
        "CONVEYOR_DEPLOYER_ACK_WAIT": "2s",
        "CONVEYOR_DEPLOYER_POLL_INTERVAL": "100ms",
        "CONVEYOR_DEPLOYER_SHUTDOWN_GRACE": "1s",
        "CONVEYOR_LOG_LEVEL": "info",
    }
    return ServiceProcess(name, [console_script("conveyor-deployer")], env, tmp_path / "logs")


async def started(process: ServiceProcess, address: str, processes: list[ServiceProcess]) -> ServiceProcess:
    processes.append(process)
    # Waiting blocks; the sandbox API is served by this test's event loop, so wait in a thread.
    await asyncio.to_thread(process.start().wait_ready, address)
    return process


async def test_killed_mid_rollout_the_restarted_deployer_finishes_the_run_once(
    tmp_path: pathlib.Path, stack: Stack, nats_server: NatsServer, nc: NATS, processes: list[ServiceProcess]
) -> None:
    stack.sandbox.auto_rollout = False
    js = nc.jetstream()
    await bus.ensure_streams(js)
    address = f"127.0.0.1:{free_port()}"
    first = await started(deployer_process(tmp_path, stack, nats_server, address, "deployer-1"), address, processes)
    message = deploy_requested(image="registry.example.com/demo/web:2.0.0")
    run_id = message.run.rsplit("/", 1)[-1]
    await bus.publish(js, bus.DEPLOY_REQUESTED_SUBJECT, message, message.run)

    async def following_rollout() -> None:
        log = [entry.message for e in await stored_run_events(js) if e.run == message.run for entry in e.log_entries]
        assert any(line.startswith("Waiting for deployment") for line in log), log

    await eventually(following_rollout, 20)
    first.kill()  # SIGKILL: no terminal event, no ack
    assert len(patch_bodies(stack.sandbox, "Deployment", "demo", "web")) == 1

    second = await started(deployer_process(tmp_path, stack, nats_server, address, "deployer-2"), address, processes)

    async def second_attempt_verifying() -> None:
        events = await stored_run_events(js)
        assert any(e.event_id.startswith(f"{run_id}:deployer:2:") for e in events), second.output()[-2000:]

    await eventually(second_attempt_verifying, 20)
    await stack.kube.complete_rollout("Deployment", "demo", "web")

    async def finished() -> list:
        events = await stored_run_events(js)
        assert terminal_states(events, message.run), second.output()[-2000:]
        return events

    events = await eventually(finished, 20)
    assert terminal_states(events, message.run) == [State.SUCCEEDED]
    assert len(patch_bodies(stack.sandbox, "Deployment", "demo", "web")) == 1
    final = next(e for e in events if e.run == message.run and e.state == State.SUCCEEDED)
    assert final.previous_image == "registry.example.com/demo/web:1.0.0"
    second_log = [entry.message for e in events if ":deployer:2:" in e.event_id for entry in e.log_entries]
    assert any("this run's patch was applied before" in line for line in second_log), second_log
    assert image_of(await stack.kube.get("Deployment", "demo", "web"), "app") == "registry.example.com/demo/web:2.0.0"

    async def acked() -> None:
        info = await js.consumer_info(bus.DEPLOY_REQUESTS_STREAM, CONSUMER)
        assert info.num_ack_pending == 0 and info.num_pending == 0

    await eventually(acked, 10)
    assert await asyncio.to_thread(second.terminate) == 0


async def test_sigterm_hands_the_run_back_and_exits_cleanly(
    tmp_path: pathlib.Path, stack: Stack, nats_server: NatsServer, nc: NATS, processes: list[ServiceProcess]
) -> None:
    stack.sandbox.auto_rollout = False
    js = nc.jetstream()
    await bus.ensure_streams(js)
    address = f"127.0.0.1:{free_port()}"
    first = await started(deployer_process(tmp_path, stack, nats_server, address, "deployer-a"), address, processes)
    message = deploy_requested(image="registry.example.com/demo/web:3.0.0")
    await bus.publish(js, bus.DEPLOY_REQUESTED_SUBJECT, message, message.run)
    await eventually(lambda: _patched(stack), 20)

    code = await asyncio.to_thread(first.terminate)

    assert code == 0, first.output()[-3000:]
    assert "handing it back" in first.output()
    assert terminal_states(await stored_run_events(js), message.run) == []
    second = await started(deployer_process(tmp_path, stack, nats_server, address, "deployer-b"), address, processes)
    await stack.kube.complete_rollout("Deployment", "demo", "web")

    async def finished() -> None:
        assert terminal_states(await stored_run_events(js), message.run) == [State.SUCCEEDED], second.output()[-2000:]

    await eventually(finished, 20)
    assert len(patch_bodies(stack.sandbox, "Deployment", "demo", "web")) == 1
    assert await asyncio.to_thread(second.terminate) == 0


async def _patched(stack: Stack) -> None:
    assert patch_bodies(stack.sandbox, "Deployment", "demo", "web")


def test_invalid_settings_stop_the_deployer_at_start_with_every_problem(tmp_path: pathlib.Path) -> None:
    clusters = tmp_path / "clusters.yaml"
    clusters.write_text("clusters:\n  - name: prod\n    platform: AKS\n")
    result = subprocess.run(
        [console_script("conveyor-deployer")],
        env={
            "PATH": "/usr/bin:/bin",
            "CONVEYOR_DEPLOYER_POLL_INTERVAL": "often",
            "CONVEYOR_DEPLOYER_MAX_CONCURRENT_RUNS": "0",
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "CONVEYOR_DEPLOYER_POLL_INTERVAL='often'" in result.stderr
    # Declared settings quote every rejected value, numbers too (was `=0: must be between ...`).
    assert "CONVEYOR_DEPLOYER_MAX_CONCURRENT_RUNS='0': must be between 1 and 1000" in result.stderr

    result = subprocess.run(
        [console_script("conveyor-deployer")],
        env={"PATH": "/usr/bin:/bin", "CONVEYOR_CLUSTERS_FILE": str(clusters)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "cluster 'prod'.platform: 'AKS' is not one of TKE, EKS, EDGE, KUBERNETES" in result.stderr
