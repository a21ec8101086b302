"""What the launcher reads: its environment, the kubeconfig's current context, the persisted webhook token.

| Variable                        | Default                   | Meaning                                      |
|---------------------------------|---------------------------|----------------------------------------------|
| CONVEYOR_DATA_DIR               | ./data                    | database, JetStream store, token, sandbox    |
| CONVEYOR_NATS_URL               | (unset)                   | use this NATS instead of starting one        |
| CONVEYOR_NATS_PORT              | 4222 (else a free port)   | port of the embedded nats-server             |
| CONVEYOR_CONFIG_ADDR            | 127.0.0.1:50051           | config gRPC address                          |
| CONVEYOR_TRIGGER_ADDR           | 127.0.0.1:50052           | trigger gRPC address                         |
| CONVEYOR_DEPLOYER_ADDR          | 127.0.0.1:50053           | deployer gRPC address                        |
| CONVEYOR_WEBHOOK_ADDR           | 127.0.0.1:8080            | trigger's webhook receiver (HTTP)            |
| CONVEYOR_CONFIG_METRICS_ADDR    | 127.0.0.1:9101            | config's Prometheus /metrics                 |
| CONVEYOR_TRIGGER_METRICS_ADDR   | 127.0.0.1:9102            | trigger's Prometheus /metrics                |
| CONVEYOR_DEPLOYER_METRICS_ADDR  | 127.0.0.1:9103            | deployer's Prometheus /metrics               |
| CONVEYOR_DATABASE_URL           | SQLite in the data dir    | config database                              |
| CONVEYOR_WEBHOOK_TOKEN          | generated once, kept in   | the token registries send (Bearer)           |
|                                 | `<data dir>/webhook-token`|                                              |
| CONVEYOR_SANDBOX                | auto                      | auto: a sandbox only without a kubeconfig    |
|                                 |                           | context or CONVEYOR_CLUSTERS_FILE; on; off   |
| CONVEYOR_SANDBOX_PORT           | 0 (a free port)           | the sandbox's Kubernetes API port            |
| CONVEYOR_SANDBOX_ROLLOUT_DELAY  | 2s                        | how long a simulated rollout takes           |
| CONVEYOR_SANDBOX_REGISTRY_PORT  | 5000 (else a free port),  | loopback port of the local registry started  |
|                                 | then the one first used   | with the sandbox (kept in the data dir: the  |
|                                 |                           | demo pipeline and images name it)            |
| CONVEYOR_LOG_FORMAT             | text                      | services' log format (their own default: json) |
| CONVEYOR_LAUNCHER_READY_TIMEOUT | 60s                       | how long each process may take to be ready   |
| CONVEYOR_LAUNCHER_GRACE         | 15s                       | how long each may take to stop (then SIGKILL)|

Any other variable (e.g. CONVEYOR_CLUSTERS_FILE, CONVEYOR_REGISTRIES_FILE, KUBECONFIG) is
passed through to the services unchanged.
"""

from __future__ import annotations

import os
import pathlib
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from conveyor.settings import EnvReader

DEFAULT_NATS_PORT = 4222
DEFAULT_REGISTRY_PORT = 5000


@dataclass(frozen=True)
class LauncherSettings:
    data_dir: pathlib.Path
    nats_url: str | None
    nats_port: int | None  # None: 4222 when free, else a free port
    config_addr: str
    trigger_addr: str
    deployer_addr: str
    webhook_addr: str
    config_metrics_addr: str
    trigger_metrics_addr: str
    deployer_metrics_addr: str
    database_url: str
    webhook_token: str | None
    sandbox: str
    sandbox_port: int
    sandbox_rollout_delay: float
    sandbox_registry_port: int | None  # None: the port kept in the data dir, else 5000 when free, else a free one
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
        explicit_registry_port = reader.optional_str("CONVEYOR_SANDBOX_REGISTRY_PORT")
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
            config_metrics_addr=reader.address("CONVEYOR_CONFIG_METRICS_ADDR", "127.0.0.1:9101"),
            trigger_metrics_addr=reader.address("CONVEYOR_TRIGGER_METRICS_ADDR", "127.0.0.1:9102"),
            deployer_metrics_addr=reader.address("CONVEYOR_DEPLOYER_METRICS_ADDR", "127.0.0.1:9103"),
            database_url=reader.str("CONVEYOR_DATABASE_URL", f"sqlite+aiosqlite:///{data_dir / 'conveyor.db'}"),
            webhook_token=reader.optional_str("CONVEYOR_WEBHOOK_TOKEN"),
            sandbox=reader.choice("CONVEYOR_SANDBOX", "auto", ("auto", "on", "off")),
            sandbox_port=reader.int("CONVEYOR_SANDBOX_PORT", 0, minimum=0, maximum=65535),
            sandbox_rollout_delay=reader.duration("CONVEYOR_SANDBOX_ROLLOUT_DELAY", 2.0),
            sandbox_registry_port=reader.int(
                "CONVEYOR_SANDBOX_REGISTRY_PORT", DEFAULT_REGISTRY_PORT, minimum=1, maximum=65535
            )
            if explicit_registry_port
            else None,
            log_format=reader.choice("CONVEYOR_LOG_FORMAT", "text", ("json", "text")),
            ready_timeout=reader.duration("CONVEYOR_LAUNCHER_READY_TIMEOUT", 60.0, minimum=1.0),
            grace=reader.duration("CONVEYOR_LAUNCHER_GRACE", 15.0),
        )
        reader.check()
        return settings


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
