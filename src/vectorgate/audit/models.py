from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from vectorgate.db import Base, UTCDateTime, utcnow


class AuditEvent(Base):
    """One change to an organization, written in the transaction that made it (SPEC 9.4).

    `details` says what changed, never a secret: no API key, key digest or OpenAI key.
    """

    __tablename__ = "audit_events"
    # The list route reads one organization's events newest first.
    __table_args__ = (Index(None, "organization_id", "created_at"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    organization_id: Mapped[str] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    type: Mapped[str] = mapped_column(String(64))
    actor_type: Mapped[str] = mapped_column(String(16))  # api_key | admin | cli
    actor_id: Mapped[str | None] = mapped_column(String(64))
    target_id: Mapped[str] = mapped_column(String(128))
    details: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
