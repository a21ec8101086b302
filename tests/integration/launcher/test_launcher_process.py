"""`python -m conveyor_launcher` with the REAL services, nats-server and sandbox (what `make run` starts).

Temp data dir and non-default free ports; the machine's kubeconfig is hidden (HOME is the temp
dir), so the sandbox (and its registry) is used. Checks: ready banner, gRPC health of the three
services, the sandbox registered with the deployer, the demo pipeline created, a clean SIGTERM
stop with no process left, data surviving a restart, and a killed service stopping the rest.
The quick start itself (push, tags, manual start) is tests/e2e/test_e2e_quickstart.py.
"""

from __future__ import annotations

import os
import pathlib
import signal
import subprocess
import time

from tests.integration.launcher.launcher_support import LauncherProcess, alive, launcher_env
from tests.support.procs import console_script, wait_grpc_serving

SERVICE_ADDRESSES = ("CONVEYOR_CONFIG_ADDR", "CONVEYOR_TRIGGER_ADDR", "CONVEYOR_DEPLOYER_ADDR")


def conveyorctl(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [console_script("conveyorctl"), *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )


def test_make_run_starts_the_real_system_and_stops_it_cleanly(tmp_path: pathlib.Path) -> None:
    data_dir = tmp_path / "data"
    env = launcher_env(data_dir, tmp_path, CONVEYOR_SANDBOX="auto")
    launcher = LauncherProcess(env, fakes=False)
    try:
        launcher.wait_for(r"Conveyor is ready\.", timeout=100)
        pids = launcher.child_pids()
        assert set(pids) == {"nats", "registry", "sandbox", "config", "trigger", "deployer"}
        for variable in SERVICE_ADDRESSES:
            wait_grpc_serving(env[variable], timeout=10)

        clusters = conveyorctl(env, "targets", "clusters")
        assert clusters.returncode == 0, clusters.stderr
        assert clusters.stdout.splitlines()[1].split() == ["sandbox", "KUBERNETES", "local", "SANDBOX"]

        assert "created the demo pipeline pipelines/web" in launcher.output
        got = conveyorctl(env, "pipelines", "get", "web", "-o", "json")
        assert got.returncode == 0, got.stderr
        assert f'"registry": "127.0.0.1:{env["CONVEYOR_SANDBOX_REGISTRY_PORT"]}"' in got.stdout

        assert launcher.terminate() == 0
        assert [name for name, pid in pids.items() if alive(pid)] == []
    finally:
        launcher.kill()
    token = (data_dir / "webhook-token").read_text().strip()

    # Same data dir again: the pipeline (SQLite) and the token are still there.
    again = LauncherProcess(
        {
            **launcher_env(data_dir, tmp_path, CONVEYOR_SANDBOX="auto"),
            "CONVEYOR_SANDBOX_REGISTRY_PORT": env["CONVEYOR_SANDBOX_REGISTRY_PORT"],
        },
        fakes=False,
    )
    try:
        again.wait_for(r"Conveyor is ready\.", timeout=100)
        env = again.env
        got = conveyorctl(env, "pipelines", "get", "web", "-o", "json")
        assert got.returncode == 0, got.stderr
        assert '"workload": "web"' in got.stdout
        assert "created the demo pipeline" not in again.output  # it was there already
        assert f"Bearer {token}" in (data_dir / "registry" / "config.yml").read_text()

        # A service dying on its own takes the system down, loudly.
        pids = again.child_pids()
        os.kill(pids["deployer"], signal.SIGKILL)
        assert again.wait(60) == 1
        assert "deployer exited unexpectedly with status -9" in again.output
        deadline = time.monotonic() + 10
        while any(alive(pid) for pid in pids.values()) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert [name for name, pid in pids.items() if alive(pid)] == []
    finally:
        again.kill()
