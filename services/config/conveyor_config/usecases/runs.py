"""The run use cases: StartPipeline, Get/List/Delete runs, TailRunLogs, and RunEvents from the bus."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from google.protobuf import timestamp_pb2

from conveyor import logs, refs, tagfilter, tracing
from conveyor.aip import ids, paging
from conveyor.aip.page_tokens import PageTokenCodec
from conveyor.errors import Aborted, FailedPrecondition, FieldViolation, NotFound
from conveyor.names import ALL_PIPELINES, parse_pipeline_name, parse_run_name
from conveyor.v1 import bus_pb2, pipeline_pb2
from conveyor.v1.pipeline_pb2 import Pipeline
from conveyor.v1.run_pb2 import Run, RunLogEntry
from conveyor_config.domain.names import RUN_ID_PREFIX, validate_request_id
from conveyor_config.domain.outcomes import DeleteOutcome, EventOutcome, StartOutcome
from conveyor_config.domain.pipelines import describe_target
from conveyor_config.domain.queries import parse_run_filter
from conveyor_config.domain.runs import is_terminal
from conveyor_config.usecases.common import collect, require, timestamp
from conveyor_config.usecases.notifier import RunNotifier
from conveyor_config.usecases.ports import (
    ImageResolver,
    LogPosition,
    NewOutboxMessage,
    RequestRecord,
    RunLogNotices,
    RunRepository,
)

if TYPE_CHECKING:
    from opentelemetry.context import Context

log = logging.getLogger(__name__)
# Who used a privilege that skips a check; the principal joins these lines with issue 11's identities.
audit_log = logging.getLogger("conveyor.audit")

START_SCOPE = "StartPipeline"
_LOG_PAGE = 500


@dataclass
class RunUseCases:
    store: RunRepository
    notifier: RunNotifier
    # The bus subject of DeployRequested outbox rows (app.py passes conveyor.bus's; use cases import no bus code).
    deploy_subject: str
    # One codec per process, keyed by CONVEYOR_PAGE_TOKEN_KEY (app.py builds it).
    page_tokens: PageTokenCodec
    # Called with the outbox row's msg id once its transaction committed (the relay publishes it now).
    wake_outbox: Callable[[str], None] = lambda _msg_id: None
    resolver: ImageResolver | None = None
    # Tells followers in other replicas about entries stored here; None: one replica only.
    log_notices: RunLogNotices | None = None
    clock: Callable[[], float] = time.time
    # The fallback: followers wake on notices, and re-read this often in case one was lost.
    tail_poll_interval: float = 5.0
    resolve_timeout: float = 10.0

    async def start(
        self, name: str, *, tag: str, digest: str = "", request_id: str = "", allow_unverified: bool = False
    ) -> Run:
        violations = collect(lambda: parse_pipeline_name(name))
        if not tag:
            violations.append(FieldViolation("tag", "required: the tag to deploy"))
        elif not tagfilter.is_valid_tag(tag):
            violations.append(
                FieldViolation("tag", f"{tag!r} is not a valid tag: up to 128 letters, digits, '_', '.' and '-'")
            )
        if digest and not refs.is_valid_digest(digest):
            violations.append(FieldViolation("digest", f"{digest!r} is not a digest such as sha256:<64 hex digits>"))
        violations += collect(lambda: validate_request_id(request_id))
        require(violations)
        pipeline_id = parse_pipeline_name(name).pipeline
        with logs.bind(pipeline=pipeline_id):
            if request_id:
                earlier = await self.store.find_request(START_SCOPE, request_id)
                if earlier is not None:
                    replayed: Run = Run.FromString(earlier)
                    return replayed
            for _attempt in range(3):
                pipeline = await self.store.get_pipeline(pipeline_id)
                if pipeline is None:
                    raise NotFound(f"pipeline {name} not found", metadata={"name": name})
                if pipeline.disabled:
                    raise self._disabled(name)
                run, entries, message = await self._plan(pipeline, tag, digest, request_id, allow_unverified)
                request = (
                    RequestRecord(START_SCOPE, request_id, run.SerializeToString(), run.create_time.ToMicroseconds())
                    if request_id
                    else None
                )
                outcome, earlier = await self.store.start_run(
                    run, entries, message, expected_etag=pipeline.etag, request=request
                )
                if outcome is StartOutcome.STARTED:
                    with logs.bind(run=run.name.rsplit("/", 1)[-1]):
                        log.info("run queued", extra={"image": run.image, "trigger": "MANUAL"})
                        if allow_unverified:
                            audit_log.warning(
                                "audit: manual start allowing an unverified tag",
                                extra={"audit": True, **self._audit_fields(pipeline_id, tag, request_id)},
                            )
                    self.wake_outbox(message.msg_id)
                    return run
                if outcome is StartOutcome.REPLAYED and earlier is not None:
                    first: Run = Run.FromString(earlier)
                    return first
                if outcome is StartOutcome.NOT_FOUND:
                    raise NotFound(f"pipeline {name} not found", metadata={"name": name})
                if outcome is StartOutcome.DISABLED:
                    raise self._disabled(name)
            raise Aborted(f"pipeline {name} keeps changing while starting it; retry", metadata={"name": name})

    @staticmethod
    def _audit_fields(pipeline_id: str, tag: str, request_id: str) -> dict[str, str]:
        return {
            "method": START_SCOPE,
            "pipeline": pipeline_id,
            "tag": tag,
            "allow_unverified": "true",
            "request_id": request_id,
        }

    @staticmethod
    def _disabled(name: str) -> FailedPrecondition:
        return FailedPrecondition(
            f"pipeline {name} is disabled; enable it (UpdatePipeline with disabled=false) before starting it",
            reason="PIPELINE_DISABLED",
            metadata={"name": name},
        )

    async def _plan(
        self, pipeline: Pipeline, tag: str, digest: str, request_id: str, allow_unverified: bool
    ) -> tuple[Run, list[RunLogEntry], NewOutboxMessage]:
        source = pipeline.source
        now_seconds = self.clock()
        now = timestamp(now_seconds)
        digest, notes = await self._resolve(source, tag, digest, now, allow_unverified)
        image = refs.image_ref(source.registry, source.repository, tag, digest, pin_digest=pipeline.options.pin_digest)
        pipeline_id = pipeline.name.removeprefix("pipelines/")
        run_id = (
            ids.derived_id(RUN_ID_PREFIX, int(now_seconds * 1000), "manual", pipeline_id, request_id)
            if request_id
            else ids.new_id(RUN_ID_PREFIX)
        )
        run = Run(
            name=f"{pipeline.name}/runs/{run_id}",
            trigger=Run.MANUAL,
            image=image,
            tag=tag,
            digest=digest,
            state=Run.QUEUED,
            create_time=now,
        )
        entries = [
            RunLogEntry(
                time=now,
                level=RunLogEntry.INFO,
                step="queue",
                message=f"Started by hand: deploy {image} to {describe_target(pipeline.target)}",
            ),
            *notes,
        ]
        if allow_unverified:
            fields = self._audit_fields(pipeline_id, tag, request_id)
            entries.append(
                RunLogEntry(
                    time=now,
                    level=RunLogEntry.INFO,
                    step="audit",
                    message=" ".join(f"{key}={value}" for key, value in fields.items()),
                )
            )
        if not tagfilter.matches(source.tag_filter, tag):
            entries.append(
                RunLogEntry(
                    time=now,
                    level=RunLogEntry.INFO,
                    step="queue",
                    message=f"tag {tag} does not match the pipeline's tag filter "
                    f"({pipeline_pb2.TagFilter.Type.Name(source.tag_filter.type)} {source.tag_filter.value!r}); "
                    "deploying it anyway because it was started by hand",
                )
            )
        deploy = bus_pb2.DeployRequested(
            run=run.name,
            pipeline=pipeline,
            image=image,
            tag=tag,
            digest=digest,
            trigger=Run.MANUAL,
            requested_at=now,
        )
        message = NewOutboxMessage(msg_id=run.name, subject=self.deploy_subject, payload=deploy.SerializeToString())
        return run, entries, message

    async def _resolve(
        self, source: pipeline_pb2.Source, tag: str, digest: str, now: timestamp_pb2.Timestamp, allow_unverified: bool
    ) -> tuple[str, list[RunLogEntry]]:
        """Check the tag exists and find its digest.

        A tag the registry cannot vouch for (unreachable, unauthorized, ...) is refused unless the
        caller said `allow_unverified`: a typo must not go straight to a cluster.
        """
        if self.resolver is None:
            return digest, []
        reference = f"{source.registry}/{source.repository}:{tag}"
        try:
            async with asyncio.timeout(self.resolve_timeout):
                resolved = await self.resolver.resolve_digest(source.registry, source.repository, tag)
        except Exception as exc:
            kind = "unreachable" if isinstance(exc, TimeoutError) else getattr(exc, "kind", "unreachable")
            if kind == "not_found":
                raise NotFound(
                    f"tag {tag} does not exist in {source.registry}/{source.repository}",
                    reason="TAG_NOT_FOUND",
                    metadata={"image": reference},
                ) from None
            detail = getattr(exc, "message", "") or str(exc) or type(exc).__name__
            cause = f"{kind}: {detail}"
            if not allow_unverified:
                raise FailedPrecondition(
                    f"tag {tag} of {source.registry}/{source.repository} could not be verified ({cause}); "
                    "fix the registry access, or start with allow_unverified to deploy it by tag unchecked",
                    reason="TAG_UNVERIFIED",
                    metadata={"registry": source.registry, "repository": source.repository, "tag": tag, "cause": cause},
                ) from None
            log.warning("could not verify tag; deploying by tag", extra={"image": reference, "error": cause})
            note = RunLogEntry(
                time=now,
                level=RunLogEntry.WARNING,
                step="resolve-digest",
                message=f"tag {tag} was not verified: could not resolve the digest of {reference} ({cause}); "
                "deploying by tag because the start allowed an unverified tag",
            )
            return digest, [note]
        if digest and resolved != digest:
            note = RunLogEntry(
                time=now,
                level=RunLogEntry.WARNING,
                step="resolve-digest",
                message=f"{reference} now points to {resolved}, not the requested {digest}; "
                "deploying the requested digest",
            )
            return digest, [note]
        note = RunLogEntry(
            time=now, level=RunLogEntry.INFO, step="resolve-digest", message=f"{reference} is {resolved}"
        )
        return resolved, [note]

    async def get(self, name: str) -> Run:
        run = await self.store.get_run(parse_run_name(name))
        if run is None:
            raise NotFound(f"run {name} not found", metadata={"name": name})
        return run

    async def list(self, *, parent: str, page_size: int, page_token: str, filter: str) -> tuple[list[Run], str]:
        pipeline_id = parse_pipeline_name(parent, "parent", allow_wildcard=True).pipeline
        size = paging.page_size(page_size)
        where = parse_run_filter(filter)
        query = where.page_query(pipeline_id)
        after: tuple[int, str, str] | None = None
        if page_token:
            created, after_pipeline, after_run = self.page_tokens.decode(page_token, query, (int, str, str))
            after = (created, after_pipeline, after_run)
        scope = None if pipeline_id == ALL_PIPELINES else pipeline_id
        if scope is not None and not await self.store.pipeline_exists(scope):
            raise NotFound(f"pipeline {parent} not found", metadata={"name": parent})
        page = await self.store.list_runs(scope, where.states, after, size + 1)
        next_token = ""
        if len(page) > size:
            page = page[:size]
            last = parse_run_name(page[-1].name)
            next_token = self.page_tokens.encode(
                [page[-1].create_time.ToMicroseconds(), last.pipeline, last.run], query
            )
        return page, next_token

    async def delete(self, name: str) -> None:
        run_name = parse_run_name(name)
        outcome = await self.store.delete_run(run_name, timestamp(self.clock()))
        if outcome is DeleteOutcome.NOT_FOUND:
            raise NotFound(f"run {name} not found", metadata={"name": name})
        if outcome is DeleteOutcome.NOT_TERMINAL:
            raise FailedPrecondition(
                f"run {name} has not finished; only finished runs (SUCCEEDED, FAILED, SUPERSEDED, CANCELLED) "
                "can be deleted",
                reason="RUN_NOT_FINISHED",
                metadata={"name": name},
            )
        with logs.bind(pipeline=run_name.pipeline, run=str(run_name)):
            log.info("run deleted")

    async def tail(self, name: str, *, follow: bool) -> AsyncIterator[RunLogEntry]:
        """The log so far, in log order; with `follow`, new entries as they are stored until the run is terminal.

        A follower gets each entry once: those stored since its last read come in log order among
        themselves, after what it was already sent (a late QUEUED event comes when it arrives).
        """
        run_name = parse_run_name(name)
        if await self.store.run_progress(run_name) is None:
            raise NotFound(f"run {name} not found", metadata={"name": name})
        sent = 0  # entries are numbered by arrival: those below this were sent
        with self.notifier.watch(str(run_name)) as changes:
            while True:
                changes.clear()
                # State first: entries stored with a terminal state are visible by the time we read them.
                progress = await self.store.run_progress(run_name)
                if progress is None:
                    return  # deleted while we followed it
                arrived = range(sent, progress.log_count)
                after: LogPosition | None = None
                while arrived:
                    batch = await self.store.read_run_logs(run_name, arrived, after, limit=_LOG_PAGE)
                    for position, entry in batch:
                        after = position
                        yield entry
                    if len(batch) < _LOG_PAGE:
                        break
                sent = progress.log_count
                if not follow or is_terminal(progress.state):
                    return
                # Woken by this replica's consumer or another's notice; the timeout covers a lost notice.
                await changes.wait(self.tail_poll_interval)

    async def _announce(self, run_name: str) -> None:
        if self.log_notices is None:
            return
        try:
            await self.log_notices.run_logged(run_name)
        except Exception as exc:  # the entries are stored; followers elsewhere catch up at their next poll
            log.warning("run-log notice not sent", extra={"error": str(exc) or type(exc).__name__})

    async def record_event(self, event: bus_pb2.RunEvent, event_id: str) -> EventOutcome:
        """Persist a RunEvent from the bus, known by `event_id` (its own, or its message id).

        The consumer checked it first (domain.run_events.check_run_event): what is invalid never gets here.
        """
        run_name = parse_run_name(event.run, "run")
        attributes = {**tracing.run_attributes(str(run_name)), "conveyor.event_id": event_id}
        with (
            logs.bind(pipeline=run_name.pipeline, run=str(run_name)),
            tracing.span("persist", attributes=attributes) as span,
        ):
            outcome = await self.store.apply_run_event(run_name, event_id, event, timestamp(self.clock()))
            span.set_attribute("conveyor.outcome", outcome.value)
            self._log_outcome(outcome, event, event_id)
            if outcome is EventOutcome.STORED:
                self.notifier.notify(str(run_name))
                await self._announce(str(run_name))
        return outcome

    async def record_events(
        self, events: Sequence[tuple[bus_pb2.RunEvent, str, Context | None]]
    ) -> Sequence[EventOutcome | Exception]:
        """Persist a fetched batch of (checked) RunEvents in one transaction, as `record_event` would one by one.

        Each event's third item is the trace context of its message; its `persist` span is a child of it.
        If that transaction fails, each event is retried on its own, so one that cannot be stored does not
        hold back the others: its slot holds the error. Followers hear once per run with stored events."""
        names = [parse_run_name(event.run, "run") for event, _, _ in events]
        try:
            outcomes = await self.store.apply_run_events(
                [(name, event_id, event) for name, (event, event_id, _) in zip(names, events, strict=True)],
                timestamp(self.clock()),
            )
        except Exception as exc:
            log.warning(
                "batch of run events not stored; storing them one by one",
                extra={"events": len(events), "error": str(exc) or type(exc).__name__},
            )
            results: list[EventOutcome | Exception] = []
            for event, event_id, trace in events:
                with tracing.attached(trace):
                    results.append(await self._record_alone(event, event_id))
            return results
        stored: dict[str, None] = {}
        for name, (event, event_id, trace), outcome in zip(names, events, outcomes, strict=True):
            attributes = {
                **tracing.run_attributes(str(name)),
                "conveyor.event_id": event_id,
                "conveyor.batch": len(events),
                "conveyor.outcome": outcome.value,
            }
            with (
                tracing.span("persist", parent=trace, attributes=attributes),
                logs.bind(pipeline=name.pipeline, run=str(name)),
            ):
                self._log_outcome(outcome, event, event_id)
            if outcome is EventOutcome.STORED:
                stored[str(name)] = None
        for run_name in stored:
            self.notifier.notify(run_name)
            await self._announce(run_name)
        return list(outcomes)

    async def _record_alone(self, event: bus_pb2.RunEvent, event_id: str) -> EventOutcome | Exception:
        try:
            return await self.record_event(event, event_id)
        except Exception as exc:  # the consumer naks this one (or dead-letters it on its last delivery)
            return exc

    @staticmethod
    def _log_outcome(outcome: EventOutcome, event: bus_pb2.RunEvent, event_id: str) -> None:
        if outcome is EventOutcome.STORED:
            log.debug("run event stored", extra={"state": event.state, "event_id": event_id})
        elif outcome is EventOutcome.NO_PIPELINE:
            log.warning("run event for a pipeline that does not exist; dropped", extra={"event_id": event_id})
        elif outcome is EventOutcome.DELETED:
            log.info("run event for a deleted run; dropped", extra={"event_id": event_id})
