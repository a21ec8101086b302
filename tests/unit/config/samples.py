"""Sample messages shared by the config tests."""

from __future__ import annotations

from conveyor.v1 import pipeline_pb2

CHINESE_DESCRIPTION = "部署到生产环境的流水线"


def sample_pipeline(**overrides: object) -> pipeline_pb2.Pipeline:
    """A valid pipeline; keyword overrides replace top-level fields."""
    pipeline = pipeline_pb2.Pipeline(
        display_name="Web frontend",
        description="Deploys team/app to production",
        source=pipeline_pb2.Source(
            registry="demo.tencentcloudcr.com",
            repository="team/app",
            tag_filter=pipeline_pb2.TagFilter(type=pipeline_pb2.TagFilter.REGEX, value=r"v\d+\.\d+\.\d+"),
        ),
        target=pipeline_pb2.Target(
            platform=pipeline_pb2.Target.TKE,
            region="ap-guangzhou",
            cluster="prod",
            namespace="web",
            workload_kind=pipeline_pb2.Target.DEPLOYMENT,
            workload="frontend",
            container="app",
        ),
    )
    for name, value in overrides.items():
        if isinstance(value, (pipeline_pb2.Source, pipeline_pb2.Target, pipeline_pb2.Options)):
            getattr(pipeline, name).CopyFrom(value)
        else:
            setattr(pipeline, name, value)
    return pipeline
