"""Pipelines in SQL: the body is the protobuf message; the columns beside it serve filters and keys."""

from __future__ import annotations

import collections
from typing import Any

from google.protobuf import timestamp_pb2
from sqlalchemy import ColumnElement, delete, func, literal, select, update

from conveyor.v1.pipeline_pb2 import Pipeline
from conveyor_config.adapters.storage.base import SqlBase, set_us, to_us
from conveyor_config.adapters.storage.schema import pipelines, run_tombstones, runs
from conveyor_config.domain.outcomes import CreateOutcome, DeleteOutcome
from conveyor_config.domain.pipelines import clear_output_only
from conveyor_config.domain.queries import PipelineFilter
from conveyor_config.domain.runs import ACTIVE_STATES
from conveyor_config.usecases.ports import RequestRecord

_PIPELINE_COLUMNS = (
    pipelines.c.id,
    pipelines.c.body,
    pipelines.c.etag,
    pipelines.c.create_time_us,
    pipelines.c.update_time_us,
)


def _pipeline_from_row(row: Any) -> Pipeline:
    pipeline: Pipeline = Pipeline.FromString(row.body)
    pipeline.name = f"pipelines/{row.id}"
    set_us(pipeline.create_time, row.create_time_us)
    set_us(pipeline.update_time, row.update_time_us)
    pipeline.etag = row.etag
    return pipeline


def pipeline_values(pipeline: Pipeline) -> dict[str, Any]:
    """The row CreatePipeline stores (bench/seed.py bulk-loads with it too)."""
    body = Pipeline()
    body.CopyFrom(pipeline)
    clear_output_only(body)
    return {
        "registry": pipeline.source.registry,
        "repository": pipeline.source.repository,
        "cluster": pipeline.target.cluster,
        "namespace": pipeline.target.namespace,
        "workload": pipeline.target.workload,
        "disabled": pipeline.disabled,
        "body": body.SerializeToString(deterministic=True),
        "etag": pipeline.etag,
        "create_time_us": to_us(pipeline.create_time),
        "update_time_us": to_us(pipeline.update_time),
    }


def _pipeline_conditions(where: PipelineFilter) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    for attribute in ("registry", "repository", "cluster", "namespace", "workload", "disabled"):
        value = getattr(where, attribute)
        if value is not None:
            conditions.append(pipelines.c[attribute] == value)
    return conditions


_PipelineRow = collections.namedtuple("_PipelineRow", "id body etag create_time_us update_time_us")
_GET_PIPELINE = "SELECT id, body, etag, create_time_us, update_time_us FROM pipelines WHERE id = {0}"


class SqlPipelines(SqlBase):
    async def get_pipeline(self, pipeline_id: str) -> Pipeline | None:
        rows = await self._fetch(_GET_PIPELINE, pipeline_id)
        return _pipeline_from_row(_PipelineRow(*rows[0])) if rows else None

    async def insert_pipeline(
        self, pipeline: Pipeline, request: RequestRecord | None
    ) -> tuple[CreateOutcome, bytes | None]:
        """Insert a new pipeline (its name carries the id); with a request key, exactly once."""
        pipeline_id = pipeline.name.removeprefix("pipelines/")
        async with self._writing() as conn:
            if request is not None:
                earlier = await self._claim_request(conn, request)
                if earlier is not None:
                    await conn.rollback()
                    return CreateOutcome.REPLAYED, earlier
            inserted = await conn.execute(
                self._insert(pipelines).values(id=pipeline_id, **pipeline_values(pipeline)).on_conflict_do_nothing()
            )
            if inserted.rowcount != 1:
                await conn.rollback()
                return CreateOutcome.ALREADY_EXISTS, None
        return CreateOutcome.CREATED, None

    async def list_pipelines(self, where: PipelineFilter, after_id: str | None, limit: int) -> list[Pipeline]:
        query = select(*_PIPELINE_COLUMNS).where(*_pipeline_conditions(where))
        if after_id is not None:
            query = query.where(pipelines.c.id > after_id)
        query = query.order_by(pipelines.c.id).limit(limit)
        async with self._reading() as conn:
            rows = (await conn.execute(query)).all()
        return [_pipeline_from_row(row) for row in rows]

    async def count_pipelines(self, where: PipelineFilter) -> int:
        query = select(func.count()).select_from(pipelines).where(*_pipeline_conditions(where))
        async with self._reading() as conn:
            return int(await conn.scalar(query) or 0)

    async def replace_pipeline(self, pipeline: Pipeline, expected_etag: str) -> bool:
        """Compare-and-set: write `pipeline` only while the stored etag is still `expected_etag`."""
        pipeline_id = pipeline.name.removeprefix("pipelines/")
        values = pipeline_values(pipeline)
        del values["create_time_us"]
        async with self._writing() as conn:
            result = await conn.execute(
                update(pipelines)
                .where(pipelines.c.id == pipeline_id, pipelines.c.etag == expected_etag)
                .values(**values)
            )
            return result.rowcount == 1

    async def delete_pipeline(
        self, pipeline_id: str, etag: str, now: timestamp_pb2.Timestamp
    ) -> tuple[DeleteOutcome, list[str]]:
        """Delete a pipeline with its finished runs and their logs; never one with an active run.

        Its runs leave tombstones: a pipeline created again with the same id does not get them back
        from their RunEvents redelivered later."""
        async with self._writing() as conn:
            current = await conn.scalar(select(pipelines.c.etag).where(pipelines.c.id == pipeline_id).with_for_update())
            if current is None:
                return DeleteOutcome.NOT_FOUND, []
            if etag and etag != current:
                return DeleteOutcome.STALE_ETAG, []
            active = (
                await conn.scalars(
                    select(runs.c.run_id)
                    .where(runs.c.pipeline_id == pipeline_id, runs.c.state.in_(ACTIVE_STATES))
                    .order_by(runs.c.create_time_us)
                    .limit(5)
                )
            ).all()
            if active:
                return DeleteOutcome.ACTIVE_RUNS, [f"pipelines/{pipeline_id}/runs/{run}" for run in active]
            deleted_runs = select(runs.c.pipeline_id, runs.c.run_id, literal(to_us(now))).where(
                runs.c.pipeline_id == pipeline_id
            )
            await conn.execute(
                self._insert(run_tombstones)
                .from_select(["pipeline_id", "run_id", "delete_time_us"], deleted_runs)
                .on_conflict_do_nothing()
            )
            # Foreign keys cascade to runs, their logs and their event ids.
            await conn.execute(delete(pipelines).where(pipelines.c.id == pipeline_id))
        return DeleteOutcome.DELETED, []
