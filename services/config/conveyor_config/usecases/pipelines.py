"""The pipeline use cases: Create, Get (cached), List, Update and Delete pipelines."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from google.protobuf import timestamp_pb2

from conveyor import logs
from conveyor.aip import field_masks, ids, paging
from conveyor.aip.page_tokens import PageTokenCodec
from conveyor.errors import Aborted, AlreadyExists, FailedPrecondition, FieldViolation, InvalidArgument, NotFound
from conveyor.names import parse_pipeline_name
from conveyor.v1 import bus_pb2, pipeline_pb2
from conveyor.v1.pipeline_pb2 import Pipeline
from conveyor_config.domain.names import PIPELINE_ID_PREFIX, validate_request_id
from conveyor_config.domain.outcomes import CreateOutcome, DeleteOutcome
from conveyor_config.domain.pipelines import (
    UPDATABLE,
    check_pipeline,
    clear_output_only,
    missing_container_message,
    new_etag,
    normalize_pipeline,
    target_changed,
    validate_pipeline,
)
from conveyor_config.domain.queries import parse_pipeline_filter
from conveyor_config.usecases.caches import CountCache, PipelineCache
from conveyor_config.usecases.common import collect, require, timestamp
from conveyor_config.usecases.ports import (
    ChangePublisher,
    PipelineRepository,
    RequestRecord,
    TargetLookupError,
    WorkloadLookup,
)

log = logging.getLogger(__name__)


def source_image(pipeline: Pipeline) -> str:
    """The pipeline's image as a cluster policy matches it: `registry/repository`."""
    return f"{pipeline.source.registry}/{pipeline.source.repository}"


CREATE_SCOPE = "CreatePipeline"


@dataclass
class PipelineUseCases:
    store: PipelineRepository
    changes: ChangePublisher
    # One codec per process, keyed by CONVEYOR_PAGE_TOKEN_KEY (app.py builds it).
    page_tokens: PageTokenCodec
    targets: WorkloadLookup | None = None
    clock: Callable[[], float] = time.time
    count_cache_seconds: float = 2.0
    cache: PipelineCache = field(default_factory=lambda: PipelineCache(ttl=0.0))
    _counts: CountCache = field(init=False)

    def __post_init__(self) -> None:
        self._counts = CountCache(self.count_cache_seconds, time.monotonic)

    async def create(
        self, pipeline: Pipeline, *, pipeline_id: str = "", request_id: str = "", validate_only: bool = False
    ) -> Pipeline:
        violations = collect(lambda: validate_request_id(request_id))
        if pipeline_id:
            violations += collect(lambda: ids.validate_id(pipeline_id, "pipeline_id"))
        candidate = Pipeline()
        candidate.CopyFrom(pipeline)
        clear_output_only(candidate)
        normalized = normalize_pipeline(candidate)
        require(violations + validate_pipeline(normalized))
        if request_id and not validate_only:
            earlier = await self.store.find_request(CREATE_SCOPE, request_id)
            if earlier is not None:
                replayed: Pipeline = Pipeline.FromString(earlier)
                return replayed
        await self._check_policy(normalized)
        await self._check_target(normalized.target)
        pipeline_id = pipeline_id or ids.new_id(PIPELINE_ID_PREFIX)
        normalized.name = f"pipelines/{pipeline_id}"
        if validate_only:
            return normalized
        now = timestamp(self.clock())
        normalized.create_time.CopyFrom(now)
        normalized.update_time.CopyFrom(now)
        normalized.etag = new_etag()
        request = (
            RequestRecord(CREATE_SCOPE, request_id, normalized.SerializeToString(), now.ToMicroseconds())
            if request_id
            else None
        )
        with logs.bind(pipeline=pipeline_id):
            outcome, earlier = await self.store.insert_pipeline(normalized, request)
            if outcome is CreateOutcome.REPLAYED and earlier is not None:
                first: Pipeline = Pipeline.FromString(earlier)
                return first
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
        size = paging.page_size(page_size)
        where = parse_pipeline_filter(filter)
        query = where.page_query()
        after = self.page_tokens.decode(page_token, query, (str,))[0] if page_token else None
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
            next_token = self.page_tokens.encode([page[-1].name.removeprefix("pipelines/")], query)
        return page, next_token, total

    async def update(self, patch: Pipeline, paths: Sequence[str], *, validate_only: bool = False) -> Pipeline:
        """UpdatePipeline with AIP-134 masks: named paths; no paths = the fields `patch` sets; `*` = replace."""
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
                merged, applied = field_masks.apply(existing, patch, paths, UPDATABLE)
                updated = check_pipeline(merged)
                if target_changed(existing, updated) or source_image(existing) != source_image(updated):
                    await self._check_policy(updated)
                if target_changed(existing, updated):
                    await self._check_target(updated.target)
                if validate_only:
                    return updated
                now = timestamp(self.clock())
                updated.update_time.CopyFrom(now)
                updated.etag = new_etag()
                if await self.store.replace_pipeline(updated, existing.etag):
                    self.cache.invalidate(pipeline_id)
                    self._counts.invalidate()  # `disabled` and the filtered fields may have changed
                    log.info("pipeline updated", extra={"paths": ",".join(applied)})
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
            now = timestamp(self.clock())
            outcome, active = await self.store.delete_pipeline(pipeline_id, etag, now)
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
            await self._publish(bus_pb2.PipelineChanged.DELETED, Pipeline(name=name), now)

    async def _publish(self, change: int, pipeline: Pipeline, now: timestamp_pb2.Timestamp) -> None:
        message = bus_pb2.PipelineChanged(change=change, pipeline=pipeline, time=now)  # type: ignore[arg-type]
        try:
            await self.changes.pipeline_changed(message)
        except Exception as exc:  # best effort: caches also re-sync periodically
            log.warning("could not publish PipelineChanged", extra={"error": str(exc)})

    async def _check_policy(self, pipeline: Pipeline) -> None:
        """Ask the deployer whether its cluster policy allows this image in this namespace (as it checks again
        before every deploy); a deployer that cannot answer leaves the decision to the deploy itself."""
        if self.targets is None:
            return
        try:
            denials = await self.targets.policy_denials(pipeline.target, source_image(pipeline))
        except TargetLookupError as exc:
            log.warning(
                "cannot check the cluster's deploy policy; the deployer checks it again at deploy time",
                extra={"cluster": pipeline.target.cluster, "error": exc.message},
            )
            return
        if denials:
            where = {"namespace": "pipeline.target.namespace", "image": "pipeline.source.repository"}
            raise InvalidArgument.from_violations(
                [
                    FieldViolation(
                        where.get(field, "pipeline.target"),
                        f"denied by the policy of cluster {pipeline.target.cluster}: {reason}",
                    )
                    for field, reason in denials
                ]
            )

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
                [FieldViolation(f"{prefix}.container", missing_container_message(target, containers, init_containers))]
            )
