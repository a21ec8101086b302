"""Deploying one run: apply the image, verify the rollout, roll back on failure, report every step.

Every step is a log entry in a `RunEvent`. Event ids are deterministic per INTERFACES.md:
`{run_id}:deployer:{attempt}:{seq}` for the entries of one delivery attempt (a republish after a
lost ack is dropped by JetStream), and `{run_id}:deployer:result` for the single terminal event
of a run, whatever attempt produces it.

Idempotent by design: a redelivered request (the deployer was killed) finds the container
already running its image -- and the run's own deploy record on the workload -- so it does not
patch again and goes on verifying.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any

from conveyor import tracing
from conveyor.retry import RetryPolicy, retry as with_retries
from conveyor.v1 import bus_pb2, run_pb2
from conveyor_deployer import metrics
from conveyor_deployer.domain import pods as pod_rules
from conveyor_deployer.domain.kube_errors import ErrorKind, KubeApiError, is_transient
from conveyor_deployer.domain.patch import describe, image_patch
from conveyor_deployer.domain.policy import DEFAULT_POLICY, ClusterPolicy, denial_message
from conveyor_deployer.domain.rollout import evaluate
from conveyor_deployer.domain.workloads import (
    CHANGE_CAUSE_ANNOTATION,
    ContainerNotFound,
    ContainerSlot,
    DeployRecord,
    RecordState,
    find_container,
    read_record,
    record_annotation,
    resource_version,
    selector_string,
)
from conveyor_deployer.usecases.ports import AppliedOrders, Fence, KubeObject, RunEventSink, WorkloadApi
from conveyor_deployer.usecases.requests import DeployRequest, OrderKey

log = logging.getLogger(__name__)

Level = run_pb2.RunLogEntry.Level
State = run_pb2.Run.State


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def format_duration(seconds: float) -> str:
    seconds = round(seconds)
    if seconds % 3600 == 0 and seconds >= 3600:
        return f"{seconds // 3600}h"
    if seconds % 60 == 0 and seconds >= 60:
        return f"{seconds // 60}m"
    return f"{seconds}s"


@dataclass(frozen=True)
class RunResult:
    state: run_pb2.Run.State
    message: str
    error: str = ""
    previous_image: str = ""


class RunFailed(Exception):
    def __init__(self, message: str, previous_image: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.previous_image = previous_image


def result_event_id(run_id: str) -> str:
    return f"{run_id}:deployer:result"


class RunLog:
    """Publishes one run's events for one delivery attempt, in order, each awaited until stored."""

    def __init__(
        self, sink: RunEventSink, request: DeployRequest, attempt: int, clock: Callable[[], dt.datetime] = utcnow
    ) -> None:
        self.sink = sink
        self.request = request
        self.attempt = attempt
        self.clock = clock
        self.seq = 0

    def _event(self, event_id: str, step: str, message: str, level: int) -> bus_pb2.RunEvent:
        now = self.clock()
        event = bus_pb2.RunEvent(run=self.request.run, event_id=event_id)
        event.time.FromDatetime(now)
        entry = event.log_entries.add(level=level, step=step, message=message)
        entry.time.FromDatetime(now)
        return event

    def _with_details(self, event: bus_pb2.RunEvent) -> bus_pb2.RunEvent:
        # Lets config create the run record if it never saw the QUEUED event.
        event.trigger = self.request.trigger
        event.image = self.request.image
        event.tag = self.request.tag
        event.digest = self.request.digest
        event.source_event_id = self.request.event_id
        return event

    def _next_id(self) -> str:
        event_id = f"{self.request.run_id}:deployer:{self.attempt}:{self.seq}"
        self.seq += 1
        return event_id

    async def entry(self, step: str, message: str, level: int = Level.INFO) -> None:
        await self.sink.publish(self._event(self._next_id(), step, message, level))

    async def running(self, message: str) -> None:
        event = self._with_details(self._event(self._next_id(), "start", message, Level.INFO))
        event.state = State.RUNNING
        await self.sink.publish(event)

    async def finish(self, result: RunResult) -> bool:
        """The run's one terminal event; False when an earlier attempt already stored it."""
        level = (
            Level.INFO
            if result.state == State.SUCCEEDED
            else (Level.WARNING if result.state == State.SUPERSEDED else Level.ERROR)
        )
        event = self._with_details(self._event(result_event_id(self.request.run_id), "result", result.message, level))
        event.state = result.state
        event.error = result.error
        event.previous_image = result.previous_image
        return await self.sink.publish(event)


