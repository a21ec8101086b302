"""The text printed once everything is ready: where each part listens and how to try it."""

from __future__ import annotations

import contextlib
import hashlib
import json
import pathlib
import shlex
import uuid
from collections.abc import Set

from conveyor_launcher.plan import (
    DEMO_PIPELINE,
    DEMO_TAG_FILTER,
    SANDBOX_CLUSTER,
    SANDBOX_CONTAINER,
    SANDBOX_FAILING_TAG_HINT,
    SANDBOX_NAMESPACE,
    SANDBOX_REGISTRY,
    SANDBOX_REPOSITORY,
    SANDBOX_WORKLOAD,
    DemoRegistry,
    client_address,
)
from conveyor_launcher.settings import KubeContext, LauncherSettings
from conveyor_sandbox import images

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
    registry: DemoRegistry | None = None,
    registry_tags: Set[str] = frozenset(),
) -> str:
    """`registry` and the demo repository's `registry_tags` come with the sandbox."""
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
        f"  metrics   config http://{client_address(settings.config_metrics_addr)}/metrics   "
        f"trigger http://{client_address(settings.trigger_metrics_addr)}/metrics   "
        f"deployer http://{client_address(settings.deployer_metrics_addr)}/metrics",
        "            (Prometheus; a Grafana dashboard and alerting rules are in deploy/monitoring/)",
    ]
    if sandbox_kubeconfig is not None:
        assert registry is not None, "the sandbox comes with its registry"
        lines += [
            f"  registry  http://{registry.host}: a local docker-registry notifying the trigger "
            f"(storage {display_path(str(registry.storage))})",
            f"            {images.DEMO_REPOSITORY} tags: {' '.join(sorted(registry_tags)) or '(none)'}",
            f"  cluster   {SANDBOX_CLUSTER}: a SANDBOX (Kubernetes API emulator; nothing really runs), "
            f"kubeconfig {sandbox_kubeconfig}",
            f"            samples in namespace {SANDBOX_NAMESPACE}: deployment/web (containers app, log-shipper), "
            "statefulset/db, daemonset/agent",
            f"  pipeline  {DEMO_PIPELINE}: pushes of {registry.host}/{images.DEMO_REPOSITORY} tagged {DEMO_TAG_FILTER} "
            f"(a full match) deploy to deployment/{SANDBOX_WORKLOAD}, container {SANDBOX_CONTAINER}",
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
        assert registry is not None
        push = images.push_command(
            display_path(str(registry.layout)),
            images.DEMO_NEXT_TAG,
            registry.host,
            images.DEMO_REPOSITORY,
            next_tag(registry_tags),
        )
        broken = next((tag for tag in sorted(registry_tags) if SANDBOX_FAILING_TAG_HINT in tag), None)
        lines += [
            "  1. push a new tag to the local registry (the demo image layout, with skopeo):",
            f"     {push}",
            "  2. watch it deploy (the registry notifies the trigger, which starts a run):",
            f"     {conveyorctl} runs list {DEMO_PIPELINE}",
            f"     {conveyorctl} runs logs -f <NAME from runs list>",
            f"     {conveyorctl} targets containers {SANDBOX_WORKLOAD} -n {SANDBOX_NAMESPACE}",
            "  3. the tags it can deploy, with their digests:",
            f"     {conveyorctl} pipelines tags {DEMO_PIPELINE} --digests",
            "  4. start a run by hand; a tag the registry does not have is refused:",
            f"     {conveyorctl} pipelines start {DEMO_PIPELINE} --tag {missing_tag(registry_tags)}",
        ]
        if broken:
            lines += [
                f"     and one the sandbox cannot pull (it ends in '{SANDBOX_FAILING_TAG_HINT}'): FAILED, rolled back:",
                f"     {conveyorctl} pipelines start {DEMO_PIPELINE} --tag {broken} -f",
            ]
        lines += ["  and why a push did or did not deploy:", f"     {conveyorctl} events list"]
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


def next_tag(tags: Set[str]) -> str:
    """The tag for the banner's push: the demo's next version, or the first later minor not pushed yet."""
    if images.DEMO_NEXT_TAG not in tags:
        return images.DEMO_NEXT_TAG
    minor = 3
    while f"v1.{minor}.0" in tags:
        minor += 1
    return f"v1.{minor}.0"


def missing_tag(tags: Set[str]) -> str:
    """A plausible typo of a demo tag that the registry does not have."""
    return next(tag for tag in ("v1.1", "v1.0.1", "v9.9.9") if tag not in tags)


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
