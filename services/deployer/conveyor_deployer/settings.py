"""conveyor-deployer settings, read once from the environment at start-up and validated.

Each field is declared once below (variable, default, parser, meaning); the README table
("### conveyor-deployer") is checked against these declarations, and the table at the end of
this docstring is generated from them.
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from conveyor import settings as s
from conveyor.settings import CommonSettings, EnvReader, Setting

SERVICE = "deployer"
METRICS_DOC = "`HOST:PORT` for Prometheus `/metrics`; unset: none"
# Read by the clusters adapter (and the Kubernetes client) from the environment itself, not a field.
KUBECONFIG_ROW = (
    "| `KUBECONFIG` | `~/.kube/config` | kubeconfig file(s) for clusters that name none (standard variable) |"
)


@dataclass(frozen=True)
class DeployerSettings:
    common: CommonSettings
    address: str = s.setting(
        "CONVEYOR_DEPLOYER_ADDR",
        "127.0.0.1:50053",
        parse=s.address(),
        doc="gRPC listen address (TargetService, health, reflection)",
    )
    clusters_file: pathlib.Path | None = s.setting(
        "CONVEYOR_CLUSTERS_FILE",
        None,
        parse=s.path(),
        doc="clusters YAML (`conveyor_deployer.adapters.clusters`); unset: current context",
    )
    max_concurrent_runs: int = s.setting(
        "CONVEYOR_DEPLOYER_MAX_CONCURRENT_RUNS",
        16,
        parse=s.integer(minimum=1, maximum=1000),
        doc="runs deploying/verifying at once (one per workload)",
    )
    max_held_requests: int = s.setting(
        "CONVEYOR_DEPLOYER_MAX_HELD_REQUESTS",
        1000,
        parse=s.integer(minimum=1, maximum=100_000),
        doc="deploy requests held (queued + running) before fetching pauses",
    )
    kube_concurrency: int = s.setting(
        "CONVEYOR_DEPLOYER_KUBE_CONCURRENCY",
        8,
        parse=s.integer(minimum=1, maximum=256),
        doc="Kubernetes API calls in flight (threads of the synchronous client)",
    )
    kube_timeout: float = s.setting(
        "CONVEYOR_DEPLOYER_KUBE_TIMEOUT", 15.0, parse=s.duration(minimum=0.1), doc="timeout of one Kubernetes API call"
    )
    kube_retries: int = s.setting(
        "CONVEYOR_DEPLOYER_KUBE_RETRIES",
        5,
        parse=s.integer(minimum=1, maximum=100),
        doc="attempts for a call failing with a timeout, connection error, 429 or 5xx",
    )
    kube_backoff: float = s.setting(
        "CONVEYOR_DEPLOYER_KUBE_BACKOFF",
        0.5,
        parse=s.duration(),
        doc="first wait between those attempts (doubles each time)",
    )
    kube_max_backoff: float = s.setting(
        "CONVEYOR_DEPLOYER_KUBE_MAX_BACKOFF", 10.0, parse=s.duration(), doc="longest wait between attempts"
    )
    conflict_retries: int = s.setting(
        "CONVEYOR_DEPLOYER_CONFLICT_RETRIES",
        5,
        parse=s.integer(minimum=0, maximum=100),
        doc="re-reads after a patch met a concurrent change (409 / failed `test`)",
    )
    poll_interval: float = s.setting(
        "CONVEYOR_DEPLOYER_POLL_INTERVAL",
        2.0,
        parse=s.duration(minimum=0.01),
        doc="how often status and pods are read while following a rollout",
    )
    default_rollout_timeout: float = s.setting(
        "CONVEYOR_DEPLOYER_DEFAULT_ROLLOUT_TIMEOUT",
        600.0,
        parse=s.duration(minimum=1.0),
        doc="rollout timeout when the pipeline sets none (max 6h)",
    )
    ack_wait: float = s.setting(
        "CONVEYOR_DEPLOYER_ACK_WAIT",
        10.0,
        parse=s.duration(minimum=1.0),
        doc="JetStream ack wait; in-progress acks are sent every third of it (a dead replica's runs resume after it)",
    )
    lease_ttl: float = s.setting(
        "CONVEYOR_DEPLOYER_LEASE_TTL",
        10.0,
        parse=s.duration(minimum=1.0),
        doc="TTL of the per-workload leases (KV `conveyor_deploy_leases`, set when it is created); renewed every "
        "third of it",
    )
    shutdown_grace: float = s.setting(
        "CONVEYOR_DEPLOYER_SHUTDOWN_GRACE",
        20.0,
        parse=s.duration(),
        doc="on SIGTERM, time for in-flight runs to finish before being handed back (nak); "
        "at most until 30s into the 40s stop",
    )

    @staticmethod
    def declarations() -> list[Setting[Any]]:
        """Every variable read (the README table's rows, KUBECONFIG aside)."""
        return [*CommonSettings.declarations(SERVICE, metrics_doc=METRICS_DOC), *s.declarations(DeployerSettings)]

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> DeployerSettings:
        """Read and validate; raises SettingsError listing every invalid variable."""
        reader = EnvReader(dict(os.environ if environ is None else environ))
        common = CommonSettings.read(reader, service=SERVICE)
        settings = s.read_settings(cls, reader.environ, problems=reader.problems, common=common)
        reader.check()
        return settings

    @property
    def heartbeat_interval(self) -> float:
        return self.ack_wait / 3


__doc__ = f"{__doc__}\n{s.markdown_table(DeployerSettings.declarations())}\n{KUBECONFIG_ROW}\n"
