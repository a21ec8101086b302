"""SQL storage for pipelines, runs, run logs, tombstones, idempotency keys and the outbox (SQLAlchemy 2 asyncio).

SQLite (aiosqlite) is the embedded default: WAL journal, a busy timeout, foreign keys on,
and writes serialised through one connection that starts `BEGIN IMMEDIATE` (so a
read-then-write transaction never fails to upgrade its lock). PostgreSQL (asyncpg) is used
for anything bigger; there, row locks (`FOR UPDATE` / `FOR KEY SHARE`) and unique
constraints keep several replicas correct.

- `engine`: the engines for one database (and the raw point-read connections).
- `schema` + `migrations`: the tables, and the Alembic migrations that create them.
- `base`: connections, point reads and idempotency keys shared by the parts below.
- `pipelines`, `runs`, `outbox`: the SQL of each, combined into `SqlStore`.
"""

from __future__ import annotations

from conveyor_config.adapters.storage.outbox import SqlOutbox
from conveyor_config.adapters.storage.pipelines import SqlPipelines
from conveyor_config.adapters.storage.runs import SqlRuns


class SqlStore(SqlPipelines, SqlRuns, SqlOutbox):
    """PipelineRepository, RunRepository, OutboxStore and RequestStore over one database; one per process."""
