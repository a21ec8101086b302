"""Use cases of the config service: plain async code over adapters typed by Protocols.

The gRPC servicers and the bus consumer call these; they raise `conveyor.errors`
exceptions, which the shared interceptor maps to gRPC statuses in one place.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from google.protobuf import timestamp_pb2

from conveyor import logs, refs
from conveyor.bus import DEPLOY_REQUESTED_SUBJECT
from conveyor.errors import (
    Aborted,
    AlreadyExists,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    Unavailable,
)
from conveyor.names import ALL_PIPELINES, RunName, derived_id, new_id, parse_pipeline_name, parse_run_name
from conveyor.names import validate_user_id as _validate_user_id
from conveyor.v1 import bus_pb2, pipeline_pb2, target_service_pb2
from conveyor.v1.pipeline_pb2 import Pipeline
from conveyor.v1.run_pb2 import Run, RunLogEntry
from conveyor_config import domain
from conveyor_config.domain import (
    CreateOutcome,
    DeleteOutcome,
    EventOutcome,
    PipelineFilter,
    StartOutcome,
)
from conveyor_config.storage import NewOutboxMessage, RequestRecord, RunProgress

log = logging.getLogger(__name__)

CREATE_SCOPE = "CreatePipeline"
START_SCOPE = "StartPipeline"
MAX_EVENT_ID_CHARS = 512
_LOG_PAGE = 500


# --------------------------------------------------------------------------- ports


class PipelineRepository(Protocol):
    async def find_request(self, scope: str, request_id: str) -> bytes | None: ...
    async def get_pipeline(self, pipeline_id: str) -> Pipeline | None: ...
    async def insert_pipeline(
        self, pipeline: Pipeline, request: RequestRecord | None
    ) -> tuple[CreateOutcome, bytes | None]: ...
    async def list_pipelines(self, where: PipelineFilter, after_id: str | None, limit: int) -> list[Pipeline]: ...
    async def count_pipelines(self, where: PipelineFilter) -> int: ...
    async def replace_pipeline(self, pipeline: Pipeline, expected_etag: str) -> bool: ...
    async def delete_pipeline(self, pipeline_id: str, etag: str) -> tuple[DeleteOutcome, list[str]]: ...


class RunRepository(Protocol):
    async def find_request(self, scope: str, request_id: str) -> bytes | None: ...
    async def get_pipeline(self, pipeline_id: str) -> Pipeline | None: ...
    async def pipeline_exists(self, pipeline_id: str) -> bool: ...
    async def start_run(
        self,
        run: Run,
        entries: Sequence[RunLogEntry],
        message: NewOutboxMessage,
        *,
        expected_etag: str,
        request: RequestRecord | None,
    ) -> tuple[StartOutcome, bytes | None]: ...
    async def get_run(self, name: RunName) -> Run | None: ...
    async def run_progress(self, name: RunName) -> RunProgress | None: ...
    async def list_runs(
        self, pipeline_id: str | None, states: frozenset[int], after: tuple[int, str, str] | None, limit: int
    ) -> list[Run]: ...
    async def delete_run(self, name: RunName) -> DeleteOutcome: ...
    async def read_run_logs(self, name: RunName, from_seq: int, limit: int) -> list[tuple[int, RunLogEntry]]: ...
    async def apply_run_event(
        self, name: RunName, event_id: str, event: bus_pb2.RunEvent, now: timestamp_pb2.Timestamp
    ) -> EventOutcome: ...


class ImageResolver(Protocol):
    """Resolves a tag to its manifest digest (shape of `conveyor.registry.RegistryClient`).

    Failures raise an exception with a `kind` attribute: "not_found" when the tag does
    not exist; anything else ("unreachable", "unauthorized", ...) means "could not tell".
    """

    async def resolve_digest(self, registry: str, repository: str, reference: str) -> str: ...


class TargetLookupError(Exception):
    """The deployer could not answer: kind "not_found" (it said so) or "unavailable"."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


class WorkloadLookup(Protocol):
    """The deployer's TargetService, as far as config needs it."""

    async def get_workload(self, target: pipeline_pb2.Target) -> target_service_pb2.Workload: ...
    async def cluster_names(self) -> list[str]: ...


class ChangePublisher(Protocol):
    async def pipeline_changed(self, message: bus_pb2.PipelineChanged) -> None: ...


