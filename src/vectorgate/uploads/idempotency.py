"""`Idempotency-Key` on the upload routes: a repeated request gets the first response.

The key is claimed in the database before the body is read (INSERT on the primary key
(organization, key), so of two concurrent duplicates on any replicas exactly one wins).
The body is hashed as it streams; the winner stores hash and response when it
succeeds, or gives the key back when it fails (nothing it did upstream remains, so a
retry is safe). A later request with the key:
- the first is still running: 409;
- same route and body hash: the stored response, without uploading anything;
- anything else: 409.
Records live 24 hours. While the first request runs, its row is a lease it renews (like
upload slots): if its worker is killed, or the database is down when it fails and cannot
give the key back, the lease runs out and the next request with the key takes it over.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

from fastapi.responses import JSONResponse
from sqlalchemy import delete, select, tuple_, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from vectorgate.db import utcnow, write_transaction
from vectorgate.errors import AppError, ErrorCode
from vectorgate.uploads.models import IdempotencyKey

log = logging.getLogger(__name__)

KEEP_FOR = timedelta(hours=24)
MAX_KEY_LENGTH = 255


class HashingStream:
    """Passes body chunks through, hashing them on the way (only when asked to:
    hashing a 700 MB body costs a third of a second that a request without an
    Idempotency-Key does not need to pay)."""

    def __init__(self, chunks: AsyncIterator[bytes], *, enabled: bool = True) -> None:
        self._chunks = chunks
        self._hash = hashlib.sha256()
        self._enabled = enabled

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._chunks:
            if self._enabled:
                self._hash.update(chunk)
            yield chunk

    async def drain(self) -> str:
        """Read what is left and return the hash of the whole body."""
        async for _ in self:
            pass
        return self.hexdigest()

    def hexdigest(self) -> str:
        return self._hash.hexdigest()


def _conflict(message: str) -> AppError:
    return AppError(409, ErrorCode.CONFLICT, message)


async def claim(
    sessionmaker: async_sessionmaker[AsyncSession],
    org_id: str,
    key: str,
    route: str,
    *,
    lease_s: float,
) -> IdempotencyKey | None:
    """Take `key` for this request (None), or return the record of whoever has it."""
    if not key or len(key) > MAX_KEY_LENGTH:
        raise AppError(
            400,
            ErrorCode.INVALID_REQUEST,
            f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} characters",
        )
    now = utcnow()
    lease = now + timedelta(seconds=lease_s)
    async with write_transaction(sessionmaker) as session:
        await session.execute(
            delete(IdempotencyKey).where(
                IdempotencyKey.organization_id == org_id,
                IdempotencyKey.key == key,
                IdempotencyKey.expires_at <= now,
            )
        )
    try:
        async with write_transaction(sessionmaker) as session:
            session.add(
                IdempotencyKey(
                    organization_id=org_id,
                    key=key,
                    route=route,
                    expires_at=now + KEEP_FOR,
                    lease_expires_at=lease,
                )
            )
        return None
    except IntegrityError:
        async with sessionmaker() as session:
            existing = await session.get(IdempotencyKey, (org_id, key))
        if existing is None:  # given back in the meantime: try once more
            return await claim(sessionmaker, org_id, key, route, lease_s=lease_s)
        if existing.response_status is None and _lease_over(existing, now):
            # Its request died without a word: take the key over, unless another
            # request has just done so (then look again).
            if await _take_over(sessionmaker, existing, route, lease):
                return None
            return await claim(sessionmaker, org_id, key, route, lease_s=lease_s)
        return existing


def _lease_over(record: IdempotencyKey, now: datetime) -> bool:
    # No lease at all: a row of a request that was running when this column was added.
    return record.lease_expires_at is None or record.lease_expires_at <= now


async def _take_over(
    sessionmaker: async_sessionmaker[AsyncSession],
    existing: IdempotencyKey,
    route: str,
    lease: datetime,
) -> bool:
    async with write_transaction(sessionmaker) as session:
        result = await session.execute(
            update(IdempotencyKey)
            .where(
                IdempotencyKey.organization_id == existing.organization_id,
                IdempotencyKey.key == existing.key,
                IdempotencyKey.response_status.is_(None),
                (
                    IdempotencyKey.lease_expires_at.is_(None)
                    if existing.lease_expires_at is None
                    else IdempotencyKey.lease_expires_at == existing.lease_expires_at
                ),
            )
            .values(route=route, lease_expires_at=lease, request_hash=None)
        )
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


async def _renew(
    sessionmaker: async_sessionmaker[AsyncSession], org_id: str, key: str, lease_s: float
) -> None:
    """Keep the lease of a running request alive (a missed renewal only shortens it)."""
    while True:
        await asyncio.sleep(lease_s / 3)
        try:
            async with write_transaction(sessionmaker) as session:
                await session.execute(
                    update(IdempotencyKey)
                    .where(IdempotencyKey.organization_id == org_id, IdempotencyKey.key == key)
                    .values(lease_expires_at=utcnow() + timedelta(seconds=lease_s))
                )
        except Exception:
            log.warning("could not renew the lease of an idempotency key", exc_info=True)


async def replay(existing: IdempotencyKey, route: str, body: HashingStream) -> JSONResponse:
    """The stored response for a true repeat; 409 for anything else."""
    if existing.response_status is None or existing.response_body is None:
        raise _conflict("A request with this Idempotency-Key is still in progress")
    if existing.route != route:
        raise _conflict("This Idempotency-Key was used for a different request")
    if await body.drain() != existing.request_hash:
        raise _conflict("This Idempotency-Key was used with a different request body")
    return JSONResponse(
        json.loads(existing.response_body),
        status_code=existing.response_status,
        headers={"Idempotent-Replayed": "true"},
    )


async def complete(
    sessionmaker: async_sessionmaker[AsyncSession],
    org_id: str,
    key: str,
    request_hash: str,
    status: int,
    body: Any,
) -> None:
    async with write_transaction(sessionmaker) as session:
        await session.execute(
            update(IdempotencyKey)
            .where(IdempotencyKey.organization_id == org_id, IdempotencyKey.key == key)
            .values(
                request_hash=request_hash,
                response_status=status,
                response_body=json.dumps(body),
                lease_expires_at=None,
            )
        )


async def release(sessionmaker: async_sessionmaker[AsyncSession], org_id: str, key: str) -> None:
    async with write_transaction(sessionmaker) as session:
        await session.execute(
            delete(IdempotencyKey).where(
                IdempotencyKey.organization_id == org_id, IdempotencyKey.key == key
            )
        )


async def idempotent(
    sessionmaker: async_sessionmaker[AsyncSession],
    org_id: str,
    key: str | None,
    route: str,
    body: HashingStream,
    handle: Callable[[], Awaitable[Any]],
    *,
    lease_s: float,
    status: int = 200,
) -> Any:
    """Run `handle` (which reads `body`) at most once per key; repeats get its response
    (`status` is the one `handle`'s success answers with)."""
    if key is None:
        return await handle()
    existing = await claim(sessionmaker, org_id, key, route, lease_s=lease_s)
    if existing is not None:
        return await replay(existing, route, body)
    renewal = asyncio.create_task(_renew(sessionmaker, org_id, key, lease_s))
    try:
        result = await handle()
    except BaseException:
        renewal.cancel()
        await asyncio.shield(release(sessionmaker, org_id, key))
        raise
    renewal.cancel()
    await complete(sessionmaker, org_id, key, body.hexdigest(), status, result)
    return result


# Rows deleted per purge statement: one short transaction, whatever the backlog.
PURGE_BATCH = 1000


async def purge_expired(
    sessionmaker: async_sessionmaker[AsyncSession], *, batch: int = PURGE_BATCH
) -> int:
    """Delete up to `batch` expired keys; returns how many. Nothing reads an expired key
    (`claim` replaces it), so this only keeps the table small; safe on several workers."""
    expired = (
        select(IdempotencyKey.organization_id, IdempotencyKey.key)
        .where(IdempotencyKey.expires_at <= utcnow())
        .limit(batch)
    )
    async with write_transaction(sessionmaker) as session:
        result = await session.execute(
            delete(IdempotencyKey)
            .where(tuple_(IdempotencyKey.organization_id, IdempotencyKey.key).in_(expired))
            .execution_options(synchronize_session=False)
        )
    return int(result.rowcount)  # type: ignore[attr-defined]
