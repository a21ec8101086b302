# ruff: noqa: N802  (servicer method names come from the .proto)
"""In-memory fakes of the four APIs conveyorctl uses, served by real grpc.aio servers.

They follow the contracts closely enough to exercise the CLI (field masks, etags,
pagination, filters, follow streams, error statuses through `conveyor.errors`), and record
what they received so tests can assert on the requests the CLI sent.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from google.protobuf import empty_pb2, timestamp_pb2

from conveyor import names
from conveyor.errors import (
    Aborted,
    AlreadyExists,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
)
from conveyor.server import GrpcServer
from conveyor.v1 import (
    bus_pb2,
    event_service_pb2,
    event_service_pb2_grpc,
    pipeline_pb2,
    pipeline_service_pb2,
    pipeline_service_pb2_grpc,
    run_pb2,
    run_service_pb2,
    run_service_pb2_grpc,
    target_service_pb2,
    target_service_pb2_grpc,
)

Run = run_pb2.Run
TERMINAL = {Run.SUCCEEDED, Run.FAILED, Run.SUPERSEDED, Run.CANCELLED}


def timestamp(moment: dt.datetime | None = None) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(moment or dt.datetime.now(dt.UTC))
    return stamp


def _page(items: list[Any], size: int, token: str) -> tuple[list[Any], str]:
    start = int(token) if token else 0
    size = size or 50
    chunk = items[start : start + size]
    return chunk, (str(start + size) if start + size < len(items) else "")


@dataclass
class FakeState:
    pipelines: dict[str, pipeline_pb2.Pipeline] = field(default_factory=dict)
    runs: dict[str, run_pb2.Run] = field(default_factory=dict)
    logs: dict[str, list[run_pb2.RunLogEntry]] = field(default_factory=dict)
    events: list[event_service_pb2.RegistryEvent] = field(default_factory=list)
    tags: dict[str, list[event_service_pb2.ImageTag]] = field(default_factory=dict)
    clusters: list[target_service_pb2.Cluster] = field(default_factory=list)
    # Raised by ListTags when set (e.g. the registry is unreachable).
    tags_error: Exception | None = None
    workloads: list[target_service_pb2.Workload] = field(default_factory=list)
    # What the CLI sent, for assertions.
    requests: list[tuple[str, Any]] = field(default_factory=list)
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)

    def sent(self, method: str) -> list[Any]:
        return [request for name, request in self.requests if name == method]

    async def append_log(self, run: str, step: str, message: str, *, state: int | None = None) -> None:
        async with self.changed:
            self.logs.setdefault(run, []).append(
                run_pb2.RunLogEntry(time=timestamp(), level=run_pb2.RunLogEntry.INFO, step=step, message=message)
            )
            if state is not None:
                record = self.runs[run]
                record.state = state
                if state in TERMINAL:
                    record.end_time.CopyFrom(timestamp())
            self.changed.notify_all()


class FakePipelineService(pipeline_service_pb2_grpc.PipelineServiceServicer):
    REQUIRED = (
        ("display_name", "display_name"),
        ("source.registry", "pipeline.source.registry"),
        ("source.repository", "pipeline.source.repository"),
        ("target.cluster", "pipeline.target.cluster"),
        ("target.namespace", "pipeline.target.namespace"),
        ("target.workload", "pipeline.target.workload"),
        ("target.container", "pipeline.target.container"),
    )

    def __init__(self, state: FakeState) -> None:
        self.state = state
        self.created_by_request: dict[str, str] = {}

    def _get(self, name: str) -> pipeline_pb2.Pipeline:
        names.parse_pipeline_name(name)
        if name not in self.state.pipelines:
            raise NotFound(f'pipeline "{name}" not found')
        return self.state.pipelines[name]

    def _validate(self, pipeline: pipeline_pb2.Pipeline) -> None:
        violations = []
        for path, label in self.REQUIRED:
            value: Any = pipeline
            for part in path.split("."):
                value = getattr(value, part)
            if not value:
                violations.append(FieldViolation(label if "." in path else f"pipeline.{label}", "is required"))
        if pipeline.target.workload_kind == pipeline_pb2.Target.WORKLOAD_KIND_UNSPECIFIED:
            violations.append(FieldViolation("pipeline.target.workload_kind", "is required"))
        if pipeline.source.tag_filter.type == pipeline_pb2.TagFilter.REGEX:
            try:
                re.compile(pipeline.source.tag_filter.value)
            except re.error as exc:
                violations.append(FieldViolation("pipeline.source.tag_filter.value", f"invalid regex: {exc}"))
        if violations:
            raise InvalidArgument.from_violations(violations)

    async def CreatePipeline(self, request: Any, context: Any) -> pipeline_pb2.Pipeline:
        self.state.requests.append(("CreatePipeline", request))
        if request.request_id and request.request_id in self.created_by_request:
            return self.state.pipelines[self.created_by_request[request.request_id]]
        pipeline = pipeline_pb2.Pipeline()
        pipeline.CopyFrom(request.pipeline)
        pipeline_id = request.pipeline_id or f"p{names.new_id()[-8:]}"
        names.validate_user_id(pipeline_id)
        pipeline.name = f"pipelines/{pipeline_id}"
        self._validate(pipeline)
        if pipeline.name in self.state.pipelines:
            raise AlreadyExists(f'pipeline "{pipeline.name}" already exists')
        if request.validate_only:
            return pipeline
        now = timestamp()
        pipeline.create_time.CopyFrom(now)
        pipeline.update_time.CopyFrom(now)
        pipeline.etag = uuid.uuid4().hex[:12]
        self.state.pipelines[pipeline.name] = pipeline
        if request.request_id:
            self.created_by_request[request.request_id] = pipeline.name
        return pipeline

    async def GetPipeline(self, request: Any, context: Any) -> pipeline_pb2.Pipeline:
        self.state.requests.append(("GetPipeline", request))
        return self._get(request.name)

    async def ListPipelines(self, request: Any, context: Any) -> pipeline_service_pb2.ListPipelinesResponse:
        self.state.requests.append(("ListPipelines", request))
        items = sorted(self.state.pipelines.values(), key=lambda p: p.name)
        for clause in filter(None, (c.strip() for c in request.filter.split(" AND "))):
            match = re.fullmatch(r'([a-z_.]+) = "(.*)"', clause)
            if not match:
                raise InvalidArgument.from_violations([FieldViolation("filter", f"cannot parse {clause!r}")])
            path, value = match.groups()

            def field_value(p: pipeline_pb2.Pipeline, path: str = path) -> str:
                current: Any = p
                for part in path.split("."):
                    current = getattr(current, part)
                return str(current).lower() if isinstance(current, bool) else str(current)

            items = [p for p in items if field_value(p) == value]
        chunk, token = _page(items, request.page_size, request.page_token)
        return pipeline_service_pb2.ListPipelinesResponse(pipelines=chunk, next_page_token=token, total_size=len(items))

    async def UpdatePipeline(self, request: Any, context: Any) -> pipeline_pb2.Pipeline:
        self.state.requests.append(("UpdatePipeline", request))
        current = self._get(request.pipeline.name)
        if request.pipeline.etag and request.pipeline.etag != current.etag:
            raise Aborted(f'pipeline "{current.name}" was changed since etag {request.pipeline.etag}; re-read it')
        updated = pipeline_pb2.Pipeline()
        updated.CopyFrom(current)
        request.update_mask.MergeMessage(request.pipeline, updated, replace_message_field=True)
        updated.name, updated.etag = current.name, current.etag
        self._validate(updated)
        if request.validate_only:
            return updated
        updated.update_time.CopyFrom(timestamp())
        updated.etag = uuid.uuid4().hex[:12]
        self.state.pipelines[updated.name] = updated
        return updated

    async def DeletePipeline(self, request: Any, context: Any) -> empty_pb2.Empty:
        self.state.requests.append(("DeletePipeline", request))
        current = self._get(request.name)
        if request.etag and request.etag != current.etag:
            raise Aborted(f'pipeline "{current.name}" was changed since etag {request.etag}; re-read it')
        del self.state.pipelines[request.name]
        # Like config, the pipeline's run history goes with it.
        for run in [r for r in self.state.runs if r.startswith(f"{request.name}/runs/")]:
            del self.state.runs[run]
        return empty_pb2.Empty()

    async def StartPipeline(self, request: Any, context: Any) -> run_pb2.Run:
        self.state.requests.append(("StartPipeline", request))
        pipeline = self._get(request.name)
        if pipeline.disabled:
            raise FailedPrecondition(f'pipeline "{pipeline.name}" is disabled')
        run_id = names.new_id()
        run = run_pb2.Run(
            name=f"{pipeline.name}/runs/{run_id}",
            trigger=Run.MANUAL,
            image=f"{pipeline.source.registry}/{pipeline.source.repository}:{request.tag}",
            tag=request.tag,
            digest=request.digest,
            state=Run.QUEUED,
            create_time=timestamp(),
        )
        async with self.state.changed:
            self.state.runs[run.name] = run
            self.state.logs[run.name] = [
                run_pb2.RunLogEntry(
                    time=timestamp(), level=run_pb2.RunLogEntry.INFO, step="queued", message="started by hand"
                )
            ]
            self.state.changed.notify_all()
        return run


class FakeRunService(run_service_pb2_grpc.RunServiceServicer):
    def __init__(self, state: FakeState) -> None:
        self.state = state

    def _get(self, name: str) -> run_pb2.Run:
        names.parse_run_name(name)
        if name not in self.state.runs:
            raise NotFound(f'run "{name}" not found')
        return self.state.runs[name]

    async def GetRun(self, request: Any, context: Any) -> run_pb2.Run:
        self.state.requests.append(("GetRun", request))
        return self._get(request.name)

    async def ListRuns(self, request: Any, context: Any) -> run_service_pb2.ListRunsResponse:
        self.state.requests.append(("ListRuns", request))
        parent = names.parse_pipeline_name(request.parent, "parent", allow_wildcard=True)
        runs = [
            r
            for r in self.state.runs.values()
            if parent.pipeline == names.ALL_PIPELINES or r.name.startswith(f"{parent}/runs/")
        ]
        states = set(re.findall(r"state = ([A-Z]+)", request.filter))
        if states:
            runs = [r for r in runs if Run.State.Name(r.state) in states]
        runs.sort(key=lambda r: r.name.rsplit("/", 1)[1], reverse=True)
        chunk, token = _page(runs, request.page_size, request.page_token)
        return run_service_pb2.ListRunsResponse(runs=chunk, next_page_token=token)

    async def DeleteRun(self, request: Any, context: Any) -> empty_pb2.Empty:
        self.state.requests.append(("DeleteRun", request))
        run = self._get(request.name)
        if run.state not in TERMINAL:
            raise FailedPrecondition(
                f'run "{run.name}" is {Run.State.Name(run.state)}; only finished runs can be deleted'
            )
        del self.state.runs[run.name]
        return empty_pb2.Empty()

    async def TailRunLogs(self, request: Any, context: Any) -> AsyncIterator[run_pb2.RunLogEntry]:
        self.state.requests.append(("TailRunLogs", request))
        self._get(request.name)
        sent = 0
        while True:
            async with self.state.changed:
                entries = self.state.logs.get(request.name, [])
                fresh, sent = entries[sent:], len(entries)
                done = self.state.runs[request.name].state in TERMINAL
            for entry in fresh:
                yield entry
            if done or not request.follow:
                return
            async with self.state.changed:
                if (
                    len(self.state.logs.get(request.name, [])) == sent
                    and self.state.runs[request.name].state not in TERMINAL
                ):
                    await self.state.changed.wait()


class FakeEventService(event_service_pb2_grpc.EventServiceServicer):
    def __init__(self, state: FakeState) -> None:
        self.state = state

    async def ListEvents(self, request: Any, context: Any) -> event_service_pb2.ListEventsResponse:
        self.state.requests.append(("ListEvents", request))
        events = [
            e
            for e in self.state.events
            if (not request.registry or e.push.registry == request.registry)
            and (not request.repository or e.push.repository == request.repository)
        ]
        chunk, token = _page(events, request.page_size, request.page_token)
        return event_service_pb2.ListEventsResponse(events=chunk, next_page_token=token)

    async def ListTags(self, request: Any, context: Any) -> event_service_pb2.ListTagsResponse:
        self.state.requests.append(("ListTags", request))
        if request.pipeline not in self.state.pipelines:
            raise NotFound(f'pipeline "{request.pipeline}" not found')
        if self.state.tags_error is not None:
            raise self.state.tags_error
        tags = [
            event_service_pb2.ImageTag(tag=t.tag, digest=t.digest if request.include_digests else "")
            for t in self.state.tags.get(request.pipeline, [])
        ]
        chunk, token = _page(tags, request.page_size, request.page_token)
        return event_service_pb2.ListTagsResponse(tags=chunk, next_page_token=token)


class FakeTargetService(target_service_pb2_grpc.TargetServiceServicer):
    def __init__(self, state: FakeState) -> None:
        self.state = state

    def _cluster(self, name: str) -> None:
        if name not in {c.name for c in self.state.clusters}:
            raise NotFound(f'cluster "{name}" is not configured on the deployer')

    async def ListClusters(self, request: Any, context: Any) -> target_service_pb2.ListClustersResponse:
        self.state.requests.append(("ListClusters", request))
        return target_service_pb2.ListClustersResponse(clusters=self.state.clusters)

    async def ListNamespaces(self, request: Any, context: Any) -> target_service_pb2.ListNamespacesResponse:
        self.state.requests.append(("ListNamespaces", request))
        self._cluster(request.cluster)
        namespaces = sorted({w.namespace for w in self.state.workloads if w.cluster == request.cluster})
        return target_service_pb2.ListNamespacesResponse(namespaces=namespaces)

    async def ListWorkloads(self, request: Any, context: Any) -> target_service_pb2.ListWorkloadsResponse:
        self.state.requests.append(("ListWorkloads", request))
        self._cluster(request.cluster)
        workloads = [
            w
            for w in self.state.workloads
            if w.cluster == request.cluster
            and w.namespace == request.namespace
            and request.kind in (pipeline_pb2.Target.WORKLOAD_KIND_UNSPECIFIED, w.kind)
        ]
        return target_service_pb2.ListWorkloadsResponse(workloads=workloads)

    async def GetWorkload(self, request: Any, context: Any) -> target_service_pb2.Workload:
        self.state.requests.append(("GetWorkload", request))
        self._cluster(request.cluster)
        for w in self.state.workloads:
            if (w.cluster, w.namespace, w.kind, w.name) == (
                request.cluster,
                request.namespace,
                request.kind,
                request.name,
            ):
                return w
        kind = pipeline_pb2.Target.WorkloadKind.Name(request.kind).lower()
        raise NotFound(f'{kind} "{request.namespace}/{request.name}" not found in cluster "{request.cluster}"')


@dataclass
class FakeConveyor:
    """The three fake services on their own ports, sharing one state."""

    state: FakeState
    servers: dict[str, GrpcServer]

    @property
    def env(self) -> dict[str, str]:
        return {
            "CONVEYOR_CONFIG_ADDR": self.servers["config"].bound_address,
            "CONVEYOR_TRIGGER_ADDR": self.servers["trigger"].bound_address,
            "CONVEYOR_DEPLOYER_ADDR": self.servers["deployer"].bound_address,
        }

    async def stop(self) -> None:
        for server in self.servers.values():
            await server.stop(0)


async def start_fakes(state: FakeState) -> FakeConveyor:
    config = GrpcServer("127.0.0.1:0", ["conveyor.v1.PipelineService", "conveyor.v1.RunService"])
    config.add(pipeline_service_pb2_grpc.add_PipelineServiceServicer_to_server, FakePipelineService(state))
    config.add(run_service_pb2_grpc.add_RunServiceServicer_to_server, FakeRunService(state))
    trigger = GrpcServer("127.0.0.1:0", ["conveyor.v1.EventService"])
    trigger.add(event_service_pb2_grpc.add_EventServiceServicer_to_server, FakeEventService(state))
    deployer = GrpcServer("127.0.0.1:0", ["conveyor.v1.TargetService"])
    deployer.add(target_service_pb2_grpc.add_TargetServiceServicer_to_server, FakeTargetService(state))
    servers = {"config": config, "trigger": trigger, "deployer": deployer}
    for server in servers.values():
        await server.start()
    return FakeConveyor(state, servers)


def sample_event(
    registry: str, repository: str, tag: str, decisions: list[event_service_pb2.MatchDecision]
) -> event_service_pb2.RegistryEvent:
    return event_service_pb2.RegistryEvent(
        push=bus_pb2.ImagePushed(
            event_id=f"evt-{uuid.uuid4().hex[:8]}",
            registry=registry,
            repository=repository,
            tag=tag,
            digest="sha256:" + "ab" * 32,
            source_format="harbor",
        ),
        receive_time=timestamp(dt.datetime.now(dt.UTC) - dt.timedelta(minutes=3)),
        decisions=decisions,
    )