# --------------------------------------------------------------------------- helpers


def _timestamp(seconds: float) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromMicroseconds(int(seconds * 1_000_000))
    return stamp


def _require(violations: list[FieldViolation]) -> None:
    if violations:
        raise InvalidArgument.from_violations(violations)


def _collect(check: Callable[[], object]) -> list[FieldViolation]:
    try:
        check()
    except InvalidArgument as exc:
        return list(exc.violations)
    return []


class _CountCache:
    """total_size per filter, cached briefly: counting 100k rows on every page would dominate List.

    Local writes invalidate it at once; other replicas' writes show within `ttl` seconds
    (AIP-132 allows total_size to be an estimate).
    """

    def __init__(self, ttl: float, clock: Callable[[], float]) -> None:
        self.ttl = ttl
        self.clock = clock
        self._values: dict[str, tuple[float, int]] = {}

    def get(self, key: str) -> int | None:
        hit = self._values.get(key)
        if hit is None or hit[0] < self.clock():
            return None
        return hit[1]

    def put(self, key: str, value: int) -> None:
        if self.ttl > 0:
            if len(self._values) > 1000:
                self._values.clear()
            self._values[key] = (self.clock() + self.ttl, value)

    def invalidate(self) -> None:
        self._values.clear()


class PipelineCache:
    """Pipelines by id for GetPipeline, kept coherent by invalidation.

    Local writes and PipelineChanged notices (from every replica) invalidate entries; a
    reconnect to NATS clears everything (notices may have been missed); `ttl` bounds
    staleness should a notice still be lost. A read that started before an invalidation
    is not cached (generation check), so a slow read cannot resurrect an old version.
    Entries are stored serialised: callers get their own copy.
    """

    def __init__(self, ttl: float, capacity: int = 100_000, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self.capacity = capacity
        self.clock = clock
        self._entries: collections.OrderedDict[str, tuple[float, bytes]] = collections.OrderedDict()
        self._generation = 0

    def lookup(self, pipeline_id: str) -> Pipeline | None:
        entry = self._entries.get(pipeline_id)
        if entry is None:
            return None
        if entry[0] < self.clock():
            del self._entries[pipeline_id]
            return None
        self._entries.move_to_end(pipeline_id)
        return Pipeline.FromString(entry[1])

    def begin_read(self) -> int:
        return self._generation

    def fill(self, pipeline_id: str, pipeline: Pipeline, token: int) -> None:
        if self.ttl <= 0 or token != self._generation:
            return
        self._entries[pipeline_id] = (self.clock() + self.ttl, pipeline.SerializeToString())
        self._entries.move_to_end(pipeline_id)
        while len(self._entries) > self.capacity:
            self._entries.popitem(last=False)

    def invalidate(self, pipeline_id: str) -> None:
        self._generation += 1
        self._entries.pop(pipeline_id, None)

    def clear(self) -> None:
        self._generation += 1
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)


# --------------------------------------------------------------------------- pipelines


