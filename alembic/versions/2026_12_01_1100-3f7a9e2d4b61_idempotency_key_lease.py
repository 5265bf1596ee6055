"""idempotency key lease

Revision ID: 3f7a9e2d4b61
Revises: 8d4f2a6b1c90
Create Date: 2026-12-01 11:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import vectorgate.db

revision = "3f7a9e2d4b61"
down_revision = "8d4f2a6b1c90"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("idempotency_keys") as batch_op:
        batch_op.add_column(
            sa.Column("lease_expires_at", vectorgate.db.UTCDateTime(timezone=True), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("idempotency_keys") as batch_op:
        batch_op.drop_column("lease_expires_at")
