"""What the use cases need from the outside world, as Protocols (real ones in `adapters`, fakes in tests),
and the records that cross those ports."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol

from google.protobuf import timestamp_pb2

from conveyor.names import RunName
from conveyor.v1 import bus_pb2, pipeline_pb2, target_service_pb2
from conveyor.v1.pipeline_pb2 import Pipeline
from conveyor.v1.run_pb2 import Run, RunLogEntry
from conveyor_config.domain.outcomes import CreateOutcome, DeleteOutcome, EventOutcome, StartOutcome
from conveyor_config.domain.queries import PipelineFilter


@dataclass(frozen=True)
class RequestRecord:
    """An idempotency key and the response to replay to its retries."""

    scope: str
    request_id: str
    response: bytes
    create_time_us: int


@dataclass(frozen=True)
class OutboxMessage:
    id: int
    msg_id: str
    subject: str
    payload: bytes
    attempts: int


@dataclass(frozen=True)
class NewOutboxMessage:
    msg_id: str
    subject: str
    payload: bytes


@dataclass(frozen=True)
class RunProgress:
    state: int
    # The arrival sequence the next log entry gets (= entries stored so far).
    log_count: int


class LogPosition(NamedTuple):
    """A log entry's place in its run's log, which is read in this order (domain.runs.log_phase)."""

    phase: int
    event_time_us: int
    # Arrival order (0, 1, ... per run).
    seq: int


class PipelineRepository(Protocol):
    async def find_request(self, scope: str, request_id: str) -> bytes | None: ...
    async def get_pipeline(self, pipeline_id: str) -> Pipeline | None: ...
    async def insert_pipeline(
        self, pipeline: Pipeline, request: RequestRecord | None
    ) -> tuple[CreateOutcome, bytes | None]: ...
    async def list_pipelines(self, where: PipelineFilter, after_id: str | None, limit: int) -> list[Pipeline]: ...
    async def count_pipelines(self, where: PipelineFilter) -> int: ...
    async def replace_pipeline(self, pipeline: Pipeline, expected_etag: str) -> bool: ...
    async def delete_pipeline(
        self, pipeline_id: str, etag: str, now: timestamp_pb2.Timestamp
    ) -> tuple[DeleteOutcome, list[str]]: ...


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
    async def delete_run(self, name: RunName, now: timestamp_pb2.Timestamp) -> DeleteOutcome: ...
    async def read_run_logs(
        self, name: RunName, seqs: range, after: LogPosition | None = None, *, limit: int
    ) -> list[tuple[LogPosition, RunLogEntry]]: ...
    async def apply_run_event(
        self, name: RunName, event_id: str, event: bus_pb2.RunEvent, now: timestamp_pb2.Timestamp
    ) -> EventOutcome: ...
    async def apply_run_events(
        self, events: Sequence[tuple[RunName, str, bus_pb2.RunEvent]], now: timestamp_pb2.Timestamp
    ) -> list[EventOutcome]: ...


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
    async def policy_denials(self, target: pipeline_pb2.Target, image: str) -> list[tuple[str, str]]:
        """(field, reason) pairs the cluster's deploy policy denies, `field` being "namespace" or "image"."""
        ...


class ChangePublisher(Protocol):
    async def pipeline_changed(self, message: bus_pb2.PipelineChanged) -> None: ...


class RunLogNotices(Protocol):
    """Tells every replica that entries of a run were stored (so their TailRunLogs followers read them)."""

    async def run_logged(self, run_name: str) -> None: ...


class OutboxStore(Protocol):
    async def claim_outbox(self, now_us: int, limit: int, lease_until_us: int) -> list[OutboxMessage]: ...
    async def outbox_release(self, ids: Sequence[int], next_attempt_us: int) -> None: ...
    async def outbox_delivered(self, ids: Sequence[int]) -> None: ...
    async def outbox_failed(self, message_id: int, error: str, next_attempt_us: int) -> None: ...
    async def outbox_pending(self) -> int: ...


class MessagePublisher(Protocol):
    def ready(self) -> bool: ...
    async def publish(self, subject: str, payload: bytes, msg_id: str) -> None: ...


class RequestStore(Protocol):
    async def purge_requests(self, before_us: int) -> int: ...


class TombstoneStore(Protocol):
    async def purge_tombstones(self, before_us: int) -> int: ...
