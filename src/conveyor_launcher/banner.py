"""The text printed once everything is ready: where each part listens and how to try it."""

from __future__ import annotations

import contextlib
import hashlib
import json
import pathlib
import shlex
import uuid

from conveyor_launcher.plan import (
    SANDBOX_CLUSTER,
    SANDBOX_CONTAINER,
    SANDBOX_FAILING_TAG_HINT,
    SANDBOX_NAMESPACE,
    SANDBOX_REGISTRY,
    SANDBOX_REPOSITORY,
    SANDBOX_WORKLOAD,
    client_address,
)
from conveyor_launcher.settings import KubeContext, LauncherSettings

READY_BANNER = "Conveyor is ready"


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
