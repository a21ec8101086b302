"""A `DeployRequested` message, checked and turned into what the deploy use case works with.

Every field is checked before anything else looks at it: a malformed message (one no correct producer
sends) raises `MalformedDeployRequest` and is dropped; a well-formed one that cannot be deployed raises
`InvalidDeployRequest` naming the run, which then ends as FAILED with the reason.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

from ulid import ULID

from conveyor import messages, refs
from conveyor.errors import FieldViolation, InvalidArgument
from conveyor.names import RunName, parse_pipeline_name, parse_run_name
from conveyor.v1 import bus_pb2, run_pb2
from conveyor_deployer.domain.workloads import Kind, WorkloadRef

log = logging.getLogger(__name__)

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
    # When the request was accepted: a PUSH run's push stored on the bus, a MANUAL run's StartRun call.
    # Never when it was matched: a push matched late (a crashed trigger's batch redelivered) keeps its place.
    requested_at: dt.datetime
    event_id: str
    verify: bool
    rollout_timeout: float
    rollback_on_failure: bool
    # When the registry reported the push (PUSH runs); the start of push -> ready.
    pushed_at: dt.datetime | None = None

    @property
    def order(self) -> OrderKey:
        """Which of two requests is newer: acceptance time, then run id (time-sortable ULIDs)."""
        return (self.requested_at, self.run_id)

    @property
    def slot(self) -> tuple[tuple[str, str, str, str], str]:
        """One container of one workload: requests for the same slot supersede each other."""
        return (self.target.key, self.container)


class InvalidDeployRequest(ValueError):
    """The message cannot be deployed; `run` is set when the run can still be reported as FAILED."""

    reason = "invalid"  # conveyor_bad_input_total's reason label

    def __init__(self, message: str, run: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.run = run


class MalformedDeployRequest(InvalidDeployRequest):
    """No correct producer sends this (a value out of range, an unknown enum number, a name that does not
    parse): it is dropped, never reported on the run it names -- whoever sent it may not own that run."""

    reason = "malformed"

    def __init__(self, run: RunName | None, violations: list[FieldViolation]) -> None:
        about = f" for {run}" if run is not None else ""
        super().__init__(f"malformed deploy request{about}: {messages.describe(violations)}")
        self.violations = violations


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
    name = check_well_formed(message)
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
        pushed_at=_push_time(message),
    )


# Checked separately: the registry's clock, carried along only to measure push -> ready.
_ADVISORY = "pushed_at"


def check_well_formed(message: bus_pb2.DeployRequested) -> RunName:
    """The run's name; MalformedDeployRequest listing every problem when the message is malformed."""
    violations = messages.validate_fields(message, skip={_ADVISORY})
    name: RunName | None = None
    try:
        name = parse_run_name(message.run, "run")
    except InvalidArgument as exc:
        violations = exc.violations + violations
    if message.pipeline.name:
        try:
            pipeline = parse_pipeline_name(message.pipeline.name, "pipeline.name")
        except InvalidArgument as exc:
            violations += exc.violations
        else:
            if name is not None and pipeline != name.parent:
                violations.append(
                    FieldViolation("pipeline.name", f"{message.pipeline.name!r} is not the run's pipeline")
                )
    if message.tag and not refs.is_valid_tag(message.tag):
        violations.append(FieldViolation("tag", f"{message.tag!r} is not a valid tag"))
    if message.digest and not refs.is_valid_digest(message.digest):
        violations.append(FieldViolation("digest", f"{message.digest!r} is not a valid digest"))
    if violations or name is None:
        raise MalformedDeployRequest(name, violations)
    return name


def _push_time(message: bus_pb2.DeployRequested) -> dt.datetime | None:
    if not message.HasField(_ADVISORY):
        return None
    violations = messages.validate_timestamp(message.pushed_at, _ADVISORY)
    if violations:
        # Not worth dropping a deploy for: it goes ahead, unmeasured.
        log.warning(
            "ignoring the push time of a deploy request",
            extra={"run": message.run, "error": messages.describe(violations)},
        )
        return None
    pushed_at: dt.datetime = message.pushed_at.ToDatetime(tzinfo=dt.UTC)
    return pushed_at
