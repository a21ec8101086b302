"""Children that outlive the launcher: the kernel's parent-death signal, and the watchdog process."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from conveyor_launcher import orphans
from conveyor_launcher.orphans import KERNEL_SIGNALS_CHILDREN, Watchdog, die_with_parent

SLEEPER = "import time; print('up', flush=True); time.sleep(60)"
STUBBORN = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('up', flush=True); time.sleep(60)"


def gone(pid: int, within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        with open(f"/proc/{pid}/stat", "rb") as handle:
            if handle.read().rpartition(b")")[2].split()[0] == b"Z":
                return True
        time.sleep(0.02)
    return False


def session_child(code: str) -> subprocess.Popen[str]:
    """A child in its own session, as the supervisor starts them; returns once it runs its code."""
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, start_new_session=True)
    assert child.stdout is not None and child.stdout.readline() == "up\n"
    return child


def test_the_watchdog_collects_children_and_stops_them_at_the_end_of_its_input_only() -> None:
    stopped: list[dict[int, str]] = []
    orphans.watch(iter(["12 nats\n", "34 config\n", "garbage\n"]), stopped.append)
    assert stopped == [{12: "nats", 34: "config"}]
    stopped.clear()
    orphans.watch(iter(["12 nats\n", "done\n", "34 config\n"]), stopped.append)
    assert stopped == []


def test_a_dead_launcher_s_children_get_sigterm_then_sigkill_after_the_grace_period() -> None:
    watchdog = Watchdog.start(0.5, kernel_signals_children=False)
    polite, stubborn = session_child(SLEEPER), session_child(STUBBORN)
    try:
        watchdog.watch(polite.pid, "config")
        watchdog.watch(stubborn.pid, "trigger")
        began = time.monotonic()
        watchdog.close(done=False)  # the pipe closes as it does when the launcher dies
        assert polite.wait(5) == -signal.SIGTERM
        assert stubborn.wait(5) == -signal.SIGKILL
        assert time.monotonic() - began >= 0.5
        assert watchdog.process.wait(5) == 0
    finally:
        for child in (polite, stubborn):
            child.kill()
            child.wait()


def test_when_the_kernel_sends_the_sigterm_the_watchdog_sends_only_the_sigkill() -> None:
    # A second SIGTERM would make a service skip its drain.
    watchdog = Watchdog.start(0.3, kernel_signals_children=True)
    child = session_child(SLEEPER)  # no parent-death signal: only the watchdog acts on it
    try:
        watchdog.watch(child.pid, "deployer")
        watchdog.close(done=False)
        assert child.wait(5) == -signal.SIGKILL
    finally:
        child.kill()
        child.wait()


def test_a_launcher_that_stopped_its_children_lets_the_watchdog_go_without_signalling_anything() -> None:
    watchdog = Watchdog.start(0.1, kernel_signals_children=False)
    child = session_child(SLEEPER)
    try:
        watchdog.watch(child.pid, "nats")
        watchdog.close(done=True)
        assert watchdog.process.returncode == 0
        time.sleep(0.3)
        assert child.poll() is None
    finally:
        child.kill()
        child.wait()


@pytest.mark.skipif(not KERNEL_SIGNALS_CHILDREN, reason="no prctl(PR_SET_PDEATHSIG) on this platform")
def test_a_child_started_with_die_with_parent_gets_sigterm_when_its_parent_is_sigkilled() -> None:
    assert die_with_parent() is not None
    parent_code = textwrap.dedent(
        f"""
        import subprocess, sys, time
        from conveyor_launcher.orphans import die_with_parent
        child = subprocess.Popen(
            [sys.executable, "-c", {SLEEPER!r}], stdout=subprocess.PIPE, text=True,
            start_new_session=True, preexec_fn=die_with_parent(),
        )
        assert child.stdout.readline() == "up\\n"
        print(child.pid, flush=True)
        time.sleep(60)
        """
    )
    parent = subprocess.Popen([sys.executable, "-c", parent_code], stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    child_pid = int(parent.stdout.readline())
    try:
        parent.kill()
        parent.wait()
        assert gone(child_pid, within=5)
    finally:
        parent.kill()
        parent.wait()
        with contextlib.suppress(ProcessLookupError):
            os.kill(child_pid, signal.SIGKILL)
