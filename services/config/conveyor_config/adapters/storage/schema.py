"""The relational schema (SQLAlchemy Core). Alembic migrations create it; a test checks they agree.

Times are integer microseconds since the epoch (exact on SQLite and PostgreSQL alike).
A pipeline's full message is stored as protobuf bytes (`body`), so Unicode text round-trips
byte for byte; the columns beside it exist for filtering, ordering and integrity.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    SmallInteger,
    String,
    Table,
    Text,
)

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# SQLite only auto-increments an INTEGER PRIMARY KEY.
AutoId = BigInteger().with_variant(Integer(), "sqlite")

pipelines = Table(
    "pipelines",
    metadata,
    Column("id", String(63), nullable=False),
    Column("registry", String(255), nullable=False),
    Column("repository", String(255), nullable=False),
    Column("cluster", String(253), nullable=False),
    Column("namespace", String(63), nullable=False),
    # Kubernetes names workloads with up to 253 characters (0002). SQLite ignores declared lengths, so its
    # tables keep 0001's VARCHAR(63): rebuilding `pipelines` there would cascade-delete every run.
    Column("workload", String(253).with_variant(String(63), "sqlite"), nullable=False),
    Column("disabled", Boolean(create_constraint=False), nullable=False),
    Column("body", LargeBinary, nullable=False),
    Column("etag", String(64), nullable=False),
    Column("create_time_us", BigInteger, nullable=False),
    Column("update_time_us", BigInteger, nullable=False),
    PrimaryKeyConstraint("id"),
    # Keyset pagination walks `id`: every filter column leads an index ending in `id`, so a
    # filtered page is an index range read in order, never a sort of every match.
    Index(None, "registry", "id"),
    Index(None, "registry", "repository", "id"),
    Index(None, "repository", "id"),
    Index(None, "cluster", "id"),
    Index(None, "namespace", "id"),
    Index(None, "workload", "id"),
)

runs = Table(
    "runs",
    metadata,
    Column("pipeline_id", String(63), ForeignKey("pipelines.id", ondelete="CASCADE"), nullable=False),
    Column("run_id", String(63), nullable=False),
    Column("trigger", SmallInteger, nullable=False),
    Column("state", SmallInteger, nullable=False),
    Column("image", Text, nullable=False),
    Column("tag", Text, nullable=False),
    Column("digest", Text, nullable=False),
    Column("previous_image", Text, nullable=False),
    Column("error", Text, nullable=False),
    Column("event_id", Text, nullable=False),
    Column("create_time_us", BigInteger, nullable=False),
    Column("start_time_us", BigInteger, nullable=True),
    Column("end_time_us", BigInteger, nullable=True),
    Column("update_time_us", BigInteger, nullable=False),
    # Next log sequence number; appends lock the run row, so sequences have no gaps.
    Column("log_count", Integer, nullable=False),
    PrimaryKeyConstraint("pipeline_id", "run_id"),
    # Newest first, per pipeline and across pipelines (`pipelines/-`).
    Index(None, "pipeline_id", "create_time_us", "run_id"),
    Index(None, "create_time_us", "pipeline_id", "run_id"),
    Index(None, "state", "create_time_us", "pipeline_id", "run_id"),
)

run_logs = Table(
    "run_logs",
    metadata,
    Column("pipeline_id", String(63), nullable=False),
    Column("run_id", String(63), nullable=False),
    # Arrival order (gapless per run): what a TailRunLogs follower has already been sent.
    Column("seq", Integer, nullable=False),
    Column("time_us", BigInteger, nullable=False),
    Column("level", SmallInteger, nullable=False),
    Column("step", Text, nullable=False),
    Column("message", Text, nullable=False),
    # The log's order: (phase, event_time_us, seq), see domain.runs.log_phase (0003). The few entries of
    # one run are sorted after the primary key found them; no index of their own.
    Column("phase", SmallInteger, nullable=False),
    Column("event_time_us", BigInteger, nullable=False),
    PrimaryKeyConstraint("pipeline_id", "run_id", "seq"),
    ForeignKeyConstraint(
        ["pipeline_id", "run_id"], ["runs.pipeline_id", "runs.run_id"], ondelete="CASCADE", name="fk_run_logs_runs"
    ),
)

# RunEvent ids already applied: the primary key makes two replicas (or a redelivery)
# unable to apply the same event twice.
run_event_ids = Table(
    "run_event_ids",
    metadata,
    Column("event_id", String(512), nullable=False),
    Column("pipeline_id", String(63), nullable=False),
    Column("run_id", String(63), nullable=False),
    PrimaryKeyConstraint("event_id"),
    ForeignKeyConstraint(
        ["pipeline_id", "run_id"],
        ["runs.pipeline_id", "runs.run_id"],
        ondelete="CASCADE",
        name="fk_run_event_ids_runs",
    ),
    Index(None, "pipeline_id", "run_id"),
)

# Deleted runs (DeleteRun, or with their pipeline), so their RunEvents redelivered later do not
# recreate them. Kept for the RunEvents stream's max age, after which no such event is left (0003).
run_tombstones = Table(
    "run_tombstones",
    metadata,
    Column("pipeline_id", String(63), nullable=False),
    Column("run_id", String(63), nullable=False),
    Column("delete_time_us", BigInteger, nullable=False),
    PrimaryKeyConstraint("pipeline_id", "run_id"),
    Index(None, "delete_time_us"),
)

# Idempotency keys (AIP-155): the response of the first call, returned to retries.
request_ids = Table(
    "request_ids",
    metadata,
    Column("scope", String(32), nullable=False),
    Column("request_id", String(128), nullable=False),
    Column("response", LargeBinary, nullable=False),
    Column("create_time_us", BigInteger, nullable=False),
    PrimaryKeyConstraint("scope", "request_id"),
    Index(None, "create_time_us"),
)

# Transactional outbox: bus messages written with the change that caused them.
outbox = Table(
    "outbox",
    metadata,
    Column("id", AutoId, primary_key=True, autoincrement=True),
    Column("msg_id", String(255), nullable=False, unique=True),
    Column("subject", String(255), nullable=False),
    Column("payload", LargeBinary, nullable=False),
    Column("create_time_us", BigInteger, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_us", BigInteger, nullable=False),
    Column("last_error", Text, nullable=False),
    Index(None, "next_attempt_us"),
)
