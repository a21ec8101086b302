"""conveyor-deployer settings, read once from the environment at start-up and validated.

| Variable | Default | Meaning |
|---|---|---|
| `CONVEYOR_DEPLOYER_ADDR` | `127.0.0.1:50053` | gRPC listen address (TargetService, health, reflection) |
| `CONVEYOR_CLUSTERS_FILE` | unset | clusters YAML (`conveyor_deployer.adapters.clusters`); unset: current context |
| `KUBECONFIG` | `~/.kube/config` | kubeconfig file(s) for clusters that name none (standard variable) |
| `CONVEYOR_NATS_URL` | `nats://127.0.0.1:4222` | NATS server with JetStream |
| `CONVEYOR_LOG_LEVEL` | `info` | `debug`, `info`, `warning` or `error` |
| `CONVEYOR_LOG_FORMAT` | `json` | `json` (one object per line) or `text` |
| `CONVEYOR_DEPLOYER_METRICS_ADDR` | unset | `HOST:PORT` for Prometheus `/metrics`; unset: none |
| `CONVEYOR_DEPLOYER_MAX_CONCURRENT_RUNS` | `16` | runs deploying/verifying at once (one per workload) |
| `CONVEYOR_DEPLOYER_MAX_HELD_REQUESTS` | `1000` | deploy requests held (queued + running) before fetching pauses |
| `CONVEYOR_DEPLOYER_KUBE_CONCURRENCY` | `8` | Kubernetes API calls in flight (threads of the synchronous client) |
| `CONVEYOR_DEPLOYER_KUBE_TIMEOUT` | `15s` | timeout of one Kubernetes API call |
| `CONVEYOR_DEPLOYER_KUBE_RETRIES` | `5` | attempts for a call failing with a timeout, connection error, 429 or 5xx |
| `CONVEYOR_DEPLOYER_KUBE_BACKOFF` | `500ms` | first wait between those attempts (doubles each time) |
| `CONVEYOR_DEPLOYER_KUBE_MAX_BACKOFF` | `10s` | longest wait between attempts |
| `CONVEYOR_DEPLOYER_CONFLICT_RETRIES` | `5` | re-reads after a patch met a concurrent change (409 / failed `test`) |
| `CONVEYOR_DEPLOYER_POLL_INTERVAL` | `2s` | how often status and pods are read while following a rollout |
| `CONVEYOR_DEPLOYER_DEFAULT_ROLLOUT_TIMEOUT` | `10m` | rollout timeout when the pipeline sets none (max 6h) |
| `CONVEYOR_DEPLOYER_ACK_WAIT` | `30s` | JetStream ack wait; in-progress acks are sent every third of it |
| `CONVEYOR_DEPLOYER_SHUTDOWN_GRACE` | `20s` | on SIGTERM, time for in-flight runs to finish before being handed back |
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Mapping
from dataclasses import dataclass

from conveyor.settings import CommonSettings, EnvReader

SERVICE = "deployer"


@dataclass(frozen=True)
class DeployerSettings:
    common: CommonSettings
    address: str
    clusters_file: pathlib.Path | None
    max_concurrent_runs: int
    max_held_requests: int
    kube_concurrency: int
    kube_timeout: float
    kube_retries: int
    kube_backoff: float
    kube_max_backoff: float
    conflict_retries: int
    poll_interval: float
    default_rollout_timeout: float
    ack_wait: float
    shutdown_grace: float

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> DeployerSettings:
        """Read and validate; raises SettingsError listing every invalid variable."""
        reader = EnvReader(dict(os.environ if environ is None else environ))
        common = CommonSettings.read(reader, service=SERVICE)
        settings = cls(
            common=common,
            address=reader.address("CONVEYOR_DEPLOYER_ADDR", "127.0.0.1:50053"),
            clusters_file=reader.path("CONVEYOR_CLUSTERS_FILE", None),
            max_concurrent_runs=reader.int("CONVEYOR_DEPLOYER_MAX_CONCURRENT_RUNS", 16, minimum=1, maximum=1000),
            max_held_requests=reader.int("CONVEYOR_DEPLOYER_MAX_HELD_REQUESTS", 1000, minimum=1, maximum=100_000),
            kube_concurrency=reader.int("CONVEYOR_DEPLOYER_KUBE_CONCURRENCY", 8, minimum=1, maximum=256),
            kube_timeout=reader.duration("CONVEYOR_DEPLOYER_KUBE_TIMEOUT", 15.0, minimum=0.1),
            kube_retries=reader.int("CONVEYOR_DEPLOYER_KUBE_RETRIES", 5, minimum=1, maximum=100),
            kube_backoff=reader.duration("CONVEYOR_DEPLOYER_KUBE_BACKOFF", 0.5, minimum=0.0),
            kube_max_backoff=reader.duration("CONVEYOR_DEPLOYER_KUBE_MAX_BACKOFF", 10.0, minimum=0.0),
            conflict_retries=reader.int("CONVEYOR_DEPLOYER_CONFLICT_RETRIES", 5, minimum=0, maximum=100),
            poll_interval=reader.duration("CONVEYOR_DEPLOYER_POLL_INTERVAL", 2.0, minimum=0.01),
            default_rollout_timeout=reader.duration("CONVEYOR_DEPLOYER_DEFAULT_ROLLOUT_TIMEOUT", 600.0, minimum=1.0),
            ack_wait=reader.duration("CONVEYOR_DEPLOYER_ACK_WAIT", 30.0, minimum=1.0),
            shutdown_grace=reader.duration("CONVEYOR_DEPLOYER_SHUTDOWN_GRACE", 20.0, minimum=0.0),
        )
        reader.check()
        return settings

    @property
    def heartbeat_interval(self) -> float:
        return self.ack_wait / 3
