"""Realistic registry webhook payloads, one directory per `POST /webhooks/{format}` format.

`SAMPLES` describes each file: the format, the headers/query a real registry sends with
it, and what the trigger must make of it (the normalised pushes, and how many events are
ignored). Unit tests feed them to the parsers, integration tests post them to the real
receiver, and the registry/e2e tests can post them too (`sample.body()`, `sample.headers`).

The two `distribution_real_*.json` files are captured from a real Distribution 2.8
registry by `python -m tests.support.registry capture tests/support/webhook_payloads`.
"""

from __future__ import annotations

import json
import pathlib
from dataclasses import dataclass, field
from typing import Any

ROOT = pathlib.Path(__file__).parent


@dataclass(frozen=True)
class ExpectedPush:
    registry: str
    repository: str
    tag: str
    digest: str = ""


@dataclass(frozen=True)
class Sample:
    name: str
    format: str
    file: str
    expected: tuple[ExpectedPush, ...] = ()
    ignored: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    query: dict[str, str] = field(default_factory=dict)

    @property
    def path(self) -> pathlib.Path:
        return ROOT / self.file

    def body(self) -> bytes:
        return self.path.read_bytes()

    def json(self) -> Any:
        return json.loads(self.body())


DIGESTS = {
    "manifest": "sha256:05b3abf2579a5eb66403cd78be557fd860633a1fe2103c7642030defe32c657f",
    "index": "sha256:1bc04b5291c26a46d918139138b992d2de976d6851d0893b0476b85bfbdfc6e6",
    "amd64": "sha256:5861314d7fccb39c2192173240eab44fa35ca66426201ca2acd0630a6258dd51",
    "harbor": "sha256:c1d64b2d4cb30f1be788cc4d246ddd9fc1fe85a3eb3a85a3de33829dfaf6ce7d",
    "tcr": "sha256:1fde0b02049a9bea6fc97de3047c83fc6c72865e6a0f02fed5c1b5327fd69ca6",
    "aliyun": "sha256:5a5c07672a4efaf609e62d921a60bf7cc0e9722a8b9608520d694520c0c41407",
    "github": "sha256:c0b0109d9439de57fe3cf03abeccbc52f4c98170c732d3b69af5e6395ace574e",
    "azure": "sha256:79f43c3b9c23fbdf293bdba80dab38ba194fc1da79187091b3d3760dad840bf8",
    "ecr": "sha256:02915c173f5b5238c520514331165c9c1e1d2a5a6d088b612fd675a5f265a853",
    "gar": "sha256:b974ebb9a97901339d70cbd59a98baeb15228d9f39e326d41014aa938512c4e9",
}

_DIST = "registry.example.com:5000"
_GAR = "europe-west1-docker.pkg.dev"
_CE = "application/cloudevents+json"


def _s(name: str, fmt: str, file: str, *expected: ExpectedPush, ignored: int = 0, **kw: Any) -> Sample:
    return Sample(name, fmt, file, tuple(expected), ignored, **kw)


def _real(name: str, file: str, repository: str, tag: str) -> Sample:
    """A captured envelope: the registry's port and the digests change with each capture, so the
    expectation reads them from the tagged manifest event (host = the Host the client pushed to)."""
    events = json.loads((ROOT / file).read_text())["events"]
    tagged = [e for e in events if e["action"] == "push" and e["target"].get("tag") == tag]
    host, digest = tagged[0]["request"]["host"], tagged[0]["target"]["digest"]
    return _s(
        name,
        "distribution",
        file,
        ExpectedPush(host, repository, tag, digest),
        ignored=len(events) - 1,
        headers={"Content-Type": "application/vnd.docker.distribution.events.v1+json"},
    )


