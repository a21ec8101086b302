"""Workload names as long as Kubernetes allows: `pipelines.workload` VARCHAR(63) -> VARCHAR(253).

A Deployment, StatefulSet or DaemonSet is named by a DNS-1123 subdomain (up to 253 characters), not a
label. PostgreSQL widens the column in place (no table rewrite). SQLite does not enforce declared lengths
and is left as it is: a rebuild of `pipelines` there would cascade-delete every run.

Revision ID: 0002
Revises: 0001
Create Date: 2025-12-01 00:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        op.alter_column(
            "pipelines", "workload", type_=sa.String(253), existing_type=sa.String(63), existing_nullable=False
        )


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        op.alter_column(
            "pipelines", "workload", type_=sa.String(63), existing_type=sa.String(253), existing_nullable=False
        )
