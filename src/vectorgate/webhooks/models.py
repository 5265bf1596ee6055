from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from vectorgate.db import Base, UTCDateTime, utcnow


class WebhookEndpoint(Base):
    """Where an organization's events go (SPEC 10.1).

    Its signing secret is encrypted with the keyring like a credential, the webhook id
    bound as associated data. After a rotation the previous secret stays, also
    encrypted, until `previous_secret_expires_at`: deliveries until then carry both
    signatures (never more than two secrets).
    """

    __tablename__ = "webhook_endpoints"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    organization_id: Mapped[str] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"), index=True
    )
    url: Mapped[str] = mapped_column(String(2048))
    description: Mapped[str | None] = mapped_column(String(500), default=None)
    # None: every event type, also those added later.
    event_types: Mapped[list[str] | None] = mapped_column(JSON, default=None)
    secret_ciphertext: Mapped[str] = mapped_column(Text)
    previous_secret_ciphertext: Mapped[str | None] = mapped_column(Text, default=None)
    previous_secret_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
