"""credential base url

Revision ID: 5b1e0c3a9d27
Revises: aac97f6130ab
Create Date: 2026-12-01 10:40:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "5b1e0c3a9d27"
down_revision = "aac97f6130ab"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("credentials") as batch_op:
        batch_op.add_column(sa.Column("base_url", sa.String(length=2048), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("credentials") as batch_op:
        batch_op.drop_column("base_url")
