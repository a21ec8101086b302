"""A `DeployRequested` message, checked and turned into what the deploy use case works with."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from ulid import ULID

from conveyor.errors import InvalidArgument
from conveyor.names import parse_run_name
from conveyor.v1 import bus_pb2, run_pb2
from conveyor_deployer.domain.workloads import Kind, WorkloadRef

MAX_ROLLOUT_TIMEOUT = 6 * 3600.0

OrderKey = tuple[dt.datetime, str]


@dataclass(frozen=True)
class DeployRequest:
    run: str  # pipelines/{pipeline}/runs/{run}
    pipeline_id: str
    run_id: str
    target: WorkloadRef
    container: str
    image: str  # the reference to set, digest-pinned when the pipeline asks for it
    tag: str
    digest: str
    trigger: run_pb2.Run.Trigger
    requested_at: dt.datetime
    event_id: str
    verify: bool
    rollout_timeout: float
    rollback_on_failure: bool

    @property
    def order(self) -> OrderKey:
        """Which of two requests is newer: request time, then run id (time-sortable ULIDs)."""
        return (self.requested_at, self.run_id)

    @property
    def slot(self) -> tuple[tuple[str, str, str, str], str]:
        """One container of one workload: requests for the same slot supersede each other."""
        return (self.target.key, self.container)


class InvalidDeployRequest(ValueError):
    """The message cannot be deployed; `run` is set when the run can still be reported as FAILED."""

    def __init__(self, message: str, run: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.run = run


def run_time(run_id: str) -> dt.datetime | None:
    try:
        return ULID.from_str(run_id.upper()).datetime.astimezone(dt.UTC)
    except ValueError:
        return None


def parse_deploy_request(
    message: bus_pb2.DeployRequested,
    *,
    default_rollout_timeout: float,
    now: dt.datetime,
) -> DeployRequest:
    try:
        name = parse_run_name(message.run, "run")
    except InvalidArgument as exc:
        raise InvalidDeployRequest(exc.message) from None
    run = str(name)
    target = message.pipeline.target
    problems = []
    for field in ("cluster", "namespace", "workload", "container"):
        if not getattr(target, field):
            problems.append(f"pipeline.target.{field} is empty")
    kind = Kind.from_proto(target.workload_kind)
    if kind is None:
        problems.append("pipeline.target.workload_kind is not DEPLOYMENT, STATEFULSET or DAEMONSET")
    image = message.image.strip()
    if not image:
        problems.append("image is empty")
    options = message.pipeline.options
    if options.pin_digest and "@" not in image:
        if message.digest:
            image = f"{image}@{message.digest}"
        else:
            problems.append(
                f"the pipeline pins digests (options.pin_digest) but no digest is known for {image}; "
                "push the image again so its digest is reported, or turn pin_digest off"
            )
    if problems:
        raise InvalidDeployRequest("cannot deploy: " + "; ".join(problems), run=run)
    assert kind is not None
    timeout = default_rollout_timeout
    if options.HasField("rollout_timeout"):
        timeout = options.rollout_timeout.ToTimedelta().total_seconds() or default_rollout_timeout
    timeout = min(max(timeout, 1.0), MAX_ROLLOUT_TIMEOUT)
    if message.HasField("requested_at"):
        requested_at = message.requested_at.ToDatetime(tzinfo=dt.UTC)
    else:
        requested_at = run_time(name.run) or now
    return DeployRequest(
        run=run,
        pipeline_id=name.pipeline,
        run_id=name.run,
        target=WorkloadRef(target.cluster, target.namespace, kind, target.workload),
        container=target.container,
        image=image,
        tag=message.tag,
        digest=message.digest,
        trigger=message.trigger,
        requested_at=requested_at,
        event_id=message.event_id,
        verify=options.verify_rollout if options.HasField("verify_rollout") else True,
        rollout_timeout=timeout,
        rollback_on_failure=options.rollback_on_failure,
    )
