"""file options and duplicates: sha256, attributes, chunking strategy, claims

Revision ID: b83f1d2e6a47
Revises: 5e2d8c41b7a3
Create Date: 2026-12-06 09:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import vectorgate.db

revision = "b83f1d2e6a47"
down_revision = "5e2d8c41b7a3"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("vector_store_files") as batch_op:
        batch_op.add_column(sa.Column("sha256", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("attributes", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("chunking_strategy", sa.JSON(), nullable=True))
        batch_op.add_column(
            sa.Column("replaces_older", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch_op.create_index(
            "ix_vector_store_files_sha256",
            ["organization_id", "vector_store_id", "sha256"],
            unique=False,
        )
    op.create_table(
        "duplicate_claims",
        sa.Column("organization_id", sa.String(length=32), nullable=False),
        sa.Column("vector_store_id", sa.String(length=128), nullable=False),
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("slot_id", sa.String(length=32), nullable=False),
        sa.Column("created_at", vectorgate.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_duplicate_claims_organization_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "organization_id", "vector_store_id", "key", name=op.f("pk_duplicate_claims")
        ),
    )


def downgrade() -> None:
    op.drop_table("duplicate_claims")
    with op.batch_alter_table("vector_store_files") as batch_op:
        batch_op.drop_index("ix_vector_store_files_sha256")
        batch_op.drop_column("replaces_older")
        batch_op.drop_column("chunking_strategy")
        batch_op.drop_column("attributes")
        batch_op.drop_column("sha256")
