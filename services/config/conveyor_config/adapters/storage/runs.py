"""Runs, their logs, the RunEvent ids already applied and the tombstones of deleted runs, in SQL."""

from __future__ import annotations

import collections
from collections.abc import Sequence
from typing import Any

from google.protobuf import timestamp_pb2
from sqlalchemy import delete, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncConnection

from conveyor.names import RunName
from conveyor.v1.run_pb2 import Run, RunLogEntry
from conveyor_config.adapters.storage.base import SqlBase, safe_text, set_us, to_us
from conveyor_config.adapters.storage.schema import outbox, pipelines, run_event_ids, run_logs, run_tombstones, runs
from conveyor_config.domain import runs as run_rules
from conveyor_config.domain.outcomes import DeleteOutcome, EventOutcome, StartOutcome
from conveyor_config.domain.runs import LOG_PHASE_QUEUED, is_terminal, log_phase, new_run_from_event
from conveyor_config.usecases.ports import LogPosition, NewOutboxMessage, RequestRecord, RunProgress


def _run_from_row(row: Any) -> Run:
    run = Run(
        name=f"pipelines/{row.pipeline_id}/runs/{row.run_id}",
        trigger=row.trigger,
        image=row.image,
        tag=row.tag,
        digest=row.digest,
        previous_image=row.previous_image,
        state=row.state,
        error=row.error,
        event_id=row.event_id,
    )
    set_us(run.create_time, row.create_time_us)
    set_us(run.start_time, row.start_time_us)
    set_us(run.end_time, row.end_time_us)
    return run


def _run_values(run: Run) -> dict[str, Any]:
    return {
        "trigger": run.trigger,
        "state": run.state,
        "image": safe_text(run.image),
        "tag": safe_text(run.tag),
        "digest": safe_text(run.digest),
        "previous_image": safe_text(run.previous_image),
        "error": safe_text(run.error),
        "event_id": safe_text(run.event_id),
        "create_time_us": to_us(run.create_time),
        "start_time_us": to_us(run.start_time) if run.HasField("start_time") else None,
        "end_time_us": to_us(run.end_time) if run.HasField("end_time") else None,
    }


def _log_rows(
    name: RunName, first_seq: int, entries: Sequence[RunLogEntry], phase: int, event_time_us: int
) -> list[dict[str, Any]]:
    """One event's entries: they share its place in the log (phase, time) and keep their order."""
    return [
        {
            "pipeline_id": name.pipeline,
            "run_id": name.run,
            "seq": first_seq + offset,
            "time_us": to_us(entry.time),
            "level": entry.level,
            "step": safe_text(entry.step),
            "message": safe_text(entry.message),
            "phase": phase,
            "event_time_us": event_time_us,
        }
        for offset, entry in enumerate(entries)
    ]


def _entry_from_row(row: Any) -> RunLogEntry:
    entry = RunLogEntry(level=row.level, step=row.step, message=row.message)
    entry.time.FromMicroseconds(row.time_us)
    return entry


_RunRow = collections.namedtuple(
    "_RunRow",
    "pipeline_id run_id trigger state image tag digest previous_image error event_id "
    "create_time_us start_time_us end_time_us",
)
_GET_RUN = (
    "SELECT pipeline_id, run_id, trigger, state, image, tag, digest, previous_image, error, event_id, "
    "create_time_us, start_time_us, end_time_us FROM runs WHERE pipeline_id = {0} AND run_id = {1}"
)
_RUN_PROGRESS = "SELECT state, log_count FROM runs WHERE pipeline_id = {0} AND run_id = {1}"