@dataclass
class PipelineUseCases:
    store: PipelineRepository
    changes: ChangePublisher
    targets: WorkloadLookup | None = None
    clock: Callable[[], float] = time.time
    count_cache_seconds: float = 2.0
    cache: PipelineCache = field(default_factory=lambda: PipelineCache(ttl=0.0))
    _counts: _CountCache = field(init=False)

    def __post_init__(self) -> None:
        self._counts = _CountCache(self.count_cache_seconds, time.monotonic)

    async def create(
        self, pipeline: Pipeline, *, pipeline_id: str = "", request_id: str = "", validate_only: bool = False
    ) -> Pipeline:
        violations = _collect(lambda: domain.validate_request_id(request_id))
        if pipeline_id:
            violations += _collect(lambda: _validate_user_id(pipeline_id, "pipeline_id"))
        candidate = Pipeline()
        candidate.CopyFrom(pipeline)
        domain.clear_output_only(candidate)
        normalized = domain.normalize_pipeline(candidate)
        _require(violations + domain.validate_pipeline(normalized))
        if request_id and not validate_only:
            earlier = await self.store.find_request(CREATE_SCOPE, request_id)
            if earlier is not None:
                return Pipeline.FromString(earlier)
        await self._check_target(normalized.target)
        pipeline_id = pipeline_id or new_id()
        normalized.name = f"pipelines/{pipeline_id}"
        if validate_only:
            return normalized
        now = _timestamp(self.clock())
        normalized.create_time.CopyFrom(now)
        normalized.update_time.CopyFrom(now)
        normalized.etag = domain.new_etag()
        request = (
            RequestRecord(CREATE_SCOPE, request_id, normalized.SerializeToString(), now.ToMicroseconds())
            if request_id
            else None
        )
        with logs.bind(pipeline=pipeline_id):
            outcome, earlier = await self.store.insert_pipeline(normalized, request)
            if outcome is CreateOutcome.REPLAYED and earlier is not None:
                return Pipeline.FromString(earlier)
            if outcome is CreateOutcome.ALREADY_EXISTS:
                raise AlreadyExists(
                    f"pipeline {normalized.name} already exists; choose another pipeline_id",
                    metadata={"name": normalized.name},
                )
            self._counts.invalidate()
            self.cache.invalidate(pipeline_id)
            log.info("pipeline created", extra={"display_name": normalized.display_name})
            await self._publish(bus_pb2.PipelineChanged.CREATED, normalized, now)
        return normalized

    async def get(self, name: str) -> Pipeline:
        """GetPipeline: served from the cache when it holds the pipeline."""
        pipeline_id = parse_pipeline_name(name).pipeline
        cached = self.cache.lookup(pipeline_id)
        if cached is not None:
            return cached
        token = self.cache.begin_read()
        pipeline = await self._load(name)
        self.cache.fill(pipeline_id, pipeline, token)
        return pipeline

    async def _load(self, name: str) -> Pipeline:
        """The stored pipeline, never the cache: read-modify-write must see the current etag."""
        pipeline = await self.store.get_pipeline(parse_pipeline_name(name).pipeline)
        if pipeline is None:
            raise NotFound(f"pipeline {name} not found", metadata={"name": name})
        return pipeline

    def pipeline_changed_elsewhere(self, pipeline_id: str | None) -> None:
        """A change notice (from any replica) arrived, or notices may have been missed (None)."""
        self._counts.invalidate()
        if pipeline_id is None:
            self.cache.clear()
        else:
            self.cache.invalidate(pipeline_id)

    async def list(self, *, page_size: int, page_token: str, filter: str) -> tuple[list[Pipeline], str, int]:
        size = domain.page_size(page_size)
        where = domain.parse_pipeline_filter(filter)
        binding = domain.page_binding("pipelines", where.canonical())
        after = domain.decode_page_token(page_token, binding, (str,))[0] if page_token else None
        cached_total = self._counts.get(where.canonical())
        if cached_total is None:
            page, total = await asyncio.gather(
                self.store.list_pipelines(where, after, size + 1), self.store.count_pipelines(where)
            )
            self._counts.put(where.canonical(), total)
        else:
            total = cached_total
            page = await self.store.list_pipelines(where, after, size + 1)
        next_token = ""
        if len(page) > size:
            page = page[:size]
            next_token = domain.encode_page_token([page[-1].name.removeprefix("pipelines/")], binding)
        return page, next_token, total

    async def update(self, patch: Pipeline, paths: Sequence[str], *, validate_only: bool = False) -> Pipeline:
        if not patch.name:
            raise InvalidArgument.from_violations([FieldViolation("pipeline.name", "required: pipelines/{pipeline}")])
        pipeline_id = parse_pipeline_name(patch.name, "pipeline.name").pipeline
        with logs.bind(pipeline=pipeline_id):
            for _attempt in range(5):
                existing = await self._load(patch.name)
                if patch.etag and patch.etag != existing.etag:
                    raise Aborted(
                        f"pipeline {existing.name} was changed since you read it (etag {patch.etag!r} is stale); "
                        "get it again and retry",
                        metadata={"name": existing.name},
                    )
                merged = domain.apply_update_mask(existing, patch, paths)
                updated = domain.check_pipeline(merged)
                if domain.target_changed(existing, updated):
                    await self._check_target(updated.target)
                if validate_only:
                    return updated
                now = _timestamp(self.clock())
                updated.update_time.CopyFrom(now)
                updated.etag = domain.new_etag()
                if await self.store.replace_pipeline(updated, existing.etag):
                    self.cache.invalidate(pipeline_id)
                    self._counts.invalidate()  # `disabled` and the filtered fields may have changed
                    log.info("pipeline updated", extra={"paths": ",".join(paths) or "*"})
                    await self._publish(bus_pb2.PipelineChanged.UPDATED, updated, now)
                    return updated
                if patch.etag:
                    raise Aborted(
                        f"pipeline {existing.name} was changed concurrently; get it again and retry",
                        metadata={"name": existing.name},
                    )
            raise Aborted(f"pipeline {patch.name} keeps changing concurrently; retry", metadata={"name": patch.name})

    async def delete(self, name: str, etag: str = "") -> None:
        pipeline_id = parse_pipeline_name(name).pipeline
        with logs.bind(pipeline=pipeline_id):
            outcome, active = await self.store.delete_pipeline(pipeline_id, etag)
            if outcome is DeleteOutcome.NOT_FOUND:
                raise NotFound(f"pipeline {name} not found", metadata={"name": name})
            if outcome is DeleteOutcome.STALE_ETAG:
                raise Aborted(
                    f"pipeline {name} was changed since you read it (etag {etag!r} is stale); get it again and retry",
                    metadata={"name": name},
                )
            if outcome is DeleteOutcome.ACTIVE_RUNS:
                raise FailedPrecondition(
                    f"pipeline {name} has runs in progress ({', '.join(active)}); "
                    "wait until they finish, or disable the pipeline first so no new runs start",
                    reason="ACTIVE_RUNS",
                    metadata={"name": name},
                )
            self._counts.invalidate()
            self.cache.invalidate(pipeline_id)
            log.info("pipeline deleted")
            await self._publish(bus_pb2.PipelineChanged.DELETED, Pipeline(name=name), _timestamp(self.clock()))

    async def _publish(self, change: int, pipeline: Pipeline, now: timestamp_pb2.Timestamp) -> None:
        message = bus_pb2.PipelineChanged(change=change, pipeline=pipeline, time=now)  # type: ignore[arg-type]
        try:
            await self.changes.pipeline_changed(message)
        except Exception as exc:  # best effort: caches also re-sync periodically
            log.warning("could not publish PipelineChanged", extra={"error": str(exc)})

    async def _check_target(self, target: pipeline_pb2.Target) -> None:
        """Ask the deployer whether the workload and container exist (when it is configured)."""
        if self.targets is None:
            return
        prefix = "pipeline.target"
        try:
            workload = await self.targets.get_workload(target)
        except TargetLookupError as exc:
            if exc.kind != "not_found":
                log.warning(
                    "cannot verify the pipeline's target; accepting it unverified",
                    extra={"cluster": target.cluster, "error": exc.message},
                )
                return
            clusters: list[str] | None
            try:
                clusters = await self.targets.cluster_names()
            except TargetLookupError:
                clusters = None
            if clusters is not None and target.cluster not in clusters:
                known = ", ".join(clusters) or "none"
                raise InvalidArgument.from_violations(
                    [
                        FieldViolation(
                            f"{prefix}.cluster",
                            f"cluster {target.cluster!r} is not configured on the deployer (clusters: {known})",
                        )
                    ]
                ) from None
            kind = pipeline_pb2.Target.WorkloadKind.Name(target.workload_kind).lower()
            raise InvalidArgument.from_violations(
                [
                    FieldViolation(
                        f"{prefix}.workload",
                        f"{kind} {target.namespace}/{target.workload} does not exist in cluster {target.cluster} "
                        f"({exc.message}); Conveyor updates existing workloads, it never creates them",
                    )
                ]
            ) from None
        containers = [c.name for c in workload.containers]
        init_containers = [c.name for c in workload.init_containers]
        if target.container not in containers and target.container not in init_containers:
            raise InvalidArgument.from_violations(
                [
                    FieldViolation(
                        f"{prefix}.container", domain.missing_container_message(target, containers, init_containers)
                    )
                ]
            )


