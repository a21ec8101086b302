"""A SIGKILLed launcher takes its children with it (the real launcher, nats-server, sandbox and registry, with
stand-ins for the three services): nothing is left running to hold the ports, the JetStream store or SQLite."""

from __future__ import annotations

import pathlib
import signal
import time

from tests.integration.launcher.launcher_support import LauncherProcess, alive, launcher_env

READY = r"Conveyor is ready\."
CHILDREN = {"nats", "registry", "sandbox", "config", "trigger", "deployer"}


def still_running(pids: dict[str, int], within: float) -> list[str]:
    """The children still alive once `within` seconds have passed (fewer as soon as they are gone)."""
    deadline = time.monotonic() + within
    while True:
        running = sorted(name for name, pid in pids.items() if alive(pid))
        if not running or time.monotonic() > deadline:
            return running
        time.sleep(0.05)


def watchdogs_of(launcher_pid: int) -> list[int]:
    """Watchdog processes guarding this launcher (their argv names it)."""
    found = []
    for entry in pathlib.Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"conveyor_launcher.orphans" in argv and str(launcher_pid).encode() in argv and alive(int(entry.name)):
            found.append(int(entry.name))
    return found


def test_every_child_exits_when_the_launcher_is_sigkilled(tmp_path: pathlib.Path) -> None:
    launcher = LauncherProcess(launcher_env(tmp_path / "data", tmp_path), fakes=True)
    try:
        launcher.wait_for(READY)
        pids = launcher.child_pids()
        assert set(pids) == CHILDREN
        assert watchdogs_of(launcher.process.pid)

        launcher.process.send_signal(signal.SIGKILL)
        assert launcher.process.wait(10) == -signal.SIGKILL
        began = time.monotonic()
        assert still_running(pids, within=8) == []
        print(f"children gone {time.monotonic() - began:.2f}s after the launcher's SIGKILL")
        launcher.wait_for(r"conveyor watchdog: the launcher \(pid \d+\) is gone; stopping nats \(pid \d+\)")
        assert still_running({f"watchdog {pid}": pid for pid in watchdogs_of(launcher.process.pid)}, within=5) == []
    finally:
        launcher.kill()


def test_a_child_ignoring_sigterm_is_killed_after_the_grace_period_when_the_launcher_dies(
    tmp_path: pathlib.Path,
) -> None:
    env = launcher_env(tmp_path / "data", tmp_path, FAKE_IGNORE_SIGTERM="trigger", CONVEYOR_LAUNCHER_GRACE="1s")
    launcher = LauncherProcess(env, fakes=True)
    try:
        launcher.wait_for(READY)
        pids = launcher.child_pids()
        launcher.process.send_signal(signal.SIGKILL)
        launcher.process.wait(10)
        # The others stop on the SIGTERM; the trigger only on the SIGKILL the grace period ends with.
        assert still_running(pids, within=8) == []
        launcher.wait_for(r"conveyor watchdog: trigger did not stop in time: killed it")
    finally:
        launcher.kill()


def test_a_launcher_that_stops_normally_leaves_no_watchdog(tmp_path: pathlib.Path) -> None:
    launcher = LauncherProcess(launcher_env(tmp_path / "data", tmp_path), fakes=True)
    try:
        launcher.wait_for(READY)
        assert watchdogs_of(launcher.process.pid)
        assert launcher.terminate() == 0
        assert watchdogs_of(launcher.process.pid) == []
        assert "conveyor watchdog" not in launcher.output
    finally:
        launcher.kill()