class SqlRuns(SqlBase):
    async def start_run(
        self,
        run: Run,
        entries: Sequence[RunLogEntry],
        message: NewOutboxMessage,
        *,
        expected_etag: str,
        request: RequestRecord | None,
    ) -> tuple[StartOutcome, bytes | None]:
        """Store a QUEUED run, its first log entries and its DeployRequested outbox row at once."""
        name = RunName(*run.name.removeprefix("pipelines/").split("/runs/"))
        now_us = to_us(run.create_time)
        async with self._writing() as conn:
            if request is not None:
                earlier = await self._claim_request(conn, request)
                if earlier is not None:
                    await conn.rollback()
                    return StartOutcome.REPLAYED, earlier
            row = (
                await conn.execute(
                    select(pipelines.c.etag, pipelines.c.disabled)
                    .where(pipelines.c.id == name.pipeline)
                    .with_for_update(key_share=True)
                )
            ).first()
            outcome = None
            if row is None:
                outcome = StartOutcome.NOT_FOUND
            elif row.disabled:
                outcome = StartOutcome.DISABLED
            elif row.etag != expected_etag:
                outcome = StartOutcome.CHANGED
            if outcome is not None:
                await conn.rollback()
                return outcome, None
            await conn.execute(
                runs.insert().values(
                    pipeline_id=name.pipeline,
                    run_id=name.run,
                    update_time_us=now_us,
                    log_count=len(entries),
                    **_run_values(run),
                )
            )
            if entries:
                await conn.execute(run_logs.insert(), _log_rows(name, 0, entries, LOG_PHASE_QUEUED, now_us))
            await conn.execute(
                self._insert(outbox)
                .values(
                    msg_id=message.msg_id,
                    subject=message.subject,
                    payload=message.payload,
                    create_time_us=now_us,
                    attempts=0,
                    next_attempt_us=now_us,
                    last_error="",
                )
                .on_conflict_do_nothing()
            )
        return StartOutcome.STARTED, None

    async def get_run(self, name: RunName) -> Run | None:
        rows = await self._fetch(_GET_RUN, name.pipeline, name.run)
        return _run_from_row(_RunRow(*rows[0])) if rows else None

    async def run_progress(self, name: RunName) -> RunProgress | None:
        rows = await self._fetch(_RUN_PROGRESS, name.pipeline, name.run)
        return RunProgress(rows[0][0], rows[0][1]) if rows else None

    async def list_runs(
        self,
        pipeline_id: str | None,
        states: frozenset[int],
        after: tuple[int, str, str] | None,
        limit: int,
    ) -> list[Run]:
        """Newest first: by create time, then pipeline and run id (all descending)."""
        query = select(runs)
        if pipeline_id is not None:
            query = query.where(runs.c.pipeline_id == pipeline_id)
        if states:
            query = query.where(runs.c.state.in_(sorted(states)))
        if after is not None:
            created, after_pipeline, after_run = after
            if pipeline_id is not None:
                query = query.where(tuple_(runs.c.create_time_us, runs.c.run_id) < tuple_(created, after_run))
            else:
                query = query.where(
                    tuple_(runs.c.create_time_us, runs.c.pipeline_id, runs.c.run_id)
                    < tuple_(created, after_pipeline, after_run)
                )
        query = query.order_by(runs.c.create_time_us.desc(), runs.c.pipeline_id.desc(), runs.c.run_id.desc())
        async with self._reading() as conn:
            rows = (await conn.execute(query.limit(limit))).all()
        return [_run_from_row(row) for row in rows]

    async def pipeline_exists(self, pipeline_id: str) -> bool:
        async with self._reading() as conn:
            return (await conn.scalar(select(pipelines.c.id).where(pipelines.c.id == pipeline_id))) is not None

    async def delete_run(self, name: RunName, now: timestamp_pb2.Timestamp) -> DeleteOutcome:
        """Delete a finished run with its logs, leaving a tombstone so its late RunEvents do not recreate it."""
        async with self._writing() as conn:
            state = await conn.scalar(
                select(runs.c.state)
                .where(runs.c.pipeline_id == name.pipeline, runs.c.run_id == name.run)
                .with_for_update()
            )
            if state is None:
                return DeleteOutcome.NOT_FOUND
            if not is_terminal(state):
                return DeleteOutcome.NOT_TERMINAL
            await conn.execute(delete(runs).where(runs.c.pipeline_id == name.pipeline, runs.c.run_id == name.run))
            await conn.execute(
                self._insert(run_tombstones)
                .values(pipeline_id=name.pipeline, run_id=name.run, delete_time_us=to_us(now))
                .on_conflict_do_nothing()
            )
        return DeleteOutcome.DELETED

    async def purge_tombstones(self, before_us: int) -> int:
        async with self._writing() as conn:
            result = await conn.execute(delete(run_tombstones).where(run_tombstones.c.delete_time_us < before_us))
            return int(result.rowcount or 0)

    async def read_run_logs(
        self, name: RunName, seqs: range, after: LogPosition | None = None, *, limit: int
    ) -> list[tuple[LogPosition, RunLogEntry]]:
        """The entries that arrived as `seqs`, in log order, from just after `after`."""
        order = (run_logs.c.phase, run_logs.c.event_time_us, run_logs.c.seq)
        query = select(run_logs).where(
            run_logs.c.pipeline_id == name.pipeline,
            run_logs.c.run_id == name.run,
            run_logs.c.seq >= seqs.start,
            run_logs.c.seq < seqs.stop,
        )
        if after is not None:
            query = query.where(tuple_(*order) > tuple_(*after))
        async with self._reading() as conn:
            rows = (await conn.execute(query.order_by(*order).limit(limit))).all()
        return [(LogPosition(row.phase, row.event_time_us, row.seq), _entry_from_row(row)) for row in rows]

    async def apply_run_event(
        self, name: RunName, event_id: str, event: Any, now: timestamp_pb2.Timestamp
    ) -> EventOutcome:
        """Persist one RunEvent: create the run if needed (unless it was deleted), dedupe by event id, move
        state forward, add its log entries at their place."""
        async with self._writing() as conn:
            outcome = await self._apply(conn, name, event_id, event, now_us=to_us(now), now=now)
            if outcome is not EventOutcome.STORED:
                await conn.rollback()
        return outcome

    async def apply_run_events(
        self, events: Sequence[tuple[RunName, str, Any]], now: timestamp_pb2.Timestamp
    ) -> list[EventOutcome]:
        """Persist a batch of RunEvents in one transaction, each as `apply_run_event` would in turn.

        Applied grouped by run (stable, so each run's events keep their order): every transaction takes its
        row locks in the same order. Any failure rolls back the whole batch."""
        now_us = to_us(now)
        order = sorted(range(len(events)), key=lambda index: (events[index][0].pipeline, events[index][0].run))
        outcomes: list[EventOutcome] = [EventOutcome.STORED] * len(events)
        async with self._writing() as conn:
            for index in order:
                name, event_id, event = events[index]
                # Nothing is written for an event that is not stored, so the others need no savepoint.
                outcomes[index] = await self._apply(conn, name, event_id, event, now_us=now_us, now=now)
        return outcomes

    async def _apply(
        self,
        conn: AsyncConnection,
        name: RunName,
        event_id: str,
        event: Any,
        *,
        now_us: int,
        now: timestamp_pb2.Timestamp,
    ) -> EventOutcome:
        """One RunEvent inside `conn`'s transaction; writes nothing unless it returns STORED."""
        key = (runs.c.pipeline_id == name.pipeline, runs.c.run_id == name.run)
        pipeline_known = await conn.scalar(
            select(pipelines.c.id).where(pipelines.c.id == name.pipeline).with_for_update(key_share=True)
        )
        if pipeline_known is None:
            return EventOutcome.NO_PIPELINE
        row = (await conn.execute(select(runs).where(*key).with_for_update())).first()
        if row is None:
            deleted = await conn.scalar(
                select(run_tombstones.c.delete_time_us).where(
                    run_tombstones.c.pipeline_id == name.pipeline, run_tombstones.c.run_id == name.run
                )
            )
            if deleted is not None:
                return EventOutcome.DELETED
            # Before creating the run, so a known event never leaves a run behind in a batch.
            if await conn.scalar(select(run_event_ids.c.event_id).where(run_event_ids.c.event_id == event_id)):
                return EventOutcome.DUPLICATE
            fresh = new_run_from_event(str(name), event, now)
            await conn.execute(
                self._insert(runs)
                .values(
                    pipeline_id=name.pipeline,
                    run_id=name.run,
                    update_time_us=now_us,
                    log_count=0,
                    **_run_values(fresh),
                )
                .on_conflict_do_nothing()
            )
            row = (await conn.execute(select(runs).where(*key).with_for_update())).one()
        first_time = await conn.execute(
            self._insert(run_event_ids)
            .values(event_id=event_id, pipeline_id=name.pipeline, run_id=name.run)
            .on_conflict_do_nothing()
        )
        if first_time.rowcount != 1:
            return EventOutcome.DUPLICATE
        run = _run_from_row(row)
        run_rules.apply_run_event(run, event, now)
        phase = log_phase(event.state, ended_run=is_terminal(run.state) and not is_terminal(row.state))
        entries = list(event.log_entries)
        values = _run_values(run)
        values.update(update_time_us=now_us, log_count=row.log_count + len(entries))
        await conn.execute(update(runs).where(*key).values(**values))
        if entries:
            event_time = event.time if event.HasField("time") else now
            for entry in entries:
                if not entry.HasField("time"):
                    entry.time.CopyFrom(event_time)
            await conn.execute(run_logs.insert(), _log_rows(name, row.log_count, entries, phase, to_us(event_time)))
        return EventOutcome.STORED
