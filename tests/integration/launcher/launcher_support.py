"""Run `python -m conveyor_launcher` (or the launcher with fake services) as a process in tests."""

from __future__ import annotations

import contextlib
import os
import pathlib
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping

from tests.support.net import free_port

HERE = pathlib.Path(__file__).parent


def launcher_env(data_dir: pathlib.Path, home: pathlib.Path, **extra: str) -> dict[str, str]:
    """A clean environment: temp data dir, free non-default ports, no kubeconfig, no inherited CONVEYOR_*."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_") and k not in {"KUBECONFIG", "NO_COLOR"}}
    env.update(
        {
            "HOME": str(home),
            "CONVEYOR_DATA_DIR": str(data_dir),
            "CONVEYOR_NATS_PORT": str(free_port()),
            "CONVEYOR_CONFIG_ADDR": f"127.0.0.1:{free_port()}",
            "CONVEYOR_TRIGGER_ADDR": f"127.0.0.1:{free_port()}",
            "CONVEYOR_DEPLOYER_ADDR": f"127.0.0.1:{free_port()}",
            "CONVEYOR_WEBHOOK_ADDR": f"127.0.0.1:{free_port()}",
            "CONVEYOR_CONFIG_METRICS_ADDR": f"127.0.0.1:{free_port()}",
            "CONVEYOR_TRIGGER_METRICS_ADDR": f"127.0.0.1:{free_port()}",
            "CONVEYOR_DEPLOYER_METRICS_ADDR": f"127.0.0.1:{free_port()}",
            "CONVEYOR_SANDBOX_REGISTRY_PORT": str(free_port()),
            "CONVEYOR_SANDBOX_ROLLOUT_DELAY": "500ms",
            "CONVEYOR_LAUNCHER_GRACE": "10s",
        }
    )
    env.update(extra)
    return env


class LauncherProcess:
    """The launcher with its output collected line by line (a reader thread)."""

    def __init__(self, env: Mapping[str, str], *, fakes: bool) -> None:
        argv = (
            [sys.executable, str(HERE / "launcher_with_fakes.py")]
            if fakes
            else [sys.executable, "-m", "conveyor_launcher"]
        )
        self.env = dict(env)
        self.process = subprocess.Popen(
            argv, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
        )
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    @property
    def output(self) -> str:
        with self._changed:
            return "\n".join(self.lines)

    def wait_for(self, pattern: str, timeout: float = 90.0) -> re.Match[str]:
        """The first output line matching `pattern`; fails early if the launcher exits."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for line in self.lines:
                    found = regex.search(line)
                    if found:
                        return found
                if self.process.poll() is not None and not self._reader.is_alive():
                    raise AssertionError(
                        f"launcher exited ({self.process.returncode}) before {pattern!r}:\n{self.output}"
                    )
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"no {pattern!r} after {timeout}s:\n" + "\n".join(self.lines[-60:]))
                self._changed.wait(min(remaining, 0.5))

    def child_pids(self) -> dict[str, int]:
        pids = {}
        for line in list(self.lines):
            found = re.search(r"started (\w+) \(pid (\d+)\)", line)
            if found:
                pids[found.group(1)] = int(found.group(2))
        return pids

    def terminate(self, timeout: float = 60.0) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.wait(timeout)

    def wait(self, timeout: float = 60.0) -> int:
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"launcher did not exit within {timeout}s:\n{self.output}") from None
        self._reader.join(5)
        return code

    def kill(self) -> None:
        """Last resort for a failed test: the launcher and every child it reported."""
        for pid in self.child_pids().values():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); it is gone for our purposes.
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split()[2] != "Z"
    except OSError:
        return False
