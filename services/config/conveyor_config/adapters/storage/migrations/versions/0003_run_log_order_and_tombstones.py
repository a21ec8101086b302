"""Run logs in event order, and tombstones of deleted runs.

`run_logs.phase` and `run_logs.event_time_us`: a log is read in (phase, event time, seq) order, no
longer in arrival order (`seq`). Existing entries get phase 1 (progress) and their own time, which
was their event's unless the publisher set one: one pass over `run_logs`.
`run_tombstones`: runs deleted, so their RunEvents redelivered later do not recreate them.
The server defaults only fill the existing rows; the code always writes both columns.

Revision ID: 0003
Revises: 0002
Create Date: 2025-12-01 00:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.add_column("run_logs", sa.Column("phase", sa.SmallInteger(), nullable=False, server_default="1"))
    op.add_column("run_logs", sa.Column("event_time_us", sa.BigInteger(), nullable=False, server_default="0"))
    op.execute("UPDATE run_logs SET event_time_us = time_us")
    op.create_table(
        "run_tombstones",
        sa.Column("pipeline_id", sa.String(63), nullable=False),
        sa.Column("run_id", sa.String(63), nullable=False),
        sa.Column("delete_time_us", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("pipeline_id", "run_id", name="pk_run_tombstones"),
    )
    op.create_index("ix_run_tombstones_delete_time_us", "run_tombstones", ["delete_time_us"])


def downgrade() -> None:
    op.drop_table("run_tombstones")
    with op.batch_alter_table("run_logs") as batch:
        batch.drop_column("event_time_us")
        batch.drop_column("phase")
