from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from vectorgate.db import Base, UTCDateTime, utcnow


class UploadToken(Base):
    """A short-lived upload credential for one vector store, minted by an API key
    (SPEC 9.2) and stored only as a SHA-256 digest of its high-entropy token.

    `files_accepted` counts the files its requests hold or kept, against `max_files`:
    requests reserve on this row (a conditional UPDATE) before uploading, so the cap
    holds across workers and replicas.
    """

    __tablename__ = "upload_tokens"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    organization_id: Mapped[str] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"), index=True
    )
    # The minting key: its revocation or expiry ends the token (checked on every request).
    api_key_id: Mapped[str] = mapped_column(
        ForeignKey("api_keys.id", ondelete="CASCADE"), index=True
    )
    vector_store_id: Mapped[str] = mapped_column(String(128))
    credential_id: Mapped[str] = mapped_column(String(36))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    max_files: Mapped[int] = mapped_column(Integer)
    files_accepted: Mapped[int] = mapped_column(Integer, default=0)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
