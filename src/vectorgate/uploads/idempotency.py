"""`Idempotency-Key` on the upload routes: a repeated request gets the first response.

The key is claimed in the database before the body is read (INSERT on the primary key
(organization, key), so of two concurrent duplicates on any replicas exactly one wins).
The body is hashed as it streams; the winner stores hash and response when it
succeeds, or gives the key back when it fails (nothing it did upstream remains, so a
retry is safe). A later request with the key:
- the first is still running: 409;
- same route and body hash: the stored response, without uploading anything;
- anything else: 409.
Records live 24 hours.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from typing import Any

from fastapi.responses import JSONResponse
from sqlalchemy import delete, select, tuple_, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from vectorgate.db import utcnow, write_transaction
from vectorgate.errors import AppError, ErrorCode
from vectorgate.uploads.models import IdempotencyKey

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
    sessionmaker: async_sessionmaker[AsyncSession], org_id: str, key: str, route: str
) -> IdempotencyKey | None:
    """Take `key` for this request (None), or return the record of whoever has it."""
    if not key or len(key) > MAX_KEY_LENGTH:
        raise AppError(
            400,
            ErrorCode.INVALID_REQUEST,
            f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} characters",
        )
    now = utcnow()
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
                    organization_id=org_id, key=key, route=route, expires_at=now + KEEP_FOR
                )
            )
        return None
    except IntegrityError:
        async with sessionmaker() as session:
            existing = await session.get(IdempotencyKey, (org_id, key))
        if existing is None:  # given back in the meantime: try once more
            return await claim(sessionmaker, org_id, key, route)
        return existing


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
) -> Any:
    """Run `handle` (which reads `body`) at most once per key; repeats get its response."""
    if key is None:
        return await handle()
    existing = await claim(sessionmaker, org_id, key, route)
    if existing is not None:
        return await replay(existing, route, body)
    try:
        result = await handle()
    except BaseException:
        await asyncio.shield(release(sessionmaker, org_id, key))
        raise
    await complete(sessionmaker, org_id, key, body.hexdigest(), 200, result)
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
