"""One registry event off the bus -> match decisions -> RunEvent(QUEUED) + DeployRequested per match.

Exactly-once, by construction rather than by luck:

1. the push key (image digest, or tag+event when no digest) is claimed in the pushes KV
   bucket: the first event of a push creates its push id, later events reuse it, so the
   run id of (push, pipeline) is the same for every tag, event and redelivery;
2. for each matched pipeline not yet deployed for this push: RunEvent QUEUED (msg id
   `{run}:queued`) then DeployRequested (msg id = run name) — a republish after a crash
   is dropped by JetStream's duplicate window;
3. the pipelines are marked deployed in the push's record (beyond the duplicate window,
   the same image under another tag is a DUPLICATE, not a second deploy);
4. only then does the caller ack the registry event. Any failure raises: the event is
   redelivered and the steps above repeat without creating anything new.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from conveyor import logs, subjects, tracing
from conveyor.v1 import bus_pb2, event_service_pb2, run_pb2
from conveyor_trigger import metrics
from conveyor_trigger.domain import ids
from conveyor_trigger.domain.matching import MATCHED, Decision, Outcome, PipelineIndex
from conveyor_trigger.domain.runs import (
    InvalidPush,
    deploy_requested as build_deploy_requested,
    log_entry,
    normalise_push,
    queued_run_event,
)
from conveyor_trigger.usecases.ports import DigestResolver, EventHistory, EventPublisher, PushRecord, PushRegistry

log = logging.getLogger(__name__)

__all__ = ["InvalidPush", "PushMatcher"]


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass
class PushMatcher:
    index: Callable[[], PipelineIndex]
    publisher: EventPublisher
    pushes: PushRegistry
    events_log: EventHistory
    resolver: DigestResolver | None = None
    digest_timeout: float = 10.0
    # Matched pipelines published in parallel (each one's RunEvent still precedes its DeployRequested).
    publish_concurrency: int = 32
    # After a registry timed out / was unreachable, pushes of it skip resolution this long.
    unreachable_backoff: float = 30.0
    clock: Callable[[], dt.datetime] = field(default=_utcnow)
    _unreachable_until: dict[str, float] = field(default_factory=dict, init=False, repr=False)

    async def handle(
        self, raw: bus_pb2.ImagePushed, *, stored_at: dt.datetime, fallback_event_id: str, redelivered: bool = False
    ) -> list[event_service_pb2.MatchDecision]:
        """Match one stored registry event; returns its decisions. Raises InvalidPush for an event that
        can never match (the caller terminates it), anything else for a transient failure (redeliver)."""
        image = f"{raw.registry}/{raw.repository}:{raw.tag}"
        event_id = raw.event_id or fallback_event_id
        with tracing.span("match", attributes={"conveyor.event_id": event_id, "conveyor.image": image}) as span:
            result = await self._match(raw, stored_at, fallback_event_id, redelivered)
            span.set_attribute("conveyor.matched", sum(1 for d in result if d.outcome == MATCHED))
            return result

    async def _match(
        self, raw: bus_pb2.ImagePushed, stored_at: dt.datetime, fallback_event_id: str, redelivered: bool
    ) -> list[event_service_pb2.MatchDecision]:
        push = normalise_push(raw, fallback_event_id=fallback_event_id)
        # Decisions never depend on the digest: the registry is only asked when something will deploy.
        decisions = self.index().match(push)
        matched = [d for d in decisions if d.outcome == MATCHED and d.pipeline is not None]
        runs: dict[str, str] = {}
        final: dict[str, Decision] = {}
        if matched:
            notes = await self._resolve_digest(push)
            record = await self.pushes.claim(ids.push_key(push), push.event_id, _ms(stored_at))
            runs, final = await self._request_runs(push, matched, record, notes, redelivered, stored_at=stored_at)
        result = []
        outcomes: dict[int, int] = {}
        for original in decisions:
            decision = final.get(original.pipeline_name, original) if original.pipeline_name else original
            outcomes[decision.outcome] = outcomes.get(decision.outcome, 0) + 1
            result.append(decision.to_proto(runs.get(decision.pipeline_name, "")))
        # One labelled increment per outcome, not per pipeline: a labels() lookup costs ~10 us.
        for outcome, count in outcomes.items():
            metrics.MATCH_DECISIONS.labels(outcome=Outcome.Name(outcome)).inc(count)
        # Before the ack: a failure here redelivers the event, and the steps above create nothing new.
        await self.events_log.record(push, result, receive_time=stored_at)
        matched_count = sum(1 for d in result if d.outcome == MATCHED)
        log.info(
            f"registry event processed: {matched_count} pipeline(s) matched",
            extra={
                "event_id": push.event_id,
                "image": f"{push.registry}/{push.repository}:{push.tag}",
                "matched": matched_count,
                "decisions": len(result),
            },
        )
        return result

    async def _resolve_digest(self, push: bus_pb2.ImagePushed) -> list[run_pb2.RunLogEntry]:
        """Fill in a missing digest (so pin_digest and dedupe work); on failure, proceed by tag."""
        if push.digest or self.resolver is None:
            return []
        now = self.clock()
        skip_until = self._unreachable_until.get(push.registry, 0.0)
        if time.monotonic() < skip_until:
            return [self._unresolved_note(push, now, "the registry did not answer moments ago")]
        try:
            digest = await asyncio.wait_for(
                self.resolver.resolve_digest(push.registry, push.repository, push.tag), self.digest_timeout
            )
            if not isinstance(digest, str) or not digest.startswith("sha256:"):
                raise ValueError(f"registry returned {digest!r}, not a sha256 digest")
        except Exception as exc:
            reason = getattr(exc, "message", None) or str(exc) or type(exc).__name__
            if isinstance(exc, TimeoutError):
                reason = f"no answer within {self.digest_timeout:g}s"
            if isinstance(exc, TimeoutError) or getattr(exc, "kind", "") == "unreachable":
                # One registry outage must not stall matching for every push that follows.
                self._unreachable_until[push.registry] = time.monotonic() + self.unreachable_backoff
            metrics.DIGEST_RESOLUTIONS.labels(result="failed").inc()
            log.warning(
                "could not resolve the digest; proceeding by tag",
                extra={"event_id": push.event_id, "registry": push.registry, "error": reason},
            )
            return [self._unresolved_note(push, now, reason)]
        metrics.DIGEST_RESOLUTIONS.labels(result="resolved").inc()
        push.digest = digest
        return [
            log_entry(
                now,
                run_pb2.RunLogEntry.INFO,
                "resolve-digest",
                f"the registry event carried no digest; resolved {push.tag} to {digest}",
            )
        ]

    @staticmethod
    def _unresolved_note(push: bus_pb2.ImagePushed, now: dt.datetime, reason: str) -> run_pb2.RunLogEntry:
        return log_entry(
            now,
            run_pb2.RunLogEntry.WARNING,
            "resolve-digest",
            f"the digest of {push.registry}/{push.repository}:{push.tag} could not be resolved ({reason}); "
            "deploying by tag",
        )

    async def _request_runs(
        self,
        push: bus_pb2.ImagePushed,
        matched: list[Decision],
        record: PushRecord,
        notes: list[run_pb2.RunLogEntry],
        redelivered: bool,
        *,
        stored_at: dt.datetime,
    ) -> tuple[dict[str, str], dict[str, Decision]]:
        runs: dict[str, str] = {}
        final: dict[str, Decision] = {}
        to_publish: list[tuple[Decision, str, str]] = []
        for decision in matched:
            assert decision.pipeline is not None
            pipeline_id = decision.pipeline.pipeline_id
            run = ids.run_id(record.time_ms, record.push_id, pipeline_id)
            name = ids.run_name(pipeline_id, run)
            runs[decision.pipeline_name] = name
            deployed_by = record.deployed.get(pipeline_id)
            if deployed_by is not None and deployed_by != push.event_id:
                final[decision.pipeline_name] = _duplicate(decision, deployed_by)
            elif deployed_by is None:
                to_publish.append((decision, run, name))
            # deployed_by == this event: a redelivery after the record was written; nothing to redo.

        semaphore = asyncio.Semaphore(self.publish_concurrency)

        async def publish(decision: Decision, run: str, name: str) -> bool:
            assert decision.pipeline is not None
            async with semaphore:
                now = self.clock()
                with (
                    logs.bind(pipeline=decision.pipeline.pipeline_id, run=name),
                    tracing.span("request run", attributes=tracing.run_attributes(name)),
                ):
                    event = queued_run_event(
                        push,
                        decision.pipeline,
                        run=name,
                        event_id=ids.queued_event_id(run),
                        reason=decision.reason,
                        notes=notes,
                        now=now,
                    )
                    await self.publisher.publish(subjects.RUN_EVENTS_SUBJECT, event, event.event_id)
                    # Stamped with when the push was accepted (stored), never when it was matched: the
                    # deployer orders requests by it, and a batch left over by a crash is matched late.
                    request = build_deploy_requested(push, decision.pipeline, run=name, now=stored_at)
                    stored = await self.publisher.publish(subjects.DEPLOY_REQUESTED_SUBJECT, request, name)
                    log.info(
                        "run requested" if stored else "run already requested",
                        extra={"event_id": push.event_id, "image": request.image},
                    )
                    return stored

        stored = await asyncio.gather(*(publish(*item) for item in to_publish))
        for (decision, _, _), was_new in zip(to_publish, stored, strict=True):
            if not was_new and not redelivered and record.first_event_id != push.event_id:
                # Another event of the same push requested it moments ago (a concurrent matcher).
                final[decision.pipeline_name] = _duplicate(decision, record.first_event_id)
        if to_publish:
            await self.pushes.mark_deployed(
                record,
                {decision.pipeline.pipeline_id: push.event_id for decision, _, _ in to_publish if decision.pipeline},
            )
        return runs, final


def _duplicate(decision: Decision, event_id: str) -> Decision:
    return Decision(
        Outcome.DUPLICATE,
        f"this image was already deployed by this pipeline for event {event_id}",
        decision.pipeline,
        decision.pipeline_name,
    )


def _ms(when: dt.datetime) -> int:
    return int(when.timestamp() * 1000)
