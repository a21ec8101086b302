"""Builders for trigger tests: pipelines and pushes as the bus carries them."""

from __future__ import annotations

import datetime as dt

from google.protobuf.timestamp_pb2 import Timestamp

from conveyor.v1 import bus_pb2, pipeline_pb2

FILTER = pipeline_pb2.TagFilter
DIGEST_A = "sha256:" + "a" * 64
DIGEST_B = "sha256:" + "b" * 64


def stamp(seconds: int) -> Timestamp:
    return Timestamp(seconds=seconds)


def pipeline(
    pipeline_id: str,
    *,
    registry: str = "registry.example.com",
    repository: str = "team/app",
    filter_type: int = FILTER.ANY,
    value: str = "",
    origin: int = pipeline_pb2.IMAGE_ORIGIN_ANY,
    disabled: bool = False,
    pin_digest: bool = False,
    updated: int = 1_700_000_000,
    etag: str = "e1",
) -> pipeline_pb2.Pipeline:
    return pipeline_pb2.Pipeline(
        name=f"pipelines/{pipeline_id}",
        display_name=pipeline_id,
        disabled=disabled,
        source=pipeline_pb2.Source(
            registry=registry,
            repository=repository,
            tag_filter=pipeline_pb2.TagFilter(type=filter_type, value=value),  # type: ignore[arg-type]
            origin=origin,  # type: ignore[arg-type]
        ),
        target=pipeline_pb2.Target(
            platform=pipeline_pb2.Target.KUBERNETES,
            cluster="dev",
            namespace="apps",
            workload_kind=pipeline_pb2.Target.DEPLOYMENT,
            workload=pipeline_id,
            container="app",
        ),
        options=pipeline_pb2.Options(pin_digest=pin_digest),
        update_time=stamp(updated),
        etag=etag,
    )


def push(
    tag: str = "v1",
    *,
    registry: str = "registry.example.com",
    repository: str = "team/app",
    digest: str = DIGEST_A,
    event_id: str = "distribution:e1",
    origin: int = pipeline_pb2.IMAGE_ORIGIN_LOCAL_PUSH,
    source_format: str = "distribution",
) -> bus_pb2.ImagePushed:
    message = bus_pb2.ImagePushed(
        event_id=event_id,
        registry=registry,
        repository=repository,
        tag=tag,
        digest=digest,
        origin=origin,  # type: ignore[arg-type]
        source_format=source_format,
        actor="ci-bot",
    )
    message.pushed_at.FromDatetime(dt.datetime(2024, 5, 14, 9, 0, tzinfo=dt.UTC))
    return message
