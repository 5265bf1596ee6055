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
from datetime import datetime, timedelta

from sqlalchemy import delete, exists, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from vectorgate.db import new_id, utcnow, write_transaction
from vectorgate.errors import AppError, ErrorCode
from vectorgate.observability import UPLOADS_IN_FLIGHT
from vectorgate.organizations.models import Organization
from vectorgate.uploads.models import UploadSlot, UpstreamUpload

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


class UploadSlots:
    """The slots one request holds, taken as its files arrive and all given back at the end.

    Use as `async with UploadSlots(...) as slots: await slots.take(n)`; `take` answers
    429 when the organization has no room left.
    """

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        org_id: str,
        *,
        limit: int,
        lease_s: float,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._org_id = org_id
        self._limit = limit
        self._lease_s = lease_s
        self._slot_ids: list[str] = []
        self._files = 0
        self._renewal: asyncio.Task[None] | None = None

    async def __aenter__(self) -> UploadSlots:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        UPLOADS_IN_FLIGHT.labels(self._org_id).dec(self._files)
        self._stop_renewing()
        if slot_ids := self._slot_ids:  # not given back with the request's last transaction
            try:
                await asyncio.shield(self._give_back_alone())
            except Exception:
                log.warning("could not release upload slots %s; they expire", slot_ids)

    async def give_back(self, session: AsyncSession) -> None:
        """Delete the slots in the caller's transaction; should it not commit, they expire."""
        self._stop_renewing()
        slot_ids, self._slot_ids = self._slot_ids, []
        if slot_ids:
            await session.execute(delete(UploadSlot).where(UploadSlot.id.in_(slot_ids)))

    async def _give_back_alone(self) -> None:
        async with write_transaction(self._sessionmaker) as session:
            await self.give_back(session)

    def _stop_renewing(self) -> None:
        if self._renewal is not None:
            self._renewal.cancel()

    @property
    def latest_id(self) -> str:
        """The id of the slot taken last (all of a request's slots expire together)."""
        return self._slot_ids[-1]

    async def take(self, files: int) -> None:
        async with write_transaction(self._sessionmaker) as session:
            await session.execute(
                update(Organization)
                .where(Organization.id == self._org_id)
                .values(upload_slots_version=Organization.upload_slots_version + 1)
            )
            if await files_in_flight(session, self._org_id) + files > self._limit:
                raise limit_reached(self._limit)
            slot = UploadSlot(
                id=new_id("slot_"),
                organization_id=self._org_id,
                files=files,
                expires_at=self._expiry(),
            )
            session.add(slot)
        self._slot_ids.append(slot.id)
        self._files += files
        UPLOADS_IN_FLIGHT.labels(self._org_id).inc(files)
        if self._renewal is None:
            self._renewal = asyncio.create_task(self._renew())

    def _expiry(self) -> datetime:
        return utcnow() + timedelta(seconds=self._lease_s)

    async def _renew(self) -> None:
        while True:
            await asyncio.sleep(self._lease_s / 3)
            try:
                async with write_transaction(self._sessionmaker) as session:
                    await session.execute(
                        update(UploadSlot)
                        .where(UploadSlot.id.in_(self._slot_ids))
                        .values(expires_at=self._expiry())
                    )
            except Exception:  # a missed renewal only shortens the lease; keep trying
                log.warning("could not renew upload slots %s", self._slot_ids, exc_info=True)


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
    async with UploadSlots(sessionmaker, org_id, limit=limit, lease_s=lease_s) as slots:
        await slots.take(files)
        yield


# Rows deleted per purge statement: one short transaction, whatever the backlog.
PURGE_BATCH = 1000


async def purge_expired(
    sessionmaker: async_sessionmaker[AsyncSession], *, grace_s: float, batch: int = PURGE_BATCH
) -> int:
    """Delete up to `batch` slots expired more than `grace_s` ago; returns how many.

    Expired slots count for nothing, but a holder that missed a few renewals may still
    renew one, so only slots a whole grace period past expiry go. Slots that a journal
    row of an unsettled upload still names stay: the journal's sweep settles the row
    first (see upstream/journal.py). Safe on several workers at once: each deletes what
    is still there.
    """
    cutoff = utcnow() - timedelta(seconds=grace_s)
    expired = (
        select(UploadSlot.id)
        .where(
            UploadSlot.expires_at <= cutoff,
            ~exists().where(UpstreamUpload.slot_id == UploadSlot.id),
        )
        .limit(batch)
    )
    async with write_transaction(sessionmaker) as session:
        result = await session.execute(
            delete(UploadSlot)
            .where(UploadSlot.id.in_(expired))
            .execution_options(synchronize_session=False)
        )
    return int(result.rowcount)  # type: ignore[attr-defined]
