"""Duplicate uploads (SPEC 11.2): what a duplicate is, `skip`'s claims, `replace`'s clean-up.

A duplicate of a received file is a record of the same store with the same filename and
the same SHA-256 of the original content whose status is not `failed`: a failed upload
never counts, so a retry after an error always uploads.

`skip` has to hold against concurrent requests carrying the same file, on any worker:
the first to arrive claims the file (a `duplicate_claims` row naming its upload slot)
before it uploads; a second one finds the claim live and waits, looking again after
CLAIM_POLL_S (doubling up to a second), until the first request ends. A request saves
its file records in the same transaction that gives its slots back, so the moment the
claim dies the records are there (the second request then skips), or the first request
failed and left none (the second takes the claim over and uploads). A claim whose slot
expired (its worker died) is taken over at once. The wait is bounded: past `wait_s`
(VECTORGATE_DUPLICATE_WAIT_S), 409.

`replace` uploads the file; once its record is `completed`, the store's older records
of the same filename are removed and their files detached and deleted upstream through
the upstream journal, whose sweeper retries a failed delete until it succeeds. Only
older ones: of two concurrent replacements, the newer one stays, whichever completes
first, and the store always holds one of them.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from dataclasses import dataclass, field
from typing import Literal

from sqlalchemy import delete, exists, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from vectorgate.db import new_id, utcnow, write_transaction
from vectorgate.errors import AppError, ErrorCode
from vectorgate.uploads.models import UploadSlot, UpstreamUpload
from vectorgate.uploads.staging import StagedFile
from vectorgate.vector_stores.models import DuplicateClaim, VectorStore, VectorStoreFile

OnDuplicate = Literal["allow", "skip", "replace"]

CLAIM_POLL_S = 0.1  # doubling while it waits, at most CLAIM_POLL_MAX_S
CLAIM_POLL_MAX_S = 1.0
RETRY_AFTER_S = 5


def claim_key(filename: str, sha256: str) -> str:
    return hashlib.sha256(f"{sha256}\0{filename}".encode()).hexdigest()


async def find_duplicate(
    session: AsyncSession, organization_id: str, vector_store_id: str, file: StagedFile
) -> VectorStoreFile | None:
    """The newest record `file` duplicates, if any."""
    result: VectorStoreFile | None = await session.scalar(
        select(VectorStoreFile)
        .where(
            VectorStoreFile.organization_id == organization_id,
            VectorStoreFile.vector_store_id == vector_store_id,
            VectorStoreFile.sha256 == file.sha256,
            VectorStoreFile.filename == file.filename,
            VectorStoreFile.processing_status != "failed",
        )
        .order_by(VectorStoreFile.created_at.desc(), VectorStoreFile.id.desc())
        .limit(1)
    )
    return result


@dataclass
class Skipper:
    """One request's `skip` checks: each file is a duplicate (of a record, or of an earlier
    file of the same request), or claimed for this request to upload."""

    sessionmaker: async_sessionmaker[AsyncSession]
    organization_id: str
    vector_store_id: str
    wait_s: float
    claimed: dict[str, str] = field(default_factory=dict)  # claim key -> slot id
    positions: dict[str, int] = field(default_factory=dict)  # claim key -> file position

    async def check(
        self, file: StagedFile, position: int, slot_id: str
    ) -> VectorStoreFile | int | None:
        """The record `file` duplicates, or the position of the earlier file of this
        request it repeats, or None once it is claimed for this request (upload it)."""
        key = claim_key(file.filename, file.sha256)
        if key in self.positions:
            return self.positions[key]
        give_up = time.monotonic() + self.wait_s
        pause = CLAIM_POLL_S
        while True:
            async with self.sessionmaker() as session:
                record = await find_duplicate(
                    session, self.organization_id, self.vector_store_id, file
                )
                # Only reads while another request holds the file: the write (on
                # SQLite, the one writer's lock) is taken only to claim it.
                claimed = record is None and await self._claimed_by_another(session, key)
            if record is not None:
                return record
            if not claimed and await self._claim(key, slot_id):
                self.claimed[key] = slot_id
                self.positions[key] = position
                return None
            if time.monotonic() >= give_up:
                raise AppError(
                    409,
                    ErrorCode.CONFLICT,
                    f"{file.filename}: the same file is being uploaded to this vector store "
                    "by another request; retry shortly",
                    details={"filename": file.filename},
                    headers={"Retry-After": str(RETRY_AFTER_S)},
                )
            # Each waiting file costs two short reads per look: fewer the longer it waits.
            await asyncio.sleep(min(pause, max(0.0, give_up - time.monotonic())))
            pause = min(2 * pause, CLAIM_POLL_MAX_S)

    async def _claimed_by_another(self, session: AsyncSession, key: str) -> bool:
        """Whether a claim on the file names an upload slot that is still live."""
        claim = await session.get(DuplicateClaim, (self.organization_id, self.vector_store_id, key))
        return claim is not None and await _slot_is_live(session, claim.slot_id)

    async def _claim(self, key: str, slot_id: str) -> bool:
        """Claim the file, or take over a claim whose slot is no longer live."""
        ids = (self.organization_id, self.vector_store_id, key)
        try:
            async with write_transaction(self.sessionmaker) as session:
                claim = await session.get(DuplicateClaim, ids)
                if claim is None:
                    session.add(
                        DuplicateClaim(
                            organization_id=self.organization_id,
                            vector_store_id=self.vector_store_id,
                            key=key,
                            slot_id=slot_id,
                        )
                    )
                    return True
                if await _slot_is_live(session, claim.slot_id):
                    return False
                claim.slot_id = slot_id
                return True
        except IntegrityError:  # claimed by a concurrent request meanwhile
            return False

    async def release(self, session: AsyncSession) -> None:
        """Drop this request's claims, in its last transaction (with its records)."""
        if self.claimed:
            await session.execute(
                delete(DuplicateClaim).where(
                    DuplicateClaim.organization_id == self.organization_id,
                    DuplicateClaim.vector_store_id == self.vector_store_id,
                    DuplicateClaim.key.in_(self.claimed),
                    DuplicateClaim.slot_id.in_(set(self.claimed.values())),
                )
            )


