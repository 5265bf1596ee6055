"""upload tokens

Revision ID: c4e1a7b2d913
Revises: 0fc7765d3d0f
Create Date: 2026-12-03 09:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import vectorgate.db

revision = "c4e1a7b2d913"
down_revision = "0fc7765d3d0f"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "upload_tokens",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("organization_id", sa.String(length=32), nullable=False),
        sa.Column("api_key_id", sa.String(length=32), nullable=False),
        sa.Column("vector_store_id", sa.String(length=128), nullable=False),
        sa.Column("credential_id", sa.String(length=36), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("max_files", sa.Integer(), nullable=False),
        sa.Column("files_accepted", sa.Integer(), nullable=False),
        sa.Column("expires_at", vectorgate.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", vectorgate.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("created_at", vectorgate.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["api_key_id"],
            ["api_keys.id"],
            name=op.f("fk_upload_tokens_api_key_id_api_keys"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_upload_tokens_organization_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_upload_tokens")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_upload_tokens_token_hash")),
    )
    with op.batch_alter_table("upload_tokens") as batch_op:
        batch_op.create_index(
            batch_op.f("ix_upload_tokens_api_key_id"), ["api_key_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_upload_tokens_organization_id"), ["organization_id"], unique=False
        )
    with op.batch_alter_table("vector_store_files") as batch_op:
        batch_op.add_column(sa.Column("upload_token_id", sa.String(length=32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("vector_store_files") as batch_op:
        batch_op.drop_column("upload_token_id")
    with op.batch_alter_table("upload_tokens") as batch_op:
        batch_op.drop_index(batch_op.f("ix_upload_tokens_organization_id"))
        batch_op.drop_index(batch_op.f("ix_upload_tokens_api_key_id"))
    op.drop_table("upload_tokens")
