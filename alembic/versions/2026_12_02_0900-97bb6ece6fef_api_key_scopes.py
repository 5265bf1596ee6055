"""api key scopes, stores and expiry

Revision ID: 97bb6ece6fef
Revises: 3f2b9c41d7e5
Create Date: 2026-12-02 09:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import vectorgate.db

revision = "97bb6ece6fef"
down_revision = "3f2b9c41d7e5"
branch_labels = None
depends_on = None

# Keys made before scopes existed could do everything: they keep that (SPEC 9.1).
ALL_SCOPES = ["upload", "read", "manage"]


def upgrade() -> None:
    with op.batch_alter_table("api_keys") as batch_op:
        batch_op.add_column(sa.Column("scopes", sa.JSON(), nullable=True))
        batch_op.add_column(
            sa.Column("vector_store_ids", sa.JSON(none_as_null=True), nullable=True)
        )
        batch_op.add_column(
            sa.Column("expires_at", vectorgate.db.UTCDateTime(timezone=True), nullable=True)
        )
    api_keys = sa.table("api_keys", sa.column("scopes", sa.JSON()))
    op.execute(api_keys.update().values(scopes=ALL_SCOPES))
    with op.batch_alter_table("api_keys") as batch_op:
        batch_op.alter_column("scopes", existing_type=sa.JSON(), nullable=False)


def downgrade() -> None:
    with op.batch_alter_table("api_keys") as batch_op:
        batch_op.drop_column("expires_at")
        batch_op.drop_column("vector_store_ids")
        batch_op.drop_column("scopes")
