"""The per-organization limit on files in flight, held in the database.

The database is the one state every worker and replica shares, so the limit holds
across all of them. Taking slots is "lock the organization row, count the live
slots, insert ours" in one short transaction; the lock comes from an UPDATE of the
organization row, which PostgreSQL turns into a row lock and SQLite into its write
lock, so concurrent takers are serialised on both. Slots are leases: the holder
renews them while it works and deletes them when done; a worker that dies stops
renewing and its slots expire.

The same rows hold each organization's staging allowance: the bytes of request body
its requests may have on the temp disk at once. A request reserves before it writes (the
declared Content-Length at once, or in growing steps as a chunked body streams), in a
row of its own with `files = 0` that lives, is renewed and is given back with its slots.
So one organization cannot fill the disk the others' uploads need, on any worker.

Small bodies are the exception: most uploads are small, and on SQLite, which has one
writer at a time, a reservation write per request would cost them a sixth of their
throughput. A body that declares at most SMALL_BODY_BYTES is checked against the
database's reservations (a read) and held in this process's ledger only, which allows
each organization at most SMALL_BODIES_PER_ORG per worker beside its cap.
"""

from __future__ import annotations

import asyncio
import collections
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
# A body without a Content-Length reserves this much first, then grows its reservation
# by a quarter (at least this much) each time it runs out: a few writes per request, and
# at most a quarter more held than received.
STAGING_STEP = 8 * 1024 * 1024
# Bodies declaring at most this much are held in the per-process ledger (no write):
# a 10-file request of small text documents fits.
SMALL_BODY_BYTES = 1024 * 1024
# What one organization's small bodies may hold in one worker, beyond the database's cap:
# 64 at a time, while a worker receives ~a thousand connections at most.
SMALL_BODIES_PER_ORG = 64 * SMALL_BODY_BYTES
# Small bodies being received in this process, per organization.
_small_bodies: collections.Counter[str] = collections.Counter()


def limit_reached(limit: int) -> AppError:
    return AppError(
        429,
        ErrorCode.RATE_LIMITED,
        f"This organization already has the maximum of {limit} file uploads in flight; "
        "retry shortly",
        details={"max_concurrent_uploads": limit},
        headers={"Retry-After": str(RETRY_AFTER_S)},
    )


def staging_full(cap: int) -> AppError:
    return AppError(
        429,
        ErrorCode.RATE_LIMITED,
        f"This organization's uploads being received already take up the {cap} bytes of "
        "temp space it may use at once; retry shortly",
        details={"max_staged_bytes": cap},
        headers={"Retry-After": str(RETRY_AFTER_S)},
    )


async def files_in_flight(session: AsyncSession, org_id: str) -> int:
    total = await session.scalar(
        select(func.coalesce(func.sum(UploadSlot.files), 0)).where(
            UploadSlot.organization_id == org_id, UploadSlot.expires_at > utcnow()
        )
    )
    return int(total or 0)


