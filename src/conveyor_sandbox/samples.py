"""Sample workloads the sandbox starts with, so a newcomer has something to deploy to.

Images live under `registry.example.com/demo/...`, except that `make run` starts Deployment web's
container app on its local registry's `demo/web:v1.0.0`. Nothing is ever pulled: the sandbox only
records the images.
"""

from __future__ import annotations

from typing import Any

NAMESPACE = "demo"
SAMPLE_REGISTRY = "registry.example.com"


SAMPLE_WEB_IMAGE = f"{SAMPLE_REGISTRY}/demo/web:1.0.0"


def workloads(namespace: str = NAMESPACE, *, web_image: str | None = None) -> list[dict[str, Any]]:
    return [web(namespace, image=web_image), db(namespace), agent(namespace)]


def web(namespace: str = NAMESPACE, *, image: str | None = None) -> dict[str, Any]:
    """Two containers (app, running `image`, + log shipper) and an init container running migrations."""
    labels = {"app": "web"}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "web",
            "namespace": namespace,
            "labels": dict(labels),
            "annotations": {"team": "demo"},
        },
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": dict(labels)},
            "progressDeadlineSeconds": 600,
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
            "template": {
                "metadata": {"labels": dict(labels)},
                "spec": {
                    "initContainers": [
                        {
                            "name": "migrate",
                            "image": f"{SAMPLE_REGISTRY}/demo/web-migrate:1.0.0",
                            "command": ["/migrate", "--wait"],
                        }
                    ],
                    "containers": [
                        {
                            "name": "app",
                            "image": image or SAMPLE_WEB_IMAGE,
                            "ports": [{"name": "http", "containerPort": 8080}],
                            "env": [{"name": "LOG_LEVEL", "value": "info"}],
                            "readinessProbe": {"httpGet": {"path": "/healthz", "port": "http"}},
                        },
                        {
                            "name": "log-shipper",
                            "image": "docker.io/fluent/fluent-bit:3.0.7",
                            "args": ["-c", "/fluent-bit/etc/fluent-bit.conf"],
                        },
                    ],
                },
            },
        },
    }


def db(namespace: str = NAMESPACE) -> dict[str, Any]:
    labels = {"app": "db"}
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": "db", "namespace": namespace, "labels": labels},
        "spec": {
            "replicas": 2,
            "serviceName": "db",
            "selector": {"matchLabels": dict(labels)},
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}},
            "template": {
                "metadata": {"labels": dict(labels)},
                "spec": {
                    "containers": [
                        {
                            "name": "db",
                            "image": f"{SAMPLE_REGISTRY}/demo/db:16.4",
                            "ports": [{"name": "sql", "containerPort": 5432}],
                        }
                    ]
                },
            },
        },
    }


def agent(namespace: str = NAMESPACE) -> dict[str, Any]:
    labels = {"app": "agent"}
    return {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": "agent", "namespace": namespace, "labels": labels},
        "spec": {
            "selector": {"matchLabels": dict(labels)},
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}},
            "template": {
                "metadata": {"labels": dict(labels)},
                "spec": {"containers": [{"name": "agent", "image": f"{SAMPLE_REGISTRY}/demo/agent:1.0.0"}]},
            },
        },
    }