# --------------------------------------------------------------------------- run notifications


class _Watch:
    def __init__(self, notifier: RunNotifier) -> None:
        self.notifier = notifier
        self.event = asyncio.Event()

    def clear(self) -> None:
        self.event.clear()

    async def wait(self, timeout: float) -> None:
        """Until the run changes, `timeout` passes, or the service shuts down (Unavailable)."""
        if not self.notifier.closed:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.event.wait(), timeout)
        if self.notifier.closed:
            raise Unavailable("the config service is shutting down; reconnect to keep following the run")


class RunNotifier:
    """In-process "this run changed" signals from the event consumer to TailRunLogs followers."""

    def __init__(self) -> None:
        self._watches: dict[str, set[_Watch]] = {}
        self.closed = False

    @contextlib.contextmanager
    def watch(self, run_name: str) -> Iterator[_Watch]:
        watch = _Watch(self)
        self._watches.setdefault(run_name, set()).add(watch)
        try:
            yield watch
        finally:
            watches = self._watches.get(run_name)
            if watches is not None:
                watches.discard(watch)
                if not watches:
                    del self._watches[run_name]

    def notify(self, run_name: str) -> None:
        for watch in self._watches.get(run_name, ()):
            watch.event.set()

    def close(self) -> None:
        self.closed = True
        for watches in self._watches.values():
            for watch in watches:
                watch.event.set()


