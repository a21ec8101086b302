"""What the benchmarks deploy: pipelines, Kubernetes workloads and registry webhooks.

Names are chosen so every scenario's objects are told apart at a glance:

- `lat-NNNN`: the latency pipelines (one repository and one Deployment each);
- `fan-NNNN`: the fan-out pipelines (all watching `bench/fanout`, one Deployment each);
- `seed-NNNNNN`: bulk-loaded pipelines (10 per repository `bench/seed-rNNNNN`, tag filters
  EXACT or REGEX, target cluster `seed`, which the deployer does not know: nothing of them is
  ever deployed);
- pushes to `bench/unwatched` (ingest) match no pipeline.
"""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

from conveyor.v1 import bus_pb2, pipeline_pb2

REGISTRY = "registry.bench.local"
CLUSTER = "bench"
NAMESPACE = "bench"
CONTAINER = "app"
SEED_CLUSTER = "seed"
FANOUT_REPOSITORY = "bench/fanout"
UNWATCHED_REPOSITORY = "bench/unwatched"
PIPELINES_PER_SEED_REPOSITORY = 10

_FILTER = pipeline_pb2.TagFilter
# Tag filters of the 10 pipelines of a seed repository, by position (realistic mixes of EXACT and RE2).
SEED_FILTERS: tuple[tuple[pipeline_pb2.TagFilter.Type, str], ...] = (
    (_FILTER.EXACT, "release-0"),
    (_FILTER.EXACT, "release-1"),
    (_FILTER.EXACT, "stable"),
    (_FILTER.EXACT, "latest"),
    (_FILTER.REGEX, r"v[0-9]+\.[0-9]+\.[0-9]+"),
    (_FILTER.REGEX, r"v[0-9]+\.[0-9]+\.[0-9]+-rc[0-9]+"),
    (_FILTER.REGEX, r"main-[0-9a-f]{7}"),
    (_FILTER.REGEX, r"(staging|prod)-[0-9]+"),
    (_FILTER.REGEX, r"release-.*"),
    (_FILTER.REGEX, r".*-hotfix"),
)


def latency_id(index: int) -> str:
    return f"lat-{index:04d}"


def fanout_id(index: int) -> str:
    return f"fan-{index:04d}"


def seed_id(index: int) -> str:
    return f"seed-{index:06d}"


def seed_repository(index: int) -> str:
    return f"bench/seed-r{index // PIPELINES_PER_SEED_REPOSITORY:05d}"


def seed_namespace(index: int) -> str:
    return f"ns-{index % 10}"


def digest_of(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def image(repository: str, tag: str) -> str:
    return f"{REGISTRY}/{repository}:{tag}"


def deploy_pipeline(
    display_name: str, repository: str, workload: str, *, verify_rollout: bool = False
) -> pipeline_pb2.Pipeline:
    """A pipeline deploying every tag of `repository` to Deployment `workload` in the bench cluster."""
    return pipeline_pb2.Pipeline(
        display_name=display_name,
        source=pipeline_pb2.Source(
            registry=REGISTRY, repository=repository, tag_filter=pipeline_pb2.TagFilter(type=_FILTER.ANY)
        ),
        target=pipeline_pb2.Target(
            platform=pipeline_pb2.Target.KUBERNETES,
            cluster=CLUSTER,
            namespace=NAMESPACE,
            workload_kind=pipeline_pb2.Target.DEPLOYMENT,
            workload=workload,
            container=CONTAINER,
        ),
        options=pipeline_pb2.Options(verify_rollout=verify_rollout),
    )


def seed_pipeline(index: int, now_us: int) -> pipeline_pb2.Pipeline:
    """Bulk-loaded pipeline number `index`, with its output-only fields set as config would."""
    filter_type, filter_value = SEED_FILTERS[index % PIPELINES_PER_SEED_REPOSITORY]
    pipeline = pipeline_pb2.Pipeline(
        name=f"pipelines/{seed_id(index)}",
        display_name=f"Seeded pipeline {index}",
        description="bulk-loaded by the Conveyor benchmark",
        source=pipeline_pb2.Source(
            registry=REGISTRY,
            repository=seed_repository(index),
            tag_filter=pipeline_pb2.TagFilter(type=filter_type, value=filter_value),
        ),
        target=pipeline_pb2.Target(
            platform=pipeline_pb2.Target.KUBERNETES,
            cluster=SEED_CLUSTER,
            namespace=seed_namespace(index),
            workload_kind=pipeline_pb2.Target.DEPLOYMENT,
            workload=f"w-{index}",
            container=CONTAINER,
        ),
        options=pipeline_pb2.Options(verify_rollout=True),
        etag=hashlib.sha256(f"seed-{index}".encode()).hexdigest()[:16],
    )
    pipeline.create_time.FromMicroseconds(now_us)
    pipeline.update_time.FromMicroseconds(now_us)
    return pipeline


def image_pushed(repository: str, tag: str, event_id: str) -> bus_pb2.ImagePushed:
    """A registry event as the receiver stores it (for scenarios that publish straight to the bus)."""
    push = bus_pb2.ImagePushed(
        event_id=event_id,
        registry=REGISTRY,
        repository=repository,
        tag=tag,
        digest=digest_of(f"{repository}:{tag}:{event_id}"),
        source_format="bench",
        actor="bench",
    )
    push.pushed_at.GetCurrentTime()
    return push


def harbor_push(repository: str, tag: str, digest: str | None = None) -> bytes:
    """A Harbor 2.x push webhook (Default format) for one tagged artifact.

    The Default format has no delivery id: the trigger derives the event id from the document,
    so every distinct tag/digest is a distinct event (and a resend of the same bytes a duplicate).
    """
    namespace, _, name = repository.partition("/")
    document: dict[str, Any] = {
        "type": "PUSH_ARTIFACT",
        "occur_at": int(time.time()),
        "operator": "robot$bench",
        "event_data": {
            "resources": [
                {
                    "digest": digest or digest_of(f"{repository}:{tag}"),
                    "tag": tag,
                    "resource_url": f"{REGISTRY}/{repository}:{tag}",
                }
            ],
            "repository": {
                "date_created": int(time.time()),
                "name": name,
                "namespace": namespace,
                "repo_full_name": repository,
                "repo_type": "private",
            },
        },
    }
    return json.dumps(document, separators=(",", ":")).encode()