SAMPLE_LIST = [
    # CNCF Distribution (docker-registry): a real push is blob events then the tagged manifest.
    _s(
        "distribution-push",
        "distribution",
        "distribution/push.json",
        ExpectedPush(_DIST, "team/app", "v1.2.3", DIGESTS["manifest"]),
        ignored=2,
        headers={"Content-Type": "application/vnd.docker.distribution.events.v1+json"},
    ),
    _s(
        "distribution-index-v2",
        "distribution",
        "distribution/push_index_v2.json",
        ExpectedPush(_DIST, "team/app", "v2.0.0", DIGESTS["index"]),
        ignored=2,
        headers={"Content-Type": "application/vnd.docker.distribution.events.v2+json"},
    ),
    _s("distribution-digest-only", "distribution", "distribution/digest_only.json", ignored=1),
    _s("distribution-pull", "distribution", "distribution/pull.json", ignored=2),
    _s("distribution-delete", "distribution", "distribution/delete.json", ignored=1),
    _s(
        "distribution-batch",
        "distribution",
        "distribution/batch.json",
        ExpectedPush(_DIST, "team/app", "latest", DIGESTS["manifest"]),
        ExpectedPush(_DIST, "team/worker", "2024.05.14", DIGESTS["index"]),
        ignored=1,
    ),
    _real("distribution-real-tagged", "distribution_real_tagged_push.json", "team/app", "v1.2.3"),
    _real("distribution-real-index", "distribution_real_index_push.json", "team/multiarch", "v2.0.0"),
    # Harbor 2.x: Default and CloudEvents payload formats.
    _s(
        "harbor-push",
        "harbor",
        "harbor/push_default.json",
        ExpectedPush("harbor.example.com", "team/app", "v1.2.3", DIGESTS["harbor"]),
    ),
    _s(
        "harbor-cloudevents-push",
        "harbor",
        "harbor/push_cloudevents.json",
        ExpectedPush("harbor.example.com", "team/app", "v1.2.4", DIGESTS["harbor"]),
        headers={"Content-Type": _CE},
    ),
    _s("harbor-untagged", "harbor", "harbor/push_untagged.json", ignored=1),
    _s("harbor-pull", "harbor", "harbor/pull_default.json", ignored=1),
    _s("harbor-ce-delete", "harbor", "harbor/delete_cloudevents.json", ignored=1, headers={"Content-Type": _CE}),
    _s("harbor-scan", "harbor", "harbor/scanning_completed.json", ignored=1),
    # Tencent TCR (Harbor 1.x shape).
    _s(
        "tcr-push",
        "tcr",
        "tcr/push.json",
        ExpectedPush("demo.tencentcloudcr.com", "team/app", "release-42", DIGESTS["tcr"]),
    ),
    _s("tcr-delete", "tcr", "tcr/delete.json", ignored=1),
    _s("dockerhub-push", "dockerhub", "dockerhub/push.json", ExpectedPush("docker.io", "acme/app", "1.4.0")),
    _s(
        "aliyun-push",
        "aliyun",
        "aliyun/push.json",
        ExpectedPush("registry.cn-hangzhou.aliyuncs.com", "team/app", "20240514-1", DIGESTS["aliyun"]),
    ),
    _s(
        "quay-push-list",
        "quay",
        "quay/push_list.json",
        ExpectedPush("quay.io", "team/app", "v3.0.0"),
        ExpectedPush("quay.io", "team/app", "latest"),
    ),
    # The older map shape maps tags to (v1) image ids, not digests.
    _s("quay-push-map", "quay", "quay/push_map.json", ExpectedPush("quay.example.com", "team/app", "v2.9.1")),
    _s("quay-build", "quay", "quay/build_complete.json", ignored=1),
    _s(
        "github-registry-package",
        "github",
        "github/registry_package_published.json",
        ExpectedPush("ghcr.io", "acme-org/app", "v5.1.0", DIGESTS["github"]),
        headers={"X-GitHub-Event": "registry_package", "X-GitHub-Delivery": "72d3162e-cc78-11e3-81ab-4c9367dc0958"},
    ),
    _s(
        "github-package",
        "github",
        "github/package_published.json",
        ExpectedPush("ghcr.io", "acme-org/app", "v5.1.1", DIGESTS["github"]),
        headers={"X-GitHub-Event": "package", "X-GitHub-Delivery": "8f1a2b3c-cc78-11e3-81ab-4c9367dc0958"},
    ),
    _s(
        "github-untagged",
        "github",
        "github/registry_package_untagged.json",
        ignored=1,
        headers={"X-GitHub-Event": "registry_package", "X-GitHub-Delivery": "9a0b1c2d-cc78-11e3-81ab-4c9367dc0958"},
    ),
    _s(
        "github-npm",
        "github",
        "github/npm_published.json",
        ignored=1,
        headers={"X-GitHub-Event": "registry_package", "X-GitHub-Delivery": "0b1c2d3e-cc78-11e3-81ab-4c9367dc0958"},
    ),
    _s(
        "github-ping",
        "github",
        "github/ping.json",
        ignored=1,
        headers={"X-GitHub-Event": "ping", "X-GitHub-Delivery": "1c2d3e4f-cc78-11e3-81ab-4c9367dc0958"},
    ),
    _s(
        "azure-push",
        "azure",
        "azure/push.json",
        ExpectedPush("myregistry.azurecr.io", "team/app", "v7", DIGESTS["azure"]),
    ),
    _s("azure-delete", "azure", "azure/delete.json", ignored=1),
    _s("azure-ping", "azure", "azure/ping.json", ignored=1),
    _s(
        "ecr-push",
        "ecr",
        "ecr/push.json",
        ExpectedPush("123456789012.dkr.ecr.eu-west-1.amazonaws.com", "team/app", "2024.05.14-3", DIGESTS["ecr"]),
    ),
    _s("ecr-push-failed", "ecr", "ecr/push_failed.json", ignored=1),
    _s("ecr-delete", "ecr", "ecr/delete.json", ignored=1),
    _s("ecr-scan", "ecr", "ecr/scan.json", ignored=1),
    _s(
        "gar-insert",
        "gar",
        "gar/insert.json",
        ExpectedPush(_GAR, "acme-prod/containers/app", "v9.0.1", DIGESTS["gar"]),
    ),
    _s("gar-insert-digest-only", "gar", "gar/insert_digest_only.json", ignored=1),
    _s("gar-delete", "gar", "gar/delete.json", ignored=1),
]

SAMPLES: dict[str, Sample] = {sample.name: sample for sample in SAMPLE_LIST}
FORMATS = sorted({sample.format for sample in SAMPLE_LIST})


def by_format(fmt: str) -> list[Sample]:
    return [sample for sample in SAMPLE_LIST if sample.format == fmt]
