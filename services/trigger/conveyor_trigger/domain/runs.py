"""Pure builders: a push checked and normalised, and the bus messages of a requested run."""

from __future__ import annotations

import datetime as dt

from google.protobuf.timestamp_pb2 import Timestamp

from conveyor import refs
from conveyor.v1 import bus_pb2, run_pb2
from conveyor_trigger.domain.matching import CompiledPipeline, origin_name


class InvalidPush(ValueError):
    """An ImagePushed that can never be matched (missing or invalid registry, repository, tag)."""


def normalise_push(push: bus_pb2.ImagePushed, *, fallback_event_id: str) -> bus_pb2.ImagePushed:
    """A copy with the host/repository in canonical form; InvalidPush when unusable."""
    result = bus_pb2.ImagePushed()
    result.CopyFrom(push)
    problems = []
    host, repository = refs.normalize_repo(push.registry, push.repository)
    if not host:
        problems.append("registry is empty")
    elif not refs.is_valid_registry(host):
        problems.append(f"registry {push.registry!r} is not a host[:port]")
    if not repository:
        problems.append("repository is empty")
    elif not refs.is_valid_repository(repository):
        problems.append(f"repository {push.repository!r} is not a valid repository path")
    if not push.tag:
        problems.append("tag is empty")
    elif not refs.is_valid_tag(push.tag):
        problems.append(f"tag {push.tag!r} is not a valid tag")
    if push.digest and not refs.is_valid_digest(push.digest):
        problems.append(f"digest {push.digest!r} is not a valid digest")
    if problems:
        raise InvalidPush("; ".join(problems))
    result.registry, result.repository = host, repository
    result.event_id = push.event_id or fallback_event_id
    result.source_format = push.source_format or "bus"
    return result


def describe_push(push: bus_pb2.ImagePushed) -> str:
    image = f"{push.registry}/{push.repository}:{push.tag}" + (f"@{push.digest}" if push.digest else "")
    by = f" by {push.actor}" if push.actor else ""
    return f"{image} ({push.source_format} event {push.event_id}, origin {origin_name(push.origin)}{by})"


def image_for(push: bus_pb2.ImagePushed, pipeline: CompiledPipeline) -> str:
    """The reference to deploy: the normalised host, the repository as the pipeline spells it (`nginx`,
    not `library/nginx`); pinned by digest when asked."""
    repository = pipeline.pipeline.source.repository.strip().strip("/")
    return refs.image_ref(
        pipeline.key.registry, repository, push.tag, push.digest, pin_digest=pipeline.pipeline.options.pin_digest
    )


def _stamp(now: dt.datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(now)
    return stamp


def log_entry(now: dt.datetime, level: int, step: str, message: str) -> run_pb2.RunLogEntry:
    return run_pb2.RunLogEntry(time=_stamp(now), level=level, step=step, message=message)  # type: ignore[arg-type]


def queued_run_event(
    push: bus_pb2.ImagePushed,
    pipeline: CompiledPipeline,
    *,
    run: str,
    event_id: str,
    reason: str,
    notes: list[run_pb2.RunLogEntry],
    now: dt.datetime,
) -> bus_pb2.RunEvent:
    """The first event of a PUSH run: QUEUED, with the push and why it matched in its log."""
    entries = [
        log_entry(
            now,
            run_pb2.RunLogEntry.INFO,
            "trigger",
            f"push of {describe_push(push)} matched {pipeline.name}: {reason}",
        ),
        *notes,
    ]
    return bus_pb2.RunEvent(
        run=run,
        event_id=event_id,
        time=_stamp(now),
        state=run_pb2.Run.QUEUED,
        log_entries=entries,
        trigger=run_pb2.Run.PUSH,
        image=image_for(push, pipeline),
        tag=push.tag,
        digest=push.digest,
        source_event_id=push.event_id,
    )


def deploy_requested(
    push: bus_pb2.ImagePushed, pipeline: CompiledPipeline, *, run: str, now: dt.datetime
) -> bus_pb2.DeployRequested:
    return bus_pb2.DeployRequested(
        run=run,
        pipeline=pipeline.pipeline,
        image=image_for(push, pipeline),
        tag=push.tag,
        digest=push.digest,
        trigger=run_pb2.Run.PUSH,
        requested_at=_stamp(now),
        event_id=push.event_id,
        pushed_at=push.pushed_at if push.HasField("pushed_at") else None,
    )