# --------------------------------------------------------------------------- runs


@dataclass
class RunUseCases:
    store: RunRepository
    notifier: RunNotifier
    wake_outbox: Callable[[], None] = lambda: None
    resolver: ImageResolver | None = None
    clock: Callable[[], float] = time.time
    tail_poll_interval: float = 2.0
    resolve_timeout: float = 10.0

    async def start(self, name: str, *, tag: str, digest: str = "", request_id: str = "") -> Run:
        violations = _collect(lambda: parse_pipeline_name(name))
        if not tag:
            violations.append(FieldViolation("tag", "required: the tag to deploy"))
        elif not domain.is_valid_tag(tag):
            violations.append(
                FieldViolation("tag", f"{tag!r} is not a valid tag: up to 128 letters, digits, '_', '.' and '-'")
            )
        if digest and not refs.is_valid_digest(digest):
            violations.append(FieldViolation("digest", f"{digest!r} is not a digest such as sha256:<64 hex digits>"))
        violations += _collect(lambda: domain.validate_request_id(request_id))
        _require(violations)
        pipeline_id = parse_pipeline_name(name).pipeline
        with logs.bind(pipeline=pipeline_id):
            if request_id:
                earlier = await self.store.find_request(START_SCOPE, request_id)
                if earlier is not None:
                    return Run.FromString(earlier)
            for _attempt in range(3):
                pipeline = await self.store.get_pipeline(pipeline_id)
                if pipeline is None:
                    raise NotFound(f"pipeline {name} not found", metadata={"name": name})
                if pipeline.disabled:
                    raise self._disabled(name)
                run, entries, message = await self._plan(pipeline, tag, digest, request_id)
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
                    self.wake_outbox()
                    return run
                if outcome is StartOutcome.REPLAYED and earlier is not None:
                    return Run.FromString(earlier)
                if outcome is StartOutcome.NOT_FOUND:
                    raise NotFound(f"pipeline {name} not found", metadata={"name": name})
                if outcome is StartOutcome.DISABLED:
                    raise self._disabled(name)
            raise Aborted(f"pipeline {name} keeps changing while starting it; retry", metadata={"name": name})

    @staticmethod
    def _disabled(name: str) -> FailedPrecondition:
        return FailedPrecondition(
            f"pipeline {name} is disabled; enable it (UpdatePipeline with disabled=false) before starting it",
            reason="PIPELINE_DISABLED",
            metadata={"name": name},
        )

    async def _plan(
        self, pipeline: Pipeline, tag: str, digest: str, request_id: str
    ) -> tuple[Run, list[RunLogEntry], NewOutboxMessage]:
        source = pipeline.source
        now_seconds = self.clock()
        now = _timestamp(now_seconds)
        digest, notes = await self._resolve(source, tag, digest, now)
        image = refs.image_ref(source.registry, source.repository, tag, digest, pin_digest=pipeline.options.pin_digest)
        pipeline_id = pipeline.name.removeprefix("pipelines/")
        run_id = derived_id(int(now_seconds * 1000), "manual", pipeline_id, request_id) if request_id else new_id()
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
                message=f"Started by hand: deploy {image} to {domain.describe_target(pipeline.target)}",
            ),
            *notes,
        ]
        if not domain.tag_matches(source.tag_filter, tag):
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
        message = NewOutboxMessage(
            msg_id=run.name, subject=DEPLOY_REQUESTED_SUBJECT, payload=deploy.SerializeToString()
        )
        return run, entries, message

    async def _resolve(
        self, source: pipeline_pb2.Source, tag: str, digest: str, now: timestamp_pb2.Timestamp
    ) -> tuple[str, list[RunLogEntry]]:
        """Check the tag exists and find its digest; a registry we cannot reach does not block a start."""
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
            log.warning("could not resolve digest; deploying by tag", extra={"image": reference, "error": detail})
            note = RunLogEntry(
                time=now,
                level=RunLogEntry.WARNING,
                step="resolve-digest",
                message=f"could not resolve the digest of {reference} ({kind}: {detail}); deploying by tag",
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
        size = domain.page_size(page_size)
        where = domain.parse_run_filter(filter)
        binding = domain.page_binding("runs", pipeline_id, where.canonical())
        after: tuple[int, str, str] | None = None
        if page_token:
            created, after_pipeline, after_run = domain.decode_page_token(page_token, binding, (int, str, str))
            after = (created, after_pipeline, after_run)
        scope = None if pipeline_id == ALL_PIPELINES else pipeline_id
        if scope is not None and not await self.store.pipeline_exists(scope):
            raise NotFound(f"pipeline {parent} not found", metadata={"name": parent})
        page = await self.store.list_runs(scope, where.states, after, size + 1)
        next_token = ""
        if len(page) > size:
            page = page[:size]
            last = parse_run_name(page[-1].name)
            next_token = domain.encode_page_token(
                [page[-1].create_time.ToMicroseconds(), last.pipeline, last.run], binding
            )
        return page, next_token

    async def delete(self, name: str) -> None:
        run_name = parse_run_name(name)
        outcome = await self.store.delete_run(run_name)
        if outcome is DeleteOutcome.NOT_FOUND:
            raise NotFound(f"run {name} not found", metadata={"name": name})
        if outcome is DeleteOutcome.NOT_TERMINAL:
            raise FailedPrecondition(
                f"run {name} has not finished; only finished runs (SUCCEEDED, FAILED, SUPERSEDED, CANCELLED) "
                "can be deleted",
                reason="RUN_NOT_FINISHED",
                metadata={"name": name},
            )
        with logs.bind(pipeline=run_name.pipeline, run=run_name.run):
            log.info("run deleted")

    async def tail(self, name: str, *, follow: bool) -> AsyncIterator[RunLogEntry]:
        """The log so far; with `follow`, new entries as they are stored until the run is terminal."""
        run_name = parse_run_name(name)
        if await self.store.run_progress(run_name) is None:
            raise NotFound(f"run {name} not found", metadata={"name": name})
        next_seq = 0
        with self.notifier.watch(str(run_name)) as changes:
            while True:
                changes.clear()
                # State first: entries stored with a terminal state are visible by the time we read them.
                progress = await self.store.run_progress(run_name)
                if progress is None:
                    return  # deleted while we followed it
                while True:
                    batch = await self.store.read_run_logs(run_name, next_seq, _LOG_PAGE)
                    for seq, entry in batch:
                        next_seq = seq + 1
                        yield entry
                    if len(batch) < _LOG_PAGE:
                        break
                if not follow or domain.is_terminal(progress.state):
                    return
                # Woken by this replica's consumer; the timeout covers events stored by other replicas.
                await changes.wait(self.tail_poll_interval)

    async def record_event(self, event: bus_pb2.RunEvent, fallback_event_id: str = "") -> EventOutcome:
        """Persist a RunEvent from the bus. InvalidArgument means the message can never be stored."""
        run_name = parse_run_name(event.run, "run")
        event_id = event.event_id or fallback_event_id
        if not event_id:
            raise InvalidArgument.from_violations([FieldViolation("event_id", "required")])
        if len(event_id) > MAX_EVENT_ID_CHARS:
            raise InvalidArgument.from_violations(
                [FieldViolation("event_id", f"at most {MAX_EVENT_ID_CHARS} characters")]
            )
        with logs.bind(pipeline=run_name.pipeline, run=run_name.run):
            outcome = await self.store.apply_run_event(run_name, event_id, event, _timestamp(self.clock()))
            if outcome is EventOutcome.STORED:
                self.notifier.notify(str(run_name))
                log.debug("run event stored", extra={"state": event.state, "event_id": event_id})
            elif outcome is EventOutcome.NO_PIPELINE:
                log.warning("run event for a pipeline that does not exist; dropped", extra={"event_id": event_id})
        return outcome
