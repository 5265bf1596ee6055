from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from vectorgate.db import Base, UTCDateTime, utcnow


class UploadSlot(Base):
    """Files one request has in flight for an organization, or the temp space its body may
    take up (`staged_bytes`, on a row of its own with `files = 0`), held until `expires_at`.

    The holder renews the lease while it works; a worker that dies simply stops
    renewing, so its slots and reservations free themselves.
    """

    __tablename__ = "upload_slots"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    organization_id: Mapped[str] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"), index=True
    )
    files: Mapped[int] = mapped_column(Integer)
    staged_bytes: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)


class IdempotencyKey(Base):
    """The first response to a request carrying an `Idempotency-Key`, kept for 24 hours.

    Until that response exists, the row is a lease held by the running request.
    """

    __tablename__ = "idempotency_keys"

    organization_id: Mapped[str] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"), primary_key=True
    )
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    route: Mapped[str] = mapped_column(String(512))
    request_hash: Mapped[str | None] = mapped_column(String(64))
    response_status: Mapped[int | None] = mapped_column(Integer)
    response_body: Mapped[str | None] = mapped_column(Text)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    # While the first request runs it renews this lease; a key whose request died (worker
    # killed, database down as it failed) frees itself when the lease runs out.
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)


class UpstreamUpload(Base):
    """A file a request put upstream and has not yet settled (kept, or known deleted).

    Written the moment the upload returns and removed when the request ends with the file
    kept or deleted upstream. A file whose request died with its worker, or whose delete
    failed, still has a row saying so; the poller's sweep deletes such files upstream
    once the request's slot has expired, retrying with backoff until the delete succeeds.
    """

    __tablename__ = "upstream_uploads"

    file_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    organization_id: Mapped[str] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"), index=True
    )
    credential_id: Mapped[str] = mapped_column(ForeignKey("credentials.id", ondelete="CASCADE"))
    vector_store_id: Mapped[str] = mapped_column(String(128))
    slot_id: Mapped[str] = mapped_column(String(32), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Deletes the sweeper tried without success, when it may try next (also its lease:
    # a sweeper pushes it forward before it calls upstream) and why the last one failed.
    delete_attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    last_error: Mapped[str | None] = mapped_column(String(300), default=None)
