from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import JSON, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from vectorgate.db import Base, UTCDateTime, utcnow


class Scope(StrEnum):
    """What an API key may do (SPEC 9.1)."""

    UPLOAD = "upload"  # both upload routes
    READ = "read"  # every GET under /v1/organizations/{org_id}/... but audit events
    MANAGE = "manage"  # every other management route, and audit events


# In this order wherever scopes are stored or shown, so equal grants look equal.
ALL_SCOPES: tuple[Scope, ...] = tuple(Scope)


class Organization(Base):
    __tablename__ = "organizations"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Bumped by every upload-slot acquisition: the UPDATE takes the row lock (PostgreSQL)
    # or the write lock (SQLite) that serialises "count slots, then take some".
    upload_slots_version: Mapped[int] = mapped_column(Integer, default=0)


class ApiKey(Base):
    """A client key, stored only as a SHA-256 digest of its high-entropy token.

    What the key may do lives on its row (scopes, stores, expiry), so authenticating a
    request stays one indexed lookup by digest.
    """

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    organization_id: Mapped[str] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(200))
    prefix: Mapped[str] = mapped_column(String(16), index=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    # A non-empty list of Scope values, in ALL_SCOPES order.
    scopes: Mapped[list[str]] = mapped_column(JSON)
    # The registered stores the key acts on; None (SQL NULL): all of the organization's.
    vector_store_ids: Mapped[list[str] | None] = mapped_column(
        JSON(none_as_null=True), default=None
    )
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