async def _slot_is_live(session: AsyncSession, slot_id: str) -> bool:
    live = await session.scalar(
        select(exists().where(UploadSlot.id == slot_id, UploadSlot.expires_at > utcnow()))
    )
    return bool(live)


async def purge_dead_claims(sessionmaker: async_sessionmaker[AsyncSession]) -> int:
    """Delete claims whose slot is gone (their request died): clutter, not state."""
    live = exists().where(UploadSlot.id == DuplicateClaim.slot_id, UploadSlot.expires_at > utcnow())
    async with write_transaction(sessionmaker) as session:
        result = await session.execute(delete(DuplicateClaim).where(~live))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


async def retire_older(session: AsyncSession, record: VectorStoreFile) -> None:
    """`record` (uploaded with `replace`) is completed: remove the store's older records of
    its filename and hand their files to the upstream journal's sweeper for deletion."""
    older = (
        await session.scalars(
            select(VectorStoreFile).where(
                VectorStoreFile.organization_id == record.organization_id,
                VectorStoreFile.vector_store_id == record.vector_store_id,
                VectorStoreFile.filename == record.filename,
                # Strictly older: files of one request (one timestamp) never remove
                # each other.
                VectorStoreFile.created_at < record.created_at,
            )
        )
    ).all()
    if not older:
        return
    store = await session.get(VectorStore, (record.organization_id, record.vector_store_id))
    assert store is not None  # the record's foreign key holds it
    for old in older:
        if old.file_id is not None and old.file_id != record.file_id:
            # A slot id no slot has: the sweeper takes the row at its next round.
            await session.merge(
                UpstreamUpload(
                    file_id=old.file_id,
                    organization_id=old.organization_id,
                    credential_id=store.credential_id,
                    vector_store_id=old.vector_store_id,
                    slot_id=new_id("rpl_"),
                )
            )
        await session.delete(old)
