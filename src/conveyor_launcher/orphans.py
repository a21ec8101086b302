"""The launcher's children die with it, even when it is SIGKILLed and has no chance to stop them.

Two mechanisms, because neither covers every case alone:

- Linux: each child asks the kernel for SIGTERM when its parent dies (`prctl(PR_SET_PDEATHSIG)`, set
  between fork and exec by `die_with_parent()`, a `preexec_fn`). No helper process is needed and no
  window is left open, but it sends one signal and stops nothing that ignores it.
- Everywhere: a watchdog process (`python -m conveyor_launcher.orphans`), in a session of its own, reads
  a pipe only the launcher writes to. The launcher tells it the pid of every child it starts; when the
  launcher dies, however it dies, the kernel closes the pipe and the watchdog reads end of file. It then
  stops those children's process groups as the launcher would have: SIGTERM (unless the kernel already
  sent it: a second one would make a service skip its drain), then SIGKILL after the grace period. A
  launcher that stopped its children itself says `done` first, and the watchdog leaves.

The watchdog waits for end of file on the pipe rather than polling the launcher's pid: it learns of the
death at once, and a reused pid cannot fool it.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from typing import IO

PR_SET_PDEATHSIG = 1
DONE = "done"


def _load_prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    prctl.restype = ctypes.c_int
    return prctl


# Looked up once, here: a child between fork and exec must not load libraries.
_PRCTL = _load_prctl()
KERNEL_SIGNALS_CHILDREN = _PRCTL is not None


def die_with_parent(sig: signal.Signals = signal.SIGTERM) -> Callable[[], None] | None:
    """A `preexec_fn` after which the child gets `sig` when this process dies; None without prctl.

    "Dies" is the death of the thread that forks the child: spawn from a thread that lives as long as
    the process (the launcher's event loop thread does). It composes with `start_new_session`, which
    subprocess applies first, in C.
    """
    prctl = _PRCTL
    if prctl is None:
        return None
    parent, signum = os.getpid(), int(sig)

    def preexec() -> None:
        prctl(PR_SET_PDEATHSIG, signum, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the request took effect
            os._exit(1)

    return preexec


class Watchdog:
    """The launcher's side of the watchdog: starts it and tells it which children to stop if it dies."""

    def __init__(self, process: subprocess.Popen[bytes], pipe: IO[str]) -> None:
        self.process = process
        self._pipe = pipe

    @classmethod
    def start(cls, grace: float, *, kernel_signals_children: bool = KERNEL_SIGNALS_CHILDREN) -> Watchdog:
        read, write = os.pipe()  # not inheritable: only the watchdog gets the read end, as its stdin
        argv = [sys.executable, "-m", "conveyor_launcher.orphans", str(os.getpid()), f"{grace:g}"]
        if kernel_signals_children:
            argv.append("--kernel-signals-children")
        try:
            # Its own session: a Ctrl-C or a hang-up meant for the launcher must not stop the watchdog.
            process = subprocess.Popen(argv, stdin=read, stdout=subprocess.DEVNULL, start_new_session=True)
        except BaseException:
            os.close(write)
            raise
        finally:
            os.close(read)
        return cls(process, os.fdopen(write, "w", buffering=1))

    def watch(self, pid: int, name: str) -> None:
        """Stop the process group `pid` (a child started in its own session) if the launcher dies."""
        self._send(f"{pid} {name}")

    def close(self, *, done: bool) -> None:
        """`done`: every child has stopped, the watchdog leaves. Otherwise it stops the children it was given."""
        if done:
            self._send(DONE)
        with contextlib.suppress(OSError):
            self._pipe.close()
        if done:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(5)

    def _send(self, line: str) -> None:
        # A watchdog that died takes the protection with it, not the launcher.
        with contextlib.suppress(OSError, ValueError):
            self._pipe.write(line + "\n")


# ---------------------------------------------------------------- the watchdog process


def watch(lines: Iterable[str], stop: Callable[[dict[int, str]], None]) -> None:
    """Collect `pid name` lines; at the end of the input (the launcher's death) `stop` them, unless `done` came."""
    children: dict[int, str] = {}
    for line in lines:
        word, _, name = line.strip().partition(" ")
        if word == DONE:
            return
        if word.isdigit():
            children[int(word)] = name
    stop(children)


def stop_groups(groups: Iterable[int], *, grace: float, term: bool) -> list[int]:
    """SIGTERM the process groups (when `term`), then SIGKILL them once their leaders are gone or `grace` has
    passed (the leaders' own children go with them); returns the groups whose leader outlived `grace`."""
    groups = list(groups)
    if term:
        for group in groups:
            _killpg(group, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while any(_running(g) for g in groups) and time.monotonic() < deadline:
        time.sleep(0.05)
    late = [g for g in groups if _running(g)]
    for group in groups:
        _killpg(group, signal.SIGKILL)
    return late


def _killpg(group: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(group, sig)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):  # gone, or the pid is someone else's now
        return False
    # Orphans are reaped by init, which may be slow to do it (or never, in a container): a zombie has stopped.
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            return handle.read().rpartition(b")")[2].split()[0] != b"Z"
    except (OSError, IndexError):
        return True  # no /proc: assume it runs until kill says otherwise


def _say(text: str) -> None:
    with contextlib.suppress(OSError, ValueError):
        print(f"conveyor watchdog: {text}", file=sys.stderr, flush=True)


def main(argv: list[str]) -> int:
    launcher, grace, *flags = argv
    term = "--kernel-signals-children" not in flags

    def stop(children: dict[int, str]) -> None:
        if not children:
            return
        names = ", ".join(f"{name} (pid {pid})" for pid, name in children.items())
        _say(f"the launcher (pid {launcher}) is gone; stopping {names}")
        for pid in stop_groups(children, grace=float(grace), term=term):
            _say(f"{children[pid]} did not stop in time: killed it")

    watch(sys.stdin, stop)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
