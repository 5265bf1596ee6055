"""journal delete retries

Revision ID: 8d4f2a6b1c90
Revises: 5b1e0c3a9d27
Create Date: 2026-12-01 10:50:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import vectorgate.db

revision = "8d4f2a6b1c90"
down_revision = "5b1e0c3a9d27"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("upstream_uploads") as batch_op:
        batch_op.add_column(
            sa.Column("delete_attempts", sa.Integer(), nullable=False, server_default="0")
        )
        batch_op.add_column(
            sa.Column("next_attempt_at", vectorgate.db.UTCDateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(sa.Column("last_error", sa.String(length=300), nullable=True))
    with op.batch_alter_table("upstream_uploads") as batch_op:
        batch_op.alter_column("delete_attempts", server_default=None)


def downgrade() -> None:
    with op.batch_alter_table("upstream_uploads") as batch_op:
        batch_op.drop_column("last_error")
        batch_op.drop_column("next_attempt_at")
        batch_op.drop_column("delete_attempts")
