"""The real launcher, nats-server, sandbox and registry, with stand-ins for the three services.

What this covers: start order and readiness, the wiring of settings into the children,
the ready banner, a clean SIGTERM stop (exit 0, no process left), a child that dies
(exit 1, its last lines shown, the others stopped), SIGKILL after the grace period, a
second launcher on the same data dir refused, a taken port refused, and the webhook token
surviving a restart. `test_launcher_process.py` runs the real services.
"""

from __future__ import annotations

import json
import pathlib
import re
import socket

import yaml

from conveyor.settings import parse_address
from tests.integration.launcher.launcher_support import LauncherProcess, alive, launcher_env
from tests.support.procs import wait_grpc_serving

READY = r"Conveyor is ready\."


def fake_settings(launcher: LauncherProcess, service: str) -> dict[str, str]:
    found = launcher.wait_for(rf"fake {service} serving; settings (.*)$")
    return dict(json.loads(found.group(1)))


def test_starts_everything_wires_it_and_stops_cleanly_on_sigterm(tmp_path: pathlib.Path) -> None:
    data_dir = tmp_path / "data"
    env = launcher_env(data_dir, tmp_path)
    launcher = LauncherProcess(env, fakes=True)
    try:
        launcher.wait_for(READY)
        pids = launcher.child_pids()
        assert set(pids) == {"nats", "registry", "sandbox", "config", "trigger", "deployer"}
        assert launcher.output.index("pushed the demo images demo/web:") < launcher.output.index("started registry")
        assert launcher.output.index("started config") < launcher.output.index("started trigger")
        for variable in ("CONVEYOR_CONFIG_ADDR", "CONVEYOR_TRIGGER_ADDR", "CONVEYOR_DEPLOYER_ADDR"):
            wait_grpc_serving(env[variable], timeout=5)

        deployer = fake_settings(launcher, "deployer")
        trigger = fake_settings(launcher, "trigger")
        token = (data_dir / "webhook-token").read_text().strip()
        assert deployer["CONVEYOR_NATS_URL"] == f"nats://127.0.0.1:{env['CONVEYOR_NATS_PORT']}"
        assert trigger["CONVEYOR_WEBHOOK_TOKEN"] == token and len(token) >= 32
        assert (data_dir / "webhook-token").stat().st_mode & 0o077 == 0
        assert deployer["CONVEYOR_DATABASE_URL"] == f"sqlite+aiosqlite:///{data_dir / 'conveyor.db'}"
        clusters = yaml.safe_load(pathlib.Path(deployer["CONVEYOR_CLUSTERS_FILE"]).read_text())
        (sandbox,) = clusters["clusters"]
        assert (sandbox["name"], sandbox["platform"], sandbox["region"]) == ("sandbox", "KUBERNETES", "local")
        kubeconfig = yaml.safe_load(pathlib.Path(sandbox["kubeconfig"]).read_text())
        assert kubeconfig["current-context"] == "sandbox"
        assert "SANDBOX" in launcher.output
        assert (data_dir / "nats").is_dir()

        # The local registry: known to the services as plain HTTP, notifying the trigger with the token.
        registry_host = f"127.0.0.1:{env['CONVEYOR_SANDBOX_REGISTRY_PORT']}"
        assert trigger["CONVEYOR_REGISTRY_SANDBOX_HOST"] == registry_host
        assert trigger["CONVEYOR_REGISTRY_SANDBOX_SCHEME"] == "http"
        registry_config = data_dir / "registry" / "config.yml"
        assert registry_config.stat().st_mode & 0o077 == 0
        (endpoint,) = yaml.safe_load(registry_config.read_text())["notifications"]["endpoints"]
        assert endpoint["url"] == f"http://{env['CONVEYOR_WEBHOOK_ADDR']}/webhooks/distribution"
        assert endpoint["headers"] == {"Authorization": [f"Bearer {token}"]}
        assert (data_dir / "registry" / "port").read_text().strip() == env["CONVEYOR_SANDBOX_REGISTRY_PORT"]
        assert f"fake services: not creating pipelines/web ({registry_host})" in launcher.output

        # The banner tells how to try it, with this instance's addresses and registry.
        assert f"export CONVEYOR_CONFIG_ADDR={env['CONVEYOR_CONFIG_ADDR']}" in launcher.output
        assert f"docker://{registry_host}/demo/web:v1.2.0" in launcher.output

        # A second launcher on the same data dir is refused before it starts anything.
        second = LauncherProcess(launcher_env(data_dir, tmp_path), fakes=True)
        assert second.wait(30) == 2
        assert "another `make run` is already using" in second.output

        assert launcher.terminate() == 0
        assert "stopped" in launcher.lines[-1]
        assert [name for name, pid in pids.items() if alive(pid)] == []
        # Services stop before the sandbox and the registry, and NATS last.
        order = [m.group(1) for m in re.finditer(r"stopping (\w+)", launcher.output)]
        assert order[-3:] == ["sandbox", "registry", "nats"] and set(order[:3]) == {"config", "trigger", "deployer"}
    finally:
        launcher.kill()

    # Restart on the same data dir: the same token (it is persisted).
    again = LauncherProcess(launcher_env(data_dir, tmp_path), fakes=True)
    try:
        again.wait_for(READY)
        assert fake_settings(again, "trigger")["CONVEYOR_WEBHOOK_TOKEN"] == token
        assert "pushed the demo images" not in again.output  # the registry's storage still has them
        assert again.terminate() == 0
    finally:
        again.kill()


def test_a_child_that_dies_stops_the_rest_and_fails(tmp_path: pathlib.Path) -> None:
    env = launcher_env(tmp_path / "data", tmp_path, FAKE_CRASH="deployer", FAKE_CRASH_AFTER="2")
    launcher = LauncherProcess(env, fakes=True)
    try:
        assert launcher.wait(90) == 1
        output = launcher.output
        assert "error: deployer exited unexpectedly with status 3; stopping the others" in output
        assert "last lines of deployer:" in output and "crashing on purpose" in output
        assert [name for name, pid in launcher.child_pids().items() if alive(pid)] == []
    finally:
        launcher.kill()


def test_a_child_ignoring_sigterm_is_killed_after_the_grace_period(tmp_path: pathlib.Path) -> None:
    env = launcher_env(tmp_path / "data", tmp_path, FAKE_IGNORE_SIGTERM="trigger", CONVEYOR_LAUNCHER_GRACE="1s")
    launcher = LauncherProcess(env, fakes=True)
    try:
        launcher.wait_for(READY)
        pids = launcher.child_pids()
        assert launcher.terminate() == 0
        assert "trigger did not stop in time: killing it" in launcher.output
        assert [name for name, pid in pids.items() if alive(pid)] == []
    finally:
        launcher.kill()


def test_a_taken_port_is_refused_before_starting_anything(tmp_path: pathlib.Path) -> None:
    env = launcher_env(tmp_path / "data", tmp_path)
    host, port = parse_address(env["CONVEYOR_CONFIG_ADDR"])
    with socket.socket() as blocker:
        blocker.bind((host, port))
        blocker.listen()
        launcher = LauncherProcess(env, fakes=True)
        try:
            assert launcher.wait(30) == 2
        finally:
            launcher.kill()
    assert f"config gRPC {env['CONVEYOR_CONFIG_ADDR']} is in use (set CONVEYOR_CONFIG_ADDR" in launcher.output
    assert launcher.child_pids() == {}
