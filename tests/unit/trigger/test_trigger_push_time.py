"""The push time the registry reported travels into DeployRequested (the deployer's push -> ready clock)."""

from __future__ import annotations

import datetime as dt

from conveyor_trigger.domain.matching import compile_pipeline
from conveyor_trigger.domain.runs import deploy_requested
from tests.unit.trigger.trigger_factories import pipeline, push

NOW = dt.datetime(2024, 5, 14, 9, 0, 7, tzinfo=dt.UTC)


def test_deploy_requested_carries_the_push_time() -> None:
    image_pushed = push("v1.2.3")
    compiled = compile_pipeline(pipeline("web"))

    request = deploy_requested(image_pushed, compiled, run="pipelines/web/runs/r1", now=NOW)

    assert request.pushed_at == image_pushed.pushed_at
    assert request.pushed_at.ToDatetime(tzinfo=dt.UTC) == dt.datetime(2024, 5, 14, 9, 0, tzinfo=dt.UTC)
    assert request.requested_at.ToDatetime(tzinfo=dt.UTC) == NOW


def test_a_push_without_a_time_leaves_it_unset() -> None:
    image_pushed = push("v1.2.3")
    image_pushed.ClearField("pushed_at")

    request = deploy_requested(image_pushed, compile_pipeline(pipeline("web")), run="pipelines/web/runs/r1", now=NOW)

    assert not request.HasField("pushed_at")