class AppliedHistory:
    """The newest request this process applied (or found applied) per container, bounded in size.

    Complements the deploy record annotation: "already up to date" runs do not patch, so they
    leave no record on the workload, yet an older request must still not overwrite them.
    """

    def __init__(self, max_entries: int = 10_000) -> None:
        self._entries: OrderedDict[Any, tuple[OrderKey, str, str]] = OrderedDict()
        self._max = max_entries

    def note(self, request: DeployRequest) -> None:
        current = self._entries.get(request.slot)
        if current is None or current[0] < request.order:
            self._entries[request.slot] = (request.order, request.run, request.image)
        self._entries.move_to_end(request.slot)
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)

    def latest(self, request: DeployRequest) -> tuple[OrderKey, str, str] | None:
        return self._entries.get(request.slot)


@dataclass
class Applied:
    workload: KubeObject
    previous_image: str
    superseded_by: str | None = None


class DeployRunner:
    """The deploy use case: `run(request, attempt)` takes a request to a terminal `RunResult`."""

    def __init__(
        self,
        api: WorkloadApi,
        sink: RunEventSink,
        clusters: Collection[str],
        *,
        retry: RetryPolicy,
        policies: Mapping[str, ClusterPolicy] | None = None,
        conflict_retries: int = 5,
        poll_interval: float = 2.0,
        history: AppliedHistory | None = None,
        shared: AppliedOrders | None = None,
        clock: Callable[[], dt.datetime] = utcnow,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.api = api
        self.sink = sink
        self.clusters = set(clusters)
        self.policies = dict(policies or {})
        self.retry = retry
        self.conflict_retries = conflict_retries
        self.poll_interval = poll_interval
        self.history = history or AppliedHistory()
        self.shared = shared
        self.clock = clock
        self.sleep = sleep
        self.monotonic = monotonic

    # ---- entry points -------------------------------------------------------------------------

    async def run(self, request: DeployRequest, attempt: int, fence: Fence | None = None) -> RunResult:
        """Deploy, publish the terminal event (awaited until stored) and return the result.

        `fence` (the workload lease's check) is awaited right before every PATCH; what it raises
        (`LeaseLost`) ends the run without a result, so that the request is handed back.
        """
        attributes = {**tracing.run_attributes(request.run), "conveyor.image": request.image}
        attributes |= {"conveyor.attempt": attempt, "conveyor.target": str(request.target)}
        with tracing.span("deploy", attributes=attributes) as span:
            result = await self._run(request, attempt, fence)
            span.set_attribute("conveyor.state", run_pb2.Run.State.Name(result.state))
            if result.state == State.FAILED:
                tracing.fail(span, result.error or result.message)
            return result

    async def _run(self, request: DeployRequest, attempt: int, fence: Fence | None) -> RunResult:
        started = self.monotonic()
        run_log = RunLog(self.sink, request, attempt, self.clock)
        await run_log.running(
            f"deployer picked up the run (delivery attempt {attempt}): deploy {request.image} to container "
            f"{request.container!r} of {request.target}"
        )
        try:
            result = await self._deploy(request, run_log, fence)
        except RunFailed as failure:
            result = RunResult(State.FAILED, f"failed: {failure.message}", failure.message, failure.previous_image)
        stored = await run_log.finish(result)
        if not stored:
            log.info("terminal event of this run was already stored by an earlier attempt", extra={"run": request.run})
        metrics.RUNS.labels(state=run_pb2.Run.State.Name(result.state)).inc()
        metrics.RUN_SECONDS.observe(self.monotonic() - started)
        if stored and result.state == State.SUCCEEDED and request.pushed_at is not None:
            metrics.observe_push_to_ready(request.target.cluster, request.pushed_at, self.clock())
        return result

    async def supersede(self, request: DeployRequest, attempt: int, newer: DeployRequest) -> RunResult:
        """End a queued request that a newer one for the same container replaced."""
        run_log = RunLog(self.sink, request, attempt, self.clock)
        message = (
            f"superseded by run {newer.run} (image {newer.image}, requested "
            f"{newer.requested_at.isoformat(timespec='seconds')}) for the same container before this run started"
        )
        result = RunResult(State.SUPERSEDED, message)
        await run_log.finish(result)
        metrics.RUNS.labels(state="SUPERSEDED").inc()
        return result

    async def fail_invalid(self, message: bus_pb2.DeployRequested, run_id: str, error: str, attempt: int) -> None:
        """Report a request that cannot be deployed at all (e.g. an incomplete target) as FAILED."""
        event = bus_pb2.RunEvent(
            run=message.run,
            event_id=result_event_id(run_id),
            state=State.FAILED,
            error=error,
            trigger=message.trigger,
            image=message.image,
            tag=message.tag,
            digest=message.digest,
            source_event_id=message.event_id,
        )
        now = self.clock()
        event.time.FromDatetime(now)
        entry = event.log_entries.add(
            level=Level.ERROR, step="result", message=f"failed (delivery attempt {attempt}): {error}"
        )
        entry.time.FromDatetime(now)
        await self.sink.publish(event)
        metrics.RUNS.labels(state="FAILED").inc()

    # ---- steps --------------------------------------------------------------------------------

    async def _deploy(self, request: DeployRequest, run_log: RunLog, fence: Fence | None) -> RunResult:
        ref = request.target
        if ref.cluster not in self.clusters:
            known = ", ".join(sorted(self.clusters)) or "none"
            raise RunFailed(
                f"cluster {ref.cluster!r} is not configured on the deployer (configured clusters: {known}); add it "
                "to CONVEYOR_CLUSTERS_FILE or fix the pipeline's target"
            )
        # Whoever published the request: nothing outside the cluster's policy reaches the cluster.
        denials = self.policies.get(ref.cluster, DEFAULT_POLICY).check(ref.namespace, request.image)
        if denials:
            raise RunFailed(denial_message(ref.cluster, denials))
        await run_log.entry("resolve-target", f"resolving {ref}, container {request.container!r}")
        applied = await self._apply(request, run_log, fence)
        if applied.superseded_by is not None:
            return RunResult(State.SUPERSEDED, applied.superseded_by)
        previous = applied.previous_image
        if not request.verify:
            message = f"{request.image} is set; rollout not verified (the pipeline turned verify_rollout off)"
            await run_log.entry("rollout", message)
            return RunResult(State.SUCCEEDED, message, previous_image=previous)
        error = await self._verify(request, run_log, applied.workload)
        if error is None:
            return RunResult(State.SUCCEEDED, f"succeeded: {request.image} is rolled out", previous_image=previous)
        if request.rollback_on_failure:
            error += await self._rollback(request, run_log, previous, fence)
        return RunResult(State.FAILED, f"failed: {error}", error, previous)

    async def _log_retry(self, run_log: RunLog, exc: KubeApiError, attempt: int, delay: float) -> None:
        metrics.KUBE_RETRIES.labels(cluster=exc.cluster).inc()
        await run_log.entry(
            "kubernetes",
            f"{exc.describe()}; retrying in {delay:.1f}s (attempt {attempt + 1} of {self.retry.max_attempts})",
            Level.WARNING,
        )

    async def _call(self, run_log: RunLog, call: Callable[[], Awaitable[Any]]) -> Any:
        async def on_retry(exc: BaseException, attempt: int, delay: float) -> None:
            assert isinstance(exc, KubeApiError)  # is_transient retries nothing else
            await self._log_retry(run_log, exc, attempt, delay)

        try:
            return await with_retries(
                call, policy=self.retry, retry_on=is_transient, on_retry=on_retry, sleep=self.sleep
            )
        except KubeApiError as exc:
            if exc.kind is ErrorKind.TRANSIENT:
                raise RunFailed(f"{exc.describe()}; gave up after {self.retry.max_attempts} attempts") from None
            raise

    async def _read(self, request: DeployRequest, run_log: RunLog) -> KubeObject:
        ref = request.target
        try:
            workload: KubeObject = await self._call(run_log, lambda: self.api.get_workload(ref))
        except KubeApiError as exc:
            if exc.kind is ErrorKind.NOT_FOUND:
                try:
                    namespace_exists = await self._call(
                        run_log, lambda: self.api.namespace_exists(ref.cluster, ref.namespace)
                    )
                except KubeApiError:
                    namespace_exists = True  # cannot tell: report the workload
                if not namespace_exists:
                    raise RunFailed(
                        f"namespace {ref.namespace!r} not found in cluster {ref.cluster}; fix the pipeline's target"
                    ) from None
                raise RunFailed(
                    f"{ref.kind.value} {ref.name!r} not found in namespace {ref.namespace} of cluster {ref.cluster}; "
                    "Conveyor only updates existing workloads: create it or fix the pipeline's target"
                ) from None
            raise RunFailed(exc.describe()) from None
        return workload

    @staticmethod
    def _slot_name(request: DeployRequest) -> str:
        return "/".join([*request.target.key, request.container])

    async def _note(self, request: DeployRequest) -> None:
        self.history.note(request)
        if self.shared is not None:
            try:
                await self.shared.note(self._slot_name(request), (request.order, request.run, request.image))
            except Exception as exc:  # other replicas then know only the workload's deploy record
                log.warning("could not share the applied request", extra={"run": request.run, "error": str(exc)})

    async def _newer_than(self, request: DeployRequest, record: DeployRecord | None) -> str | None:
        """A description of an applied request newer than this one for the same container, if any."""
        candidates: list[tuple[OrderKey, str, str]] = []
        if record is not None and record.run != request.run:
            candidates.append(((record.requested_at, record.run.rsplit("/", 1)[-1]), record.run, record.image))
        remembered = [self.history.latest(request)]
        if self.shared is not None:
            try:
                remembered.append(await self.shared.latest(self._slot_name(request)))
            except Exception as exc:
                log.warning("could not read the shared applied request", extra={"error": str(exc)})
        candidates += [entry for entry in remembered if entry is not None and entry[1] != request.run]
        newer = [c for c in candidates if c[0] > request.order]
        if not newer:
            return None
        (requested_at, _), run, image = max(newer)
        return (
            f"superseded: a newer request (run {run}, requested {requested_at.isoformat(timespec='seconds')}, image "
            f"{image}) was already applied to container {request.container!r}; not deploying the older image "
            f"{request.image}"
        )

    async def _apply(self, request: DeployRequest, run_log: RunLog, fence: Fence | None) -> Applied:
        ref = request.target
        for attempt in range(self.conflict_retries + 1):
            workload = await self._read(request, run_log)
            try:
                slot = find_container(ref, workload, request.container)
            except ContainerNotFound as exc:
                raise RunFailed(str(exc)) from None
            record = read_record(workload, request.container)
            if attempt == 0:
                generation = (workload.get("metadata") or {}).get("generation", "?")
                await run_log.entry(
                    "current-image",
                    f"found {ref.kind.value} {ref.namespace}/{ref.name} (generation {generation}); "
                    f"{slot.description} runs {slot.image}",
                )
            own_record = record is not None and record.run == request.run
            if own_record and record is not None and record.state is RecordState.ROLLED_BACK:
                raise RunFailed(
                    f"this run's rollout failed earlier and {slot.description} was rolled back to "
                    f"{record.image}; not deploying {request.image} again",
                    previous_image=record.image,
                )
            superseded = await self._newer_than(request, record)
            if superseded is not None:
                await run_log.entry("resolve-target", superseded, Level.WARNING)
                return Applied(workload, "", superseded_by=superseded)
            if slot.image == request.image:
                await self._note(request)
                if own_record and record is not None:
                    await run_log.entry(
                        "patch",
                        f"{slot.description} already runs {request.image}: this run's patch was applied before "
                        "(the deployer restarted or a reply was lost); not patching again, verifying the rollout",
                    )
                    return Applied(workload, record.previous_image)
                await run_log.entry(
                    "patch", f"already up to date: {slot.description} already runs {request.image}; not patching"
                )
                return Applied(workload, "")
            patched = await self._patch(
                request, run_log, workload, slot, image=request.image, attempt=attempt, rollback=False, fence=fence
            )
            if patched is None:
                continue  # conflict: re-read and recompute
            await self._note(request)
            return Applied(patched, slot.image)
        raise RunFailed(
            f"{ref} kept changing while the deployer tried to update it ({self.conflict_retries + 1} conflicting "
            "attempts); try again later"
        )

    async def _patch(
        self,
        request: DeployRequest,
        run_log: RunLog,
        workload: KubeObject,
        slot: ContainerSlot,
        *,
        image: str,
        attempt: int,
        rollback: bool,
        fence: Fence | None,
    ) -> KubeObject | None:
        """Send one pinned JSON Patch; None when it conflicted (and may be retried)."""
        ref = request.target
        if rollback:
            record = DeployRecord(request.run, request.requested_at, image, slot.image, RecordState.ROLLED_BACK)
            cause = f"conveyor: rollback of run {request.run} ({slot.image} failed) to {image}"
        else:
            record = DeployRecord(request.run, request.requested_at, image, slot.image)
            cause = f"conveyor: run {request.run} set {slot.description} to {image}"
        ops = image_patch(
            workload,
            slot,
            image,
            set_annotations={CHANGE_CAUSE_ANNOTATION: cause, record_annotation(slot.name): record.to_json()},
        )
        step = "rollback" if rollback else "patch"

        async def send() -> KubeObject:
            if fence is not None:
                await fence()  # every attempt: a replica that lost the workload's lease must not write
            return await self.api.patch_workload(ref, ops)

        try:
            with tracing.span(step, attributes={**tracing.run_attributes(request.run), "conveyor.image": image}):
                patched: KubeObject = await self._call(run_log, send)
        except KubeApiError as exc:
            if exc.kind is ErrorKind.CONFLICT:
                next_step = "re-reading and trying again" if attempt < self.conflict_retries else "giving up"
                await run_log.entry(
                    step,
                    f"{ref.kind.value} {ref.namespace}/{ref.name} changed since it was read (resourceVersion "
                    f"{resource_version(workload)}); {next_step}",
                    Level.WARNING,
                )
                return None
            if exc.kind is ErrorKind.NOT_FOUND:
                raise RunFailed(f"{ref} disappeared while the deployer updated it") from None
            raise RunFailed(exc.describe()) from None
        metrics.PATCHES.labels(kind=ref.kind.value, purpose=step).inc()
        await run_log.entry(
            step,
            f"patch sent: {slot.description} image {slot.image} -> {image} (resourceVersion "
            f"{resource_version(workload)} -> {resource_version(patched)}, generation "
            f"{(patched.get('metadata') or {}).get('generation', '?')}); JSON Patch {describe(ops)}",
        )
        return patched

    async def _verify(self, request: DeployRequest, run_log: RunLog, workload: KubeObject) -> str | None:
        """Follow the rollout; None when complete, else why it failed."""
        with tracing.span("verify", attributes=tracing.run_attributes(request.run)) as span:
            error = await self._follow_rollout(request, run_log, workload)
            if error is not None:
                tracing.fail(span, error)
            return error

    async def _follow_rollout(self, request: DeployRequest, run_log: RunLog, workload: KubeObject) -> str | None:
        ref = request.target
        deadline = self.monotonic() + request.rollout_timeout
        await run_log.entry("rollout", f"following the rollout (timeout {format_duration(request.rollout_timeout)})")
        last_message = None
        inspect_pods = True
        while True:
            status = evaluate(ref.kind, workload)
            if status.message != last_message:
                await run_log.entry("rollout", status.message)
                last_message = status.message
            if status.error is not None:
                return status.error
            if status.done:
                return None
            new_pods: list[KubeObject] = []
            if inspect_pods:
                new_pods, inspect_pods = await self._new_pods(request, run_log, workload)
                failure = pod_rules.classify(new_pods, ref.cluster)
                if failure is not None:
                    await run_log.entry("rollout", failure.message, Level.ERROR)
                    return failure.message
            remaining = deadline - self.monotonic()
            if remaining <= 0:
                reasons = pod_rules.waiting_reasons(new_pods)
                detail = f"; {'; '.join(reasons)}" if reasons else ""
                return (
                    f"the rollout did not complete within {format_duration(request.rollout_timeout)} "
                    f"(rollout_timeout): {status.message}{detail}"
                )
            await self.sleep(min(self.poll_interval, remaining))
            workload = await self._read(request, run_log)

    async def _new_pods(
        self, request: DeployRequest, run_log: RunLog, workload: KubeObject
    ) -> tuple[list[KubeObject], bool]:
        """The workload's pods running the new image; (pods, keep inspecting)."""
        ref = request.target
        selector = (workload.get("spec") or {}).get("selector")
        try:
            pods = await self._call(
                run_log, lambda: self.api.list_pods(ref.cluster, ref.namespace, selector_string(selector))
            )
        except KubeApiError as exc:
            if exc.kind is ErrorKind.FORBIDDEN:
                await run_log.entry(
                    "rollout",
                    f"{exc.describe()} Without it, image pull failures are only seen as a rollout timeout.",
                    Level.WARNING,
                )
                return [], False
            raise RunFailed(exc.describe()) from None
        return pod_rules.new_pods(pods, selector, request.container, request.image), True

    async def _rollback(self, request: DeployRequest, run_log: RunLog, previous: str, fence: Fence | None) -> str:
        """Restore the previous image; returns what to append to the run's error."""
        if not previous:
            await run_log.entry(
                "rollback",
                "cannot roll back: this run did not change the image, so there is no previous image to restore",
                Level.WARNING,
            )
            return "; not rolled back (no previous image)"
        await run_log.entry("rollback", f"rolling back container {request.container!r} to {previous}")
        try:
            for attempt in range(self.conflict_retries + 1):
                workload = await self._read(request, run_log)
                slot = find_container(request.target, workload, request.container)
                if slot.image != request.image:
                    await run_log.entry(
                        "rollback",
                        f"not rolling back: {slot.description} now runs {slot.image}, set by someone else",
                        Level.WARNING,
                    )
                    return f"; not rolled back ({slot.description} was changed to {slot.image} meanwhile)"
                patched = await self._patch(
                    request, run_log, workload, slot, image=previous, attempt=attempt, rollback=True, fence=fence
                )
                if patched is not None:
                    await run_log.entry("rollback", f"rolled back {slot.description} to {previous}")
                    return f"; rolled back {slot.description} to {previous}"
        except (RunFailed, ContainerNotFound) as exc:
            message = exc.message if isinstance(exc, RunFailed) else str(exc)
            await run_log.entry("rollback", f"rollback failed: {message}", Level.ERROR)
            return f"; rollback to {previous} failed: {message}"
        await run_log.entry("rollback", "rollback failed: the workload kept changing", Level.ERROR)
        return f"; rollback to {previous} failed: the workload kept changing"
