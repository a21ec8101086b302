"""Initial schema: pipelines, runs, run logs, applied event ids, request ids, outbox.

Revision ID: 0001
Revises:
Create Date: 2025-01-01 00:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None

AutoId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "pipelines",
        sa.Column("id", sa.String(63), nullable=False),
        sa.Column("registry", sa.String(255), nullable=False),
        sa.Column("repository", sa.String(255), nullable=False),
        sa.Column("cluster", sa.String(253), nullable=False),
        sa.Column("namespace", sa.String(63), nullable=False),
        sa.Column("workload", sa.String(63), nullable=False),
        sa.Column("disabled", sa.Boolean(create_constraint=False), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("etag", sa.String(64), nullable=False),
        sa.Column("create_time_us", sa.BigInteger(), nullable=False),
        sa.Column("update_time_us", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_pipelines"),
    )
    op.create_index("ix_pipelines_registry_id", "pipelines", ["registry", "id"])
    op.create_index("ix_pipelines_registry_repository_id", "pipelines", ["registry", "repository", "id"])
    op.create_index("ix_pipelines_repository_id", "pipelines", ["repository", "id"])
    op.create_index("ix_pipelines_cluster_id", "pipelines", ["cluster", "id"])
    op.create_index("ix_pipelines_namespace_id", "pipelines", ["namespace", "id"])
    op.create_index("ix_pipelines_workload_id", "pipelines", ["workload", "id"])

    op.create_table(
        "runs",
        sa.Column("pipeline_id", sa.String(63), nullable=False),
        sa.Column("run_id", sa.String(63), nullable=False),
        sa.Column("trigger", sa.SmallInteger(), nullable=False),
        sa.Column("state", sa.SmallInteger(), nullable=False),
        sa.Column("image", sa.Text(), nullable=False),
        sa.Column("tag", sa.Text(), nullable=False),
        sa.Column("digest", sa.Text(), nullable=False),
        sa.Column("previous_image", sa.Text(), nullable=False),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("event_id", sa.Text(), nullable=False),
        sa.Column("create_time_us", sa.BigInteger(), nullable=False),
        sa.Column("start_time_us", sa.BigInteger(), nullable=True),
        sa.Column("end_time_us", sa.BigInteger(), nullable=True),
        sa.Column("update_time_us", sa.BigInteger(), nullable=False),
        sa.Column("log_count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("pipeline_id", "run_id", name="pk_runs"),
        sa.ForeignKeyConstraint(
            ["pipeline_id"], ["pipelines.id"], ondelete="CASCADE", name="fk_runs_pipeline_id_pipelines"
        ),
    )
    op.create_index("ix_runs_pipeline_id_create_time_us_run_id", "runs", ["pipeline_id", "create_time_us", "run_id"])
    op.create_index("ix_runs_create_time_us_pipeline_id_run_id", "runs", ["create_time_us", "pipeline_id", "run_id"])
    op.create_index(
        "ix_runs_state_create_time_us_pipeline_id_run_id", "runs", ["state", "create_time_us", "pipeline_id", "run_id"]
    )

    op.create_table(
        "run_logs",
        sa.Column("pipeline_id", sa.String(63), nullable=False),
        sa.Column("run_id", sa.String(63), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("time_us", sa.BigInteger(), nullable=False),
        sa.Column("level", sa.SmallInteger(), nullable=False),
        sa.Column("step", sa.Text(), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("pipeline_id", "run_id", "seq", name="pk_run_logs"),
        sa.ForeignKeyConstraint(
            ["pipeline_id", "run_id"],
            ["runs.pipeline_id", "runs.run_id"],
            ondelete="CASCADE",
            name="fk_run_logs_runs",
        ),
    )

    op.create_table(
        "run_event_ids",
        sa.Column("event_id", sa.String(512), nullable=False),
        sa.Column("pipeline_id", sa.String(63), nullable=False),
        sa.Column("run_id", sa.String(63), nullable=False),
        sa.PrimaryKeyConstraint("event_id", name="pk_run_event_ids"),
        sa.ForeignKeyConstraint(
            ["pipeline_id", "run_id"],
            ["runs.pipeline_id", "runs.run_id"],
            ondelete="CASCADE",
            name="fk_run_event_ids_runs",
        ),
    )
    op.create_index("ix_run_event_ids_pipeline_id_run_id", "run_event_ids", ["pipeline_id", "run_id"])

    op.create_table(
        "request_ids",
        sa.Column("scope", sa.String(32), nullable=False),
        sa.Column("request_id", sa.String(128), nullable=False),
        sa.Column("response", sa.LargeBinary(), nullable=False),
        sa.Column("create_time_us", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("scope", "request_id", name="pk_request_ids"),
    )
    op.create_index("ix_request_ids_create_time_us", "request_ids", ["create_time_us"])

    op.create_table(
        "outbox",
        sa.Column("id", AutoId, autoincrement=True, nullable=False),
        sa.Column("msg_id", sa.String(255), nullable=False),
        sa.Column("subject", sa.String(255), nullable=False),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.Column("create_time_us", sa.BigInteger(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_us", sa.BigInteger(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_outbox"),
        sa.UniqueConstraint("msg_id", name="uq_outbox_msg_id"),
    )
    op.create_index("ix_outbox_next_attempt_us", "outbox", ["next_attempt_us"])


def downgrade() -> None:
    for table in ("outbox", "request_ids", "run_event_ids", "run_logs", "runs", "pipelines"):
        op.drop_table(table)
