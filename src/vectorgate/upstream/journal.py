"""The journal of upstream files whose request has not settled yet.

A request writes a row the moment one of its files reaches OpenAI and removes its rows
when it ends, for the files it kept (they now have records, or the client got their
ids) and the files it deleted. Rows left behind belong to a request whose worker died,
or name files whose delete failed: once that request's upload slots have expired,
`sweep` deletes those files upstream, unless a file record shows the request had in fact
succeeded, and retries a failed delete with backoff until it succeeds. Nothing is
forgotten: a row goes only when its file is known to be gone or kept.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import timedelta

import openai
from sqlalchemy import delete, exists, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from vectorgate.credentials.service import get_credential, reveal_key
from vectorgate.db import utcnow, write_transaction
from vectorgate.security.encryption import Keyring
from vectorgate.uploads.models import UploadSlot, UpstreamUpload
from vectorgate.upstream.client import client_for
from vectorgate.upstream.compensate import delete_upstream_file
from vectorgate.vector_stores.models import VectorStoreFile

log = logging.getLogger(__name__)


async def record(
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    file_id: str,
    organization_id: str,
    credential_id: str,
    vector_store_id: str,
    slot_id: str,
) -> None:
    async with write_transaction(sessionmaker) as session:
        session.add(
            UpstreamUpload(
                file_id=file_id,
                organization_id=organization_id,
                credential_id=credential_id,
                vector_store_id=vector_store_id,
                slot_id=slot_id,
            )
        )


async def settle(session: AsyncSession, file_ids: Sequence[str]) -> None:
    """Remove the rows of `file_ids`, in the caller's transaction."""
    if file_ids:
        await session.execute(delete(UpstreamUpload).where(UpstreamUpload.file_id.in_(file_ids)))


# Orphans looked at per sweep (one per poller round): the rest wait for the next round.
_SWEEP_AT_ONCE = 50
# Failed deletes are retried after backoff_s, doubling per attempt, at most this long apart.
_MAX_RETRY_DELAY_S = 600.0


async def sweep(
    sessionmaker: async_sessionmaker[AsyncSession],
    keyring: Keyring,
    base_client: openai.AsyncOpenAI,
    *,
    backoff_s: float,
) -> int:
    """Delete upstream the files of requests that died or whose clean-up failed.

    A row is due once its request's slot has expired (the request is over, however it
    ended) and its retry time has come. Each due row is claimed by pushing its retry time
    forward (so several workers never work on the same row at once), then settled only
    when its file is known to be gone upstream, or to have been kept by a request that
    succeeded (a file record holds it). A failed delete stays in the journal and is tried
    again later, however often it takes. Returns how many rows were settled.
    """
    now = utcnow()
    live_slot = exists().where(UploadSlot.id == UpstreamUpload.slot_id, UploadSlot.expires_at > now)
    due = or_(UpstreamUpload.next_attempt_at.is_(None), UpstreamUpload.next_attempt_at <= now)
    async with sessionmaker() as session:
        orphans = (
            await session.scalars(
                select(UpstreamUpload)
                .where(~live_slot, due)
                .order_by(UpstreamUpload.created_at)
                .limit(_SWEEP_AT_ONCE)
            )
        ).all()
    settled = 0
    for orphan in orphans:
        if await _claim(sessionmaker, orphan, backoff_s) and await _clean_up(
            sessionmaker, keyring, base_client, orphan
        ):
            settled += 1
    if orphans:
        # Expired slots no journal row needs any more are only clutter.
        async with write_transaction(sessionmaker) as session:
            await session.execute(
                delete(UploadSlot).where(
                    UploadSlot.expires_at <= utcnow(),
                    ~exists().where(UpstreamUpload.slot_id == UploadSlot.id),
                )
            )
    return settled


async def _claim(
    sessionmaker: async_sessionmaker[AsyncSession], orphan: UpstreamUpload, backoff_s: float
) -> bool:
    """Take `orphan` for one attempt: only if nobody else took it since it was read."""
    delay = min(backoff_s * 2.0**orphan.delete_attempts, _MAX_RETRY_DELAY_S)
    async with write_transaction(sessionmaker) as session:
        result = await session.execute(
            update(UpstreamUpload)
            .where(
                UpstreamUpload.file_id == orphan.file_id,
                UpstreamUpload.delete_attempts == orphan.delete_attempts,
            )
            .values(
                delete_attempts=orphan.delete_attempts + 1,
                next_attempt_at=utcnow() + timedelta(seconds=delay),
            )
        )
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


async def _clean_up(
    sessionmaker: async_sessionmaker[AsyncSession],
    keyring: Keyring,
    base_client: openai.AsyncOpenAI,
    orphan: UpstreamUpload,
) -> bool:
    """One attempt at `orphan`; True when its row could be settled."""
    attempt = orphan.delete_attempts + 1
    async with sessionmaker() as session:
        kept = await session.scalar(
            select(exists().where(VectorStoreFile.file_id == orphan.file_id))
        )
        credential = None
        if not kept:
            try:
                credential = await get_credential(
                    session, orphan.organization_id, orphan.credential_id
                )
                api_key = reveal_key(keyring, credential)
            except Exception as exc:
                return await _failed(sessionmaker, orphan, attempt, type(exc).__name__)
    if kept:
        log.info("upstream file %s was kept by a request that succeeded", orphan.file_id)
    else:
        assert credential is not None
        client = client_for(base_client, api_key, credential.base_url)
        if not await delete_upstream_file(client, orphan.vector_store_id, orphan.file_id):
            return await _failed(sessionmaker, orphan, attempt, "the upstream delete failed")
        log.info("deleted upstream file %s of a failed or dead request", orphan.file_id)
    async with write_transaction(sessionmaker) as session:
        await settle(session, [orphan.file_id])
    return True


async def _failed(
    sessionmaker: async_sessionmaker[AsyncSession],
    orphan: UpstreamUpload,
    attempt: int,
    why: str,
) -> bool:
    log.warning(
        "could not delete upstream file %s (attempt %d: %s); will retry",
        orphan.file_id,
        attempt,
        why,
    )
    async with write_transaction(sessionmaker) as session:
        await session.execute(
            update(UpstreamUpload)
            .where(UpstreamUpload.file_id == orphan.file_id)
            .values(last_error=why[:300])
        )
    return False
