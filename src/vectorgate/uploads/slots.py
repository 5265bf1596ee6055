"""The per-organization limit on files in flight, held in the database.

The database is the one state every worker and replica shares, so the limit holds
across all of them. Taking slots is "lock the organization row, count the live
slots, insert ours" in one short transaction; the lock comes from an UPDATE of the
organization row, which PostgreSQL turns into a row lock and SQLite into its write
lock, so concurrent takers are serialised on both. Slots are leases: the holder
renews them while it works and deletes them when done; a worker that dies stops
renewing and its slots expire.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from datetime import timedelta

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from vectorgate.db import new_id, utcnow, write_transaction
from vectorgate.errors import AppError, ErrorCode
from vectorgate.observability import UPLOADS_IN_FLIGHT
from vectorgate.organizations.models import Organization
from vectorgate.uploads.models import UploadSlot

log = logging.getLogger(__name__)

RETRY_AFTER_S = 5


def limit_reached(limit: int) -> AppError:
    return AppError(
        429,
        ErrorCode.RATE_LIMITED,
        f"This organization already has the maximum of {limit} file uploads in flight; "
        "retry shortly",
        details={"max_concurrent_uploads": limit},
        headers={"Retry-After": str(RETRY_AFTER_S)},
    )


async def files_in_flight(session: AsyncSession, org_id: str) -> int:
    total = await session.scalar(
        select(func.coalesce(func.sum(UploadSlot.files), 0)).where(
            UploadSlot.organization_id == org_id, UploadSlot.expires_at > utcnow()
        )
    )
    return int(total or 0)


async def check_capacity(
    sessionmaker: async_sessionmaker[AsyncSession], org_id: str, *, limit: int
) -> None:
    """Refuse early (before reading a body) when the organization is already full."""
    async with sessionmaker() as session:
        if await files_in_flight(session, org_id) >= limit:
            raise limit_reached(limit)


async def _acquire(
    sessionmaker: async_sessionmaker[AsyncSession],
    org_id: str,
    files: int,
    *,
    limit: int,
    lease_s: float,
) -> str:
    async with write_transaction(sessionmaker) as session:
        await session.execute(
            update(Organization)
            .where(Organization.id == org_id)
            .values(upload_slots_version=Organization.upload_slots_version + 1)
        )
        if await files_in_flight(session, org_id) + files > limit:
            raise limit_reached(limit)
        slot = UploadSlot(
            id=new_id("slot_"),
            organization_id=org_id,
            files=files,
            expires_at=utcnow() + timedelta(seconds=lease_s),
        )
        session.add(slot)
    return slot.id


async def _renew(
    sessionmaker: async_sessionmaker[AsyncSession], slot_id: str, lease_s: float
) -> None:
    while True:
        await asyncio.sleep(lease_s / 3)
        try:
            async with write_transaction(sessionmaker) as session:
                await session.execute(
                    update(UploadSlot)
                    .where(UploadSlot.id == slot_id)
                    .values(expires_at=utcnow() + timedelta(seconds=lease_s))
                )
        except Exception:  # a missed renewal only shortens the lease; keep trying
            log.warning("could not renew upload slot %s", slot_id, exc_info=True)


async def _release(sessionmaker: async_sessionmaker[AsyncSession], slot_id: str) -> None:
    async with write_transaction(sessionmaker) as session:
        await session.execute(delete(UploadSlot).where(UploadSlot.id == slot_id))


@contextlib.asynccontextmanager
async def upload_slots(
    sessionmaker: async_sessionmaker[AsyncSession],
    org_id: str,
    files: int,
    *,
    limit: int,
    lease_s: float,
) -> AsyncIterator[None]:
    """Hold `files` of the organization's slots for the duration of the block, or 429."""
    slot_id = await _acquire(sessionmaker, org_id, files, limit=limit, lease_s=lease_s)
    renewal = asyncio.create_task(_renew(sessionmaker, slot_id, lease_s))
    UPLOADS_IN_FLIGHT.labels(org_id).inc(files)
    try:
        yield
    finally:
        UPLOADS_IN_FLIGHT.labels(org_id).dec(files)
        renewal.cancel()
        try:
            await asyncio.shield(_release(sessionmaker, slot_id))
        except Exception:
            log.warning("could not release upload slot %s; it expires by itself", slot_id)
