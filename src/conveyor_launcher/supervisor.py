"""Runs the plan's processes: spawns them in their own sessions, relays their output with a prefix,
waits for each to be ready, and stops them in order on Ctrl-C / SIGTERM or when one dies. If the
launcher itself dies (even by SIGKILL) they die too (`orphans`)."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import pathlib
import shlex
import signal
import sys
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import IO, Any

from conveyor_launcher.orphans import Watchdog, die_with_parent
from conveyor_launcher.plan import SERVICES, ChildSpec, FileExists, GrpcServing, LaunchError, PortOpen, Probe, Step

TAIL_LINES = 40

_COLOURS = {
    "nats": "34",
    "registry": "31",
    "sandbox": "33",
    "config": "32",
    "trigger": "35",
    "deployer": "36",
    "conveyor": "1",
}


class Console:
    """Prefixed lines (`config   | ...`) from every process, coloured by name on a terminal."""

    def __init__(self, stream: IO[str] | None = None, *, colour: bool | None = None) -> None:
        self.stream = stream or sys.stdout
        if colour is None:
            isatty = getattr(self.stream, "isatty", None)
            colour = bool(isatty and isatty()) and "NO_COLOR" not in os.environ
        self.colour = colour
        self.width = max(len(name) for name in _COLOURS)

    def prefix(self, name: str) -> str:
        label = f"{name:<{self.width}} |"
        if self.colour:
            return f"\x1b[{_COLOURS.get(name, '0')}m{label}\x1b[0m"
        return label

    def line(self, name: str, text: str) -> None:
        try:
            self.stream.write(f"{self.prefix(name)} {text}\n")
            self.stream.flush()
        except (BrokenPipeError, ValueError):
            pass  # nobody is reading our output any more; keep supervising

    def say(self, text: str) -> None:
        for part in text.split("\n"):
            self.line("conveyor", part)


@dataclass
class Child:
    spec: ChildSpec
    process: asyncio.subprocess.Process
    tail: collections.deque[str] = field(default_factory=lambda: collections.deque(maxlen=TAIL_LINES))
    pump: asyncio.Task[None] | None = None

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def pid(self) -> int:
        return int(self.process.pid)


class ChildExited(Exception):
    def __init__(self, child: Child, code: int | None) -> None:
        super().__init__(f"{child.name} exited with status {code}")
        self.child = child
        self.code = code


class Supervisor:
    """Starts children in their own sessions, relays their output, and stops them in reverse order."""

    def __init__(self, console: Console, *, grace: float) -> None:
        self.console = console
        self.grace = grace
        self.children: list[Child] = []
        self.stop_requested = asyncio.Event()
        self.force = asyncio.Event()
        self.watchdog: Watchdog | None = None

    # ------------------------------------------------------------ running everything

    async def run(self, startup: Coroutine[Any, Any, None]) -> int:
        """Run `startup`, then supervise until Ctrl-C / SIGTERM (0) or a child's death (1)."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.on_signal, sig)
        self.watchdog = Watchdog.start(self.grace)
        try:
            return await self._run(startup)
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
            self.watchdog.close(done=all(c.process.returncode is not None for c in self.children))

    def on_signal(self, sig: signal.Signals) -> None:
        if self.stop_requested.is_set():
            self.console.say("second interrupt: killing everything now")
            self.force.set()
            return
        self.console.say(f"received {sig.name}: stopping")
        self.stop_requested.set()

    async def _run(self, startup: Coroutine[Any, Any, None]) -> int:
        try:
            starting = asyncio.create_task(startup)
            stop_wait = asyncio.create_task(self.stop_requested.wait())
            await asyncio.wait({starting, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
            if not starting.done():
                starting.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await starting
                await self.stop_all(force=self.force)
                return 0
            stop_wait.cancel()
            starting.result()
        except ChildExited as exc:
            self._report_death(exc.child, exc.code)
            await self.stop_all(force=self.force)
            return 1
        except LaunchError as exc:
            self.console.say(f"error: {exc}")
            for child in self.children:
                self._print_tail(child)
            await self.stop_all(force=self.force)
            return 1

        exited = asyncio.create_task(self.wait_any_exit())
        stop_wait = asyncio.create_task(self.stop_requested.wait())
        await asyncio.wait({exited, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
        if exited.done() and not self.stop_requested.is_set():
            child = exited.result()
            self._report_death(child, child.process.returncode)
            await self.stop_all(force=self.force)
            return 1
        exited.cancel()
        stop_wait.cancel()
        await self.stop_all(force=self.force)
        self.console.say("stopped")
        return 0

    def _report_death(self, child: Child, code: int | None) -> None:
        self.console.say(f"error: {child.name} exited unexpectedly with status {code}; stopping the others")
        self._print_tail(child)

    def _print_tail(self, child: Child) -> None:
        if not child.tail:
            return
        self.console.say(f"last lines of {child.name}:")
        for line in child.tail:
            self.console.say(f"  {line}")

    async def start_step(self, step: Step, ready_timeout: float) -> None:
        """Print the step's notes, prepare its files, start its processes and wait until all are ready
        (the step's actions are the caller's)."""
        for note in step.notes:
            self.console.say(note)
        for path in step.mkdirs:
            path.mkdir(parents=True, exist_ok=True)
        for path in step.unlink:
            path.unlink(missing_ok=True)
        for path, text in step.writes:
            write_private(path, text)
        started = [(await self.start(start.spec), start.ready) for start in step.start]
        await all_of(*(self.wait_ready(child, probe_check(ready), ready_timeout) for child, ready in started))

    # ------------------------------------------------------------ one child

    async def start(self, spec: ChildSpec) -> Child:
        process = await asyncio.create_subprocess_exec(
            *spec.argv,
            env=spec.env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            # Own session: the terminal's Ctrl-C reaches only the launcher, which stops
            # the children in order (NATS last, so the services can drain into it).
            start_new_session=True,
            # Spawned from the event loop's thread, which lives as long as the launcher.
            preexec_fn=die_with_parent(),
            limit=1024 * 1024,
        )
        if self.watchdog is not None:
            self.watchdog.watch(process.pid, spec.name)
        child = Child(spec, process)
        child.pump = asyncio.create_task(self._pump(child), name=f"pump-{spec.name}")
        self.children.append(child)
        self.console.say(f"started {spec.name} (pid {child.pid}): {shlex.join(_short_argv(spec.argv))}")
        return child

    async def _pump(self, child: Child) -> None:
        assert child.process.stdout is not None
        while True:
            try:
                raw = await child.process.stdout.readline()
            except ValueError:  # a line longer than the limit: drop what was buffered
                continue
            if not raw:
                return
            text = raw.decode(errors="replace").rstrip("\r\n")
            child.tail.append(text)
            if child.spec.show is None or child.spec.show(text):
                self.console.line(child.name, text)

    async def wait_ready(self, child: Child, check: Callable[[], Awaitable[bool]], timeout: float) -> None:
        """Poll `check` until it is true; fail if the child exits or time runs out."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            if child.process.returncode is not None:
                await self._drain(child)
                raise ChildExited(child, child.process.returncode)
            with contextlib.suppress(Exception):
                if await asyncio.wait_for(check(), timeout=max(0.1, min(2.0, deadline - loop.time()))):
                    return
            if loop.time() > deadline:
                raise LaunchError(f"{child.name} did not become ready within {timeout:g}s")
            await asyncio.sleep(0.1)

    async def wait_any_exit(self) -> Child:
        """The first child to exit (the caller decides whether that was expected)."""
        waits = {asyncio.create_task(c.process.wait()): c for c in self.children}
        try:
            done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in waits:
                task.cancel()
        child = waits[next(iter(done))]
        await self._drain(child)
        return child

    async def _drain(self, child: Child) -> None:
        if child.pump is not None:
            with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(child.pump), 2.0)

    # ------------------------------------------------------------ stopping

    async def stop(self, children: list[Child], *, force: asyncio.Event | None = None) -> None:
        """SIGTERM these children together, wait up to the grace period (or `force`), then SIGKILL."""
        running = [c for c in children if c.process.returncode is None]
        for child in running:
            self.console.say(f"stopping {child.name} (pid {child.pid})")
            _signal(child, signal.SIGTERM)
        waits = [asyncio.create_task(c.process.wait()) for c in running]
        if waits:
            forced = asyncio.create_task(force.wait()) if force is not None else None
            pending = {*waits, *([forced] if forced else [])}
            loop = asyncio.get_running_loop()
            deadline = loop.time() + self.grace
            while any(not w.done() for w in waits) and (forced is None or not forced.done()):
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                _, pending = await asyncio.wait(pending, timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
            if forced is not None:
                forced.cancel()
        for child in running:
            if child.process.returncode is None:
                self.console.say(f"{child.name} did not stop in time: killing it")
                _signal(child, signal.SIGKILL)
                await child.process.wait()
        for child in children:
            await self._drain(child)

    async def stop_all(self, *, force: asyncio.Event | None = None) -> None:
        """Services first (together), then the sandbox, then NATS: the reverse of starting."""
        services = [c for c in self.children if c.name in SERVICES]
        others = [c for c in reversed(self.children) if c.name not in SERVICES]
        await self.stop(services, force=force)
        for child in others:
            await self.stop([child], force=force)


def write_private(path: pathlib.Path, text: str) -> None:
    """Replace `path` with `text`, readable by the owner only (a generated file may hold the webhook token)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    temporary.replace(path)


def _signal(child: Child, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        child.process.send_signal(sig)


def _short_argv(argv: list[str]) -> list[str]:
    first = pathlib.Path(argv[0])
    if first.parent == pathlib.Path(sys.executable).parent:
        return [first.name, *argv[1:]]
    return argv


async def all_of(*waits: Awaitable[None]) -> None:
    """Await all; on the first failure cancel the rest and raise it."""
    tasks = [asyncio.ensure_future(w) for w in waits]
    try:
        for next_done in asyncio.as_completed(tasks):
            await next_done
    finally:
        for task in tasks:
            task.cancel()


# ---------------------------------------------------------------- readiness checks


def probe_check(probe: Probe) -> Callable[[], Awaitable[bool]]:
    match probe:
        case PortOpen(host, port):
            return port_open_check(host, port)
        case FileExists(path):
            return file_check(path)
        case GrpcServing(address):
            return grpc_serving_check(address)


def port_open_check(host: str, port: int) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        try:
            _, writer = await asyncio.open_connection(host, port)
        except OSError:
            return False
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return True

    return check


def file_check(path: pathlib.Path) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return await asyncio.to_thread(path.exists)

    return check


def grpc_serving_check(address: str) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return await grpc_serving(address)

    return check


async def grpc_serving(address: str, timeout: float = 1.0) -> bool:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    async with grpc.aio.insecure_channel(address) as channel:
        try:
            reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=timeout)
        except grpc.aio.AioRpcError:
            return False
        return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)
