"""Every field of a DeployRequested is checked before anything is deployed (issue 12, section 0).

A message no correct producer sends is MALFORMED: it is dead-lettered and counted, never reported on the
run it names (whoever sent it may not own that run). One that is well formed but cannot be deployed (an
incomplete target) still ends its run as FAILED with the reason, as before.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import pytest

from conveyor.v1 import bus_pb2
from conveyor_deployer.usecases.requests import (
    DeployRequest,
    InvalidDeployRequest,
    MalformedDeployRequest,
    parse_deploy_request,
)
from tests.support.kube import deploy_requested

NOW = dt.datetime(2026, 5, 1, tzinfo=dt.UTC)
Corrupt = Callable[[bus_pb2.DeployRequested], None]


def parse(message: bus_pb2.DeployRequested) -> DeployRequest:
    return parse_deploy_request(message, default_rollout_timeout=600, now=NOW)


def _set(path: str, value: object) -> Corrupt:
    def corrupt(message: bus_pb2.DeployRequested) -> None:
        *parents, leaf = path.split(".")
        target = message
        for name in parents:
            target = getattr(target, name)
        setattr(target, leaf, value)

    return corrupt


@pytest.mark.parametrize(
    ("corrupt", "says"),
    [
        (_set("requested_at.nanos", 1_000_000_000), "requested_at: nanos 1000000000 is out of range"),
        (_set("requested_at.seconds", 10**12), "requested_at: seconds 1000000000000 is out of range"),
        (_set("trigger", 9), "trigger: 9 is not a known Trigger"),
        (_set("pipeline.target.workload_kind", 77), "pipeline.target.workload_kind: 77 is not a known WorkloadKind"),
        (_set("pipeline.options.rollout_timeout.seconds", 10**14), "pipeline.options.rollout_timeout: seconds"),
        (_set("pipeline.update_time.nanos", -1), "pipeline.update_time: nanos -1 is out of range"),
        (_set("pipeline.name", "pipelines/other"), "pipeline.name: 'pipelines/other' is not the run's pipeline"),
        (_set("pipeline.name", "nope"), "pipeline.name: 'nope' is not a pipeline name"),
        (_set("tag", "bad tag!"), "tag: 'bad tag!' is not a valid tag"),
        (_set("digest", "sha256:short"), "digest: 'sha256:short' is not a valid digest"),
        (_set("run", "runs/x"), "run: 'runs/x' is not a run name"),
    ],
)
def test_a_malformed_request_says_every_reason_and_names_no_run_to_fail(corrupt: Corrupt, says: str) -> None:
    message = deploy_requested()
    corrupt(message)

    with pytest.raises(MalformedDeployRequest) as caught:
        parse(message)

    assert says in caught.value.message
    assert caught.value.run is None and caught.value.reason == "malformed"


def test_all_problems_are_reported_at_once_with_the_run_they_came_for() -> None:
    message = deploy_requested(run_id="r1")
    message.requested_at.nanos = -3
    message.trigger = 12  # type: ignore[assignment]

    with pytest.raises(MalformedDeployRequest) as caught:
        parse(message)

    assert caught.value.message == (
        "malformed deploy request for pipelines/web/runs/r1: trigger: 12 is not a known Trigger "
        "(TRIGGER_UNSPECIFIED, PUSH, MANUAL); requested_at: nanos -3 is out of range (0 to 999999999)"
    )


def test_a_push_time_out_of_range_is_ignored_not_a_reason_to_drop_the_deploy() -> None:
    """The registry's clock, only measured from: the deploy goes ahead without it."""
    message = deploy_requested()
    message.pushed_at.seconds = 10**13

    request = parse(message)

    assert request.pushed_at is None


def test_an_undeployable_but_well_formed_request_still_fails_its_run() -> None:
    message = deploy_requested()
    message.pipeline.target.workload_kind = 0  # type: ignore[assignment]

    with pytest.raises(InvalidDeployRequest) as caught:
        parse(message)

    assert not isinstance(caught.value, MalformedDeployRequest)
    assert caught.value.run == message.run and caught.value.reason == "invalid"


def test_a_well_formed_request_parses_with_every_optional_field() -> None:
    digest = "sha256:" + "c" * 64
    message = deploy_requested(image="registry.example.com/demo/web:2.0.0", digest=digest)
    message.pushed_at.FromDatetime(NOW - dt.timedelta(minutes=1))
    message.event_id = "distribution:e1"
    message.pipeline.update_time.FromDatetime(NOW)

    request = parse(message)

    assert request.pushed_at == NOW - dt.timedelta(minutes=1)
    assert request.digest == digest
