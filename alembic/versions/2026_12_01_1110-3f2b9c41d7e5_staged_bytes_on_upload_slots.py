"""staged bytes on upload slots

Revision ID: 3f2b9c41d7e5
Revises: 3f7a9e2d4b61
Create Date: 2026-12-01 10:50:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "3f2b9c41d7e5"
down_revision = "3f7a9e2d4b61"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("upload_slots", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("staged_bytes", sa.BigInteger(), server_default="0", nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("upload_slots", schema=None) as batch_op:
        batch_op.drop_column("staged_bytes")
