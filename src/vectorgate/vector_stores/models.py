from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    String,
    Text,
)
from sqlalchemy.orm import Mapped, mapped_column

from vectorgate.db import Base, UTCDateTime, utcnow


class VectorStore(Base):
    """A vector store registered to an organization: (organization, credential, upstream id)."""

    __tablename__ = "vector_stores"

    organization_id: Mapped[str] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"), primary_key=True
    )
    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    credential_id: Mapped[str] = mapped_column(
        ForeignKey("credentials.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class VectorStoreFile(Base):
    """Our record of one uploaded file and its processing status."""

    __tablename__ = "vector_store_files"
    __table_args__ = (
        ForeignKeyConstraint(
            ["organization_id", "vector_store_id"],
            ["vector_stores.organization_id", "vector_stores.id"],
            ondelete="CASCADE",
        ),
        Index(None, "organization_id", "vector_store_id", "created_at"),
        Index(None, "processing_status", "batch_id"),
        # Duplicates are looked up by content within a store (SPEC 11.2).
        Index("ix_vector_store_files_sha256", "organization_id", "vector_store_id", "sha256"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    organization_id: Mapped[str] = mapped_column(String(32))
    vector_store_id: Mapped[str] = mapped_column(String(128))
    file_id: Mapped[str | None] = mapped_column(String(128), index=True)
    batch_id: Mapped[str | None] = mapped_column(String(128))
    filename: Mapped[str] = mapped_column(String(1024))
    size: Mapped[int] = mapped_column(BigInteger)
    mime_type: Mapped[str] = mapped_column(String(200))
    processing_status: Mapped[str] = mapped_column(String(16), default="pending")
    error_message: Mapped[str | None] = mapped_column(Text)
    # The upload token that uploaded the file, if one did: a token may see only its own.
    upload_token_id: Mapped[str | None] = mapped_column(String(32), default=None)
    # SHA-256 (hex) of the content as the client sent it, before any conversion.
    sha256: Mapped[str | None] = mapped_column(String(64), default=None)
    # What went to OpenAI with the file batch (SPEC 11.1), as sent.
    attributes: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    chunking_strategy: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    # Uploaded with on_duplicate=replace: once completed, the store's older records of
    # the same filename are removed (SPEC 11.2).
    replaces_older: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class FileBatch(Base):
    """An upstream file batch whose files the poller still has to bring to a final status.

    `lease_owner`/`lease_expires_at` make sure only one worker polls it at a time;
    a worker that dies stops renewing and another takes the batch over.
    """

    __tablename__ = "file_batches"
    __table_args__ = (Index(None, "done", "next_poll_at"),)

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    organization_id: Mapped[str] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"), index=True
    )
    vector_store_id: Mapped[str] = mapped_column(String(128))
    credential_id: Mapped[str] = mapped_column(ForeignKey("credentials.id", ondelete="CASCADE"))
    done: Mapped[bool] = mapped_column(Boolean, default=False)
    deadline_at: Mapped[datetime] = mapped_column(UTCDateTime)
    next_poll_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class DuplicateClaim(Base):
    """A file (store, filename, content) that one request is uploading with
    `on_duplicate=skip`, so that a concurrent request with the same file waits for it
    instead of uploading it again.

    The claim lives as long as the upload slot it names: a request gives its slots back
    in the transaction that saves its file records, so when the claim dies the records
    are there (or the request failed and there are none). A worker that dies stops
    renewing its slots and its claims die with them.
    """

    __tablename__ = "duplicate_claims"

    organization_id: Mapped[str] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"), primary_key=True
    )
    vector_store_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    # SHA-256 of filename and content together: one bounded key for both.
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    slot_id: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