async def staged_bytes(session: AsyncSession, org_id: str, *, excluding: str = "") -> int:
    """Bytes of staging allowance the organization's live requests hold (but `excluding`)."""
    total = await session.scalar(
        select(func.coalesce(func.sum(UploadSlot.staged_bytes), 0)).where(
            UploadSlot.organization_id == org_id,
            UploadSlot.expires_at > utcnow(),
            UploadSlot.id != excluding,
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
    """The slots one request holds, taken as its files arrive and all given back at the end,
    and the staging allowance it reserves as its body arrives.

    Use as `async with UploadSlots(...) as slots: await slots.take(n)`; `take` answers
    429 when the organization has no room left. A request that stages its body first
    calls `open` (before reading it) and `cover` (before writing each chunk).
    """

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        org_id: str,
        *,
        limit: int,
        lease_s: float,
        staged_cap: int = 0,
        max_body_bytes: int = 0,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._org_id = org_id
        self._limit = limit
        self._lease_s = lease_s
        self._staged_cap = staged_cap
        self._max_body_bytes = max_body_bytes  # no request needs more staging than this
        self._slot_ids: list[str] = []
        self._reservation_id = ""  # the row holding this request's staging allowance
        self._staged = 0
        self._small = 0  # what this request holds in the process's ledger instead
        self._files = 0
        self._renewal: asyncio.Task[None] | None = None

    @property
    def _held_ids(self) -> list[str]:
        return [*self._slot_ids, self._reservation_id] if self._reservation_id else self._slot_ids

    async def __aenter__(self) -> UploadSlots:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        UPLOADS_IN_FLIGHT.labels(self._org_id).dec(self._files)
        self._stop_renewing()
        self._release_small()
        if slot_ids := self._held_ids:  # not given back with the request's last transaction
            try:
                await asyncio.shield(self._give_back_alone())
            except Exception:
                log.warning("could not release upload slots %s; they expire", slot_ids)

    async def give_back(self, session: AsyncSession) -> None:
        """Delete the slots and the staging reservation in the caller's transaction; should
        it not commit, they expire."""
        self._stop_renewing()
        self._release_small()
        slot_ids = self._held_ids
        self._slot_ids, self._reservation_id, self._staged = [], "", 0
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

    async def open(self, declared_bytes: int | None) -> None:
        """Before the body is read: 429 if the organization already has its maximum of files
        in flight, or too little staging allowance left for this body (`declared_bytes`,
        its Content-Length, or None for a chunked body); 413 if the body could never fit.
        Else reserve the allowance for it (or for its first step)."""
        if declared_bytes is not None and declared_bytes > self._staged_cap:
            raise AppError(
                413,
                ErrorCode.FILE_TOO_LARGE,
                f"The body's {declared_bytes} bytes are more than the {self._staged_cap} bytes "
                "of temp space an organization's uploads may take up at once",
                details={"max_staged_bytes": self._staged_cap},
            )
        if declared_bytes is None:  # chunked: the first step, or whatever is left of it
            step = min(STAGING_STEP, self._max_body_bytes)
            await self._reserve(1, want=step, opening=True)
        elif declared_bytes <= SMALL_BODY_BYTES:
            await self._hold_small(declared_bytes)
        else:
            await self._reserve(declared_bytes, want=declared_bytes, opening=True)

    async def _hold_small(self, size: int) -> None:
        async with self._sessionmaker() as session:
            if await files_in_flight(session, self._org_id) >= self._limit:
                raise limit_reached(self._limit)
            reserved = await staged_bytes(session, self._org_id)
        held = _small_bodies[self._org_id]
        if reserved + held + size > self._staged_cap:
            raise staging_full(self._staged_cap)
        if held + size > SMALL_BODIES_PER_ORG:
            raise staging_full(SMALL_BODIES_PER_ORG)
        _small_bodies[self._org_id] += size
        self._small = self._staged = size

    def _release_small(self) -> None:
        if self._small:
            _small_bodies[self._org_id] -= self._small
            if _small_bodies[self._org_id] <= 0:
                del _small_bodies[self._org_id]
            self._small = 0

    async def cover(self, total: int) -> None:
        """Make sure `total` bytes of body are reserved; call it before writing them."""
        if total <= self._staged:
            return
        grown = self._staged + max(STAGING_STEP, self._staged // 4)
        await self._reserve(total, want=max(total, min(grown, self._max_body_bytes)))

    async def _reserve(self, needed: int, *, want: int, opening: bool = False) -> None:
        """Hold `want` bytes of staging allowance, or as much of it as is left if that is
        at least `needed`; else 429."""
        async with write_transaction(self._sessionmaker) as session:
            await self._lock_organization(session)
            if opening and await files_in_flight(session, self._org_id) >= self._limit:
                raise limit_reached(self._limit)
            others = await staged_bytes(session, self._org_id, excluding=self._reservation_id)
            room = self._staged_cap - others
            if needed > room:
                raise staging_full(self._staged_cap)
            amount = min(want, room)
            if self._reservation_id:
                await session.execute(
                    update(UploadSlot)
                    .where(UploadSlot.id == self._reservation_id)
                    .values(staged_bytes=amount, expires_at=self._expiry())
                )
            else:
                reservation = UploadSlot(
                    id=new_id("slot_"),
                    organization_id=self._org_id,
                    files=0,
                    staged_bytes=amount,
                    expires_at=self._expiry(),
                )
                session.add(reservation)
        if not self._reservation_id:
            self._reservation_id = reservation.id
        self._staged = amount
        self._start_renewing()

    async def _lock_organization(self, session: AsyncSession) -> None:
        await session.execute(
            update(Organization)
            .where(Organization.id == self._org_id)
            .values(upload_slots_version=Organization.upload_slots_version + 1)
        )

    async def take(self, files: int) -> None:
        async with write_transaction(self._sessionmaker) as session:
            await self._lock_organization(session)
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
        self._start_renewing()

    def _start_renewing(self) -> None:
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
                        .where(UploadSlot.id.in_(self._held_ids))
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
